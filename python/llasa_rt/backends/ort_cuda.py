"""ONNX Runtime's CUDA execution provider with the KV slots in device memory (onnxruntime-gpu).

The bundle's ORT graph (lm.onnx: GroupQueryAttention with one shared past/present buffer, as on the CPU) runs on
the GPU; what changes from `ort.OrtLmBackend` is where the memory is:

- per layer one K and one V buffer [slots, kv_heads, max_context, head_dim] in device memory, made once as
  `OrtValue.ortvalue_from_shape_and_type(..., "cuda", 0)`; `past_key_values.{i}.*` and `present.{i}.*` are bound
  (IOBinding) to the same device address, the first `batch` slots, so GroupQueryAttention appends in place;
- input_ids / position_ids / attention_mask and logits have device buffers of the largest step, made once; a step
  copies its inputs host -> device and the logits device -> host (65,537 floats per row) into the core's buffers,
  where the C++ sampler reads them;
- forks and compaction (`KvCache.copy_slot` in the core) are redirected to the device by a `_core.KvSlotCopier`:
  one strided device-to-device copy (cudaMemcpy2DAsync: kv_heads rows of the used positions) per layer and K/V.
  The core's host KvCache keeps the shape and the bookkeeping; its memory is never written (never committed).

No per-step allocation, no full-cache copy. The CUDA runtime is reached through ctypes (`cuda_runtime`), so no
cupy / pycuda dependency. GroupQueryAttention's CUDA kernel exists for float16 (and bfloat16) only, so the bundle
must have an fp16 KV cache. This path has never run on a GPU (none on the development machines). The same class
over host memory (`HostMemory`, the CPU provider) is how its bindings, offsets and slot copies are tested here.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .. import _core
from ..bundle import ModelFacts
from ..errors import BundleError
from ..layout import LmIo
from .cuda_runtime import DEVICE_TO_DEVICE, DEVICE_TO_HOST, HOST_TO_DEVICE, CudaRuntime

CUDA_PROVIDER = "CUDAExecutionProvider"
INSTALL_ORT_GPU = ("onnxruntime-gpu is not installed (or has no CUDA provider here): `pip uninstall onnxruntime && "
                   "pip install onnxruntime-gpu` on a machine with an NVIDIA GPU and driver")


class CudaMemory:
    """Device memory and copies for the backend: OrtValues on "cuda" and the CUDA runtime's copies."""

    device = "cuda"

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self.cuda = CudaRuntime()
        self.cuda.require_device(device_id)

    def allocate(self, shape: list[int], dtype: Any) -> Any:
        import onnxruntime as ort

        value = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, self.device, self.device_id)
        self.cuda.memset(value.data_ptr(), int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return value

    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        self.cuda.copy(dst, src, nbytes, HOST_TO_DEVICE)

    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        self.cuda.copy(dst, src, nbytes, DEVICE_TO_HOST)

    def copy_2d(self, dst: int, pitch: int, src: int, width: int, height: int) -> None:
        self.cuda.copy_2d(dst, pitch, src, pitch, width, height, DEVICE_TO_DEVICE)

    def synchronize(self) -> None:
        self.cuda.synchronize()


class HostMemory:
    """The same operations on host memory (OrtValues on "cpu", memmove): the device backend run with the CPU
    provider, so its separate slot buffers, bindings and redirected slot copies are tested without a GPU."""

    device = "cpu"
    device_id = 0

    def allocate(self, shape: list[int], dtype: Any) -> Any:
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype))

    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    to_host = to_device

    def copy_2d(self, dst: int, pitch: int, src: int, width: int, height: int) -> None:
        for row in range(height):
            ctypes.memmove(dst + row * pitch, src + row * pitch, width)

    def synchronize(self) -> None:
        pass


class DeviceSlotCopier(_core.KvSlotCopier):
    """The core's slot copies (forks, compaction) done on the device buffers."""

    def __init__(self, memory: CudaMemory | HostMemory, buffers: list[int], slot_bytes: int, heads: int,
                 head_bytes: int, row_bytes: int) -> None:
        super().__init__()
        self.memory = memory
        self.buffers = buffers  # base address of every layer's K and V buffer
        self.slot_bytes, self.heads, self.head_bytes, self.row_bytes = slot_bytes, heads, head_bytes, row_bytes
        self.copies = 0  # slot copies done (tests, benchmarks)

    def copy_slot_range(self, src: int, dst: int, begin: int, end: int) -> None:
        offset = begin * self.row_bytes
        width = (end - begin) * self.row_bytes
        for base in self.buffers:
            self.memory.copy_2d(base + dst * self.slot_bytes + offset, self.head_bytes,
                                base + src * self.slot_bytes + offset, width, self.heads)
        self.memory.synchronize()
        self.copies += 1


class DeviceLmBackend(_core.Backend):
    """An ORT LM graph as a `_core.Backend` whose KV slots live in `memory` (see the module docstring)."""

    def __init__(self, session: Any, cache: Any, buffers: Any, model: ModelFacts,
                 memory: CudaMemory | HostMemory) -> None:
        super().__init__(cache, buffers)
        cfg = cache.config
        self.session, self.memory, self.layers = session, memory, model.num_layers
        self.kv_dtype = np.float16 if model.kv_dtype == "float16" else np.float32
        self.kv_tail = [cfg.num_kv_heads, cfg.max_seq_len, cfg.head_dim]
        self.rows = int(buffers.rows)
        slots, item = cfg.slots, np.dtype(self.kv_dtype).itemsize
        self.kv = [memory.allocate([slots, *self.kv_tail], self.kv_dtype) for _ in range(2 * self.layers)]
        self.kv_ptrs = [v.data_ptr() for v in self.kv]  # layer i: K at 2i, V at 2i + 1
        self.slot_bytes = cfg.num_kv_heads * cfg.max_seq_len * cfg.head_dim * item
        # Step inputs and logits of the largest step: `slots` rows of up to max_seq_len tokens / mask columns.
        self.ids = memory.allocate([slots * cfg.max_seq_len], np.int64)
        self.pos = memory.allocate([slots * cfg.max_seq_len], np.int64)
        self.mask = memory.allocate([slots * cfg.max_seq_len], np.int64)
        self.logits = memory.allocate([slots, self.rows], np.float32)
        self.host = {"pos": buffers.position_ids, "mask": buffers.attention_mask, "padded": buffers.padded_mask}
        self.copier = DeviceSlotCopier(memory, self.kv_ptrs, self.slot_bytes, cfg.num_kv_heads,
                                       cfg.max_seq_len * cfg.head_dim * item, cfg.head_dim * item)
        cache.set_slot_copier(self.copier)
        self.binding = session.io_binding()
        self.bound: tuple[int, int] | None = None  # (first_slot, batch) of the KV / logits binding

    def _bind_kv(self, first_slot: int, batch: int) -> None:
        b, dev, devid = self.binding, self.memory.device, self.memory.device_id
        shape = [batch, *self.kv_tail]
        for i in range(self.layers):
            for j, kind in enumerate(("key", "value")):
                ptr = self.kv_ptrs[2 * i + j] + first_slot * self.slot_bytes
                b.bind_input(LmIo.past(i, kind), dev, devid, self.kv_dtype, shape, ptr)
                b.bind_output(LmIo.present(i, kind), dev, devid, self.kv_dtype, shape, ptr)
        b.bind_output(LmIo.LOGITS, dev, devid, np.float32, [batch, self.rows], self.logits.data_ptr())
        self.bound = (first_slot, batch)

    def _step(self, input_ids: np.ndarray, logits: np.ndarray, first_slot: int, mask: str, mask_len: int) -> None:
        batch, seq = input_ids.shape
        if self.bound != (first_slot, batch):
            self._bind_kv(first_slot, batch)
        m, b, dev, devid = self.memory, self.binding, self.memory.device, self.memory.device_id
        n = batch * seq
        for name, value, host, count in ((LmIo.INPUT_IDS, self.ids, input_ids, n),
                                         (LmIo.POSITION_IDS, self.pos, self.host["pos"], n),
                                         (LmIo.ATTENTION_MASK, self.mask, self.host[mask], batch * mask_len)):
            m.to_device(value.data_ptr(), host.ctypes.data, count * 8)
            shape = [batch, seq] if name != LmIo.ATTENTION_MASK else [batch, mask_len]
            b.bind_input(name, dev, devid, np.int64, shape, value.data_ptr())
        self.session.run_with_iobinding(b)
        b.synchronize_outputs()
        m.to_host(logits.ctypes.data, self.logits.data_ptr(), batch * self.rows * 4)

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        """One step over the first `batch` slots (called by the C++ loop)."""
        self._step(input_ids, logits, 0, "mask", past_len + input_ids.shape[1])

    def forward_rows(self, input_ids: np.ndarray, first_slot: int, mask_len: int, logits: np.ndarray) -> None:
        """A Scheduler step over slots [first_slot, first_slot + batch) with the padded mask."""
        self._step(input_ids, logits, first_slot, "padded", mask_len)


def check_cuda_provider() -> None:
    """Refuses, in one line, an onnxruntime without the CUDA provider."""
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        raise BundleError(INSTALL_ORT_GPU)


def check_cuda_model(model: ModelFacts, bundle_root: Any) -> None:
    """The CUDA provider's GroupQueryAttention runs float16 (and bfloat16) only."""
    if model.kv_dtype != "float16":
        raise BundleError(f"bundle '{bundle_root}' has a {model.kv_dtype} KV cache, but ONNX Runtime's CUDA "
                          "GroupQueryAttention runs only float16: export the bundle with an fp16 KV cache for "
                          "onnxruntime-cuda")
