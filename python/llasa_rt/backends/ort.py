"""ONNX Runtime: the one place that builds sessions, the decode loop's backend, and a plain growing-past driver.

ONNX Runtime ships no C/C++ headers here, so the step is driven from Python: the C++ loop calls
`OrtLmBackend.forward` (taking the GIL only for that call) and we run the session through an IOBinding whose
inputs and outputs point straight into the core's memory:

- `past_key_values.{i}.key|value` and `present.{i}.key|value` are bound to the SAME buffer, the first
  `batch` slots of the core's KV cache [slots, kv_heads, max_seq_len, head_dim]: GroupQueryAttention
  then writes the new keys/values in place, so no KV tensor is copied or allocated per step;
- `input_ids`, `position_ids`, `attention_mask` (a prefix of an all-ones buffer) and `logits` are the
  core's StepBuffers.

`GrowingPastLm` is the plainest driver of an LM graph (present K/V fed back as past, one run per call), for
the export smoke test, drift measurement, parity tests and benchmarks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..bundle import LM_GRAPH, ModelFacts
from ..errors import BundleError, InputError
from ..layout import LmIo, TokenLayout

DEFAULT_PROVIDERS = ["CPUExecutionProvider"]


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """SessionOptions as every llasa-rt session uses them: quiet, `threads` intra-op threads, 1 inter-op.
    `spinning` False: idle intra-op threads sleep at once instead of spinning (for sessions that run in turn
    with other sessions or kernels, whose threads spinning ones would starve)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def check_providers(providers: list[str] | None) -> list[str]:
    """The execution providers to use (default CPU); unknown ones are refused with the available list."""
    import onnxruntime as ort

    if providers is None:
        return list(DEFAULT_PROVIDERS)
    if isinstance(providers, str) or not all(isinstance(p, str) for p in providers) or not providers:
        raise InputError(f"providers must be a non-empty list of ONNX Runtime provider names, not {providers!r}")
    available = ort.get_available_providers()
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise InputError(f"ONNX Runtime provider(s) {', '.join(unknown)} are not available in this onnxruntime; "
                         f"available: {', '.join(available)}")
    return list(providers)


def create_session(path: Path, threads: int | None = None, providers: list[str] | None = None,
                   bundle_root: Path | None = None, spinning: bool = True) -> Any:
    """An InferenceSession for `path`; a load failure becomes one BundleError naming the file and the fix."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads, spinning),
                                    providers=check_providers(providers))
    except InputError:
        raise
    except Exception as e:  # ONNX Runtime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"bundle '{bundle_root}'" if bundle_root else f"'{path.parent}'"
        check = (f"run `llasa-rt info {bundle_root}` (full sha256 check) and re-export the bundle if it fails"
                 if bundle_root else "re-create it")
        raise BundleError(f"ONNX Runtime cannot load {path.name} of {where} ({first[:300]}); the file may be "
                          f"truncated, corrupt or of another build: {check}") from None


def check_lm_graph(session: Any, model: ModelFacts, tokens: TokenLayout, name: str) -> None:
    """Checks the graph's inputs and outputs against the manifest (layers, heads, head size, head rows)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for need in (LmIo.INPUT_IDS, LmIo.ATTENTION_MASK, LmIo.POSITION_IDS, LmIo.past(0, "key")):
        if need not in inputs:
            raise BundleError(f"{name} has no input {need!r}: it was not written by llasa-rt export; re-export it")
    layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
    if layers != model.num_layers:
        raise BundleError(f"{name} has {layers} layers but manifest.json says model.num_layers = "
                          f"{model.num_layers}; re-export the bundle")
    shape = inputs[LmIo.past(0, "key")].shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != model.num_kv_heads) or (
            isinstance(shape[3], int) and shape[3] != model.head_dim):
        raise BundleError(f"{name} takes KV of shape {shape}, but manifest.json says {model.num_kv_heads} kv heads of "
                          f"{model.head_dim}; re-export the bundle")
    kv_type = "tensor(float16)" if model.kv_dtype == "float16" else "tensor(float)"
    if inputs[LmIo.past(0, "key")].type != kv_type:
        raise BundleError(f"{name} takes KV of type {inputs[LmIo.past(0, 'key')].type}, but manifest.json says "
                          f"model.kv_dtype = {model.kv_dtype}; re-export the bundle")
    logits = outputs.get(LmIo.LOGITS)
    if logits is None or (isinstance(logits.shape[-1], int) and logits.shape[-1] != tokens.head_rows):
        raise BundleError(f"{name} does not output {tokens.head_rows} logits rows (speech codes + END); re-export it")


def _pointer(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def core_kv_buffers(cache: Any, model: ModelFacts) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """(dtype, keys, values): the core KvCache's per-layer buffers as NumPy views, checked to be contiguous and of
    the graph's KV dtype (a backend binds them by address)."""
    kv_dtype = np.float16 if model.kv_dtype == "float16" else np.float32
    keys = [cache.key(i) for i in range(model.num_layers)]
    values = [cache.value(i) for i in range(model.num_layers)]
    for buf in keys + values:
        if buf.dtype != kv_dtype or not buf.flags.c_contiguous:
            raise BundleError(f"KV buffer of dtype {buf.dtype} / layout {buf.strides} does not fit this graph "
                              f"(needs contiguous {np.dtype(kv_dtype).name})")
    return kv_dtype, keys, values


PREFILL_MIN_TOKENS = 16  # steps with at least this many new tokens per row run the bundle's prefill graph, if any


class OrtLmBackend(_core.Backend):
    """An LM graph as a `llasa_rt._core.Backend` (shared past/present KV buffers, see the module docstring).

    `prefill`: an optional second session of the same LM whose matrix products use int8 weights and dynamically
    quantised activations (`export --prefill-int8`): steps of at least PREFILL_MIN_TOKENS new tokens per row (a
    prompt) run on it, writing the same KV slots; decode steps run on `session`."""

    def __init__(self, session: Any, cache: Any, buffers: Any, model: ModelFacts, prefill: Any = None) -> None:
        super().__init__(cache, buffers)
        self.session = session
        self.binding = session.io_binding()
        self.prefill = prefill
        self.layers = model.num_layers
        cfg = cache.config
        self.kv_dtype, self.keys, self.values = core_kv_buffers(cache, model)
        self.kv_tail = [cfg.num_kv_heads, cfg.max_seq_len, cfg.head_dim]
        self.rows = int(buffers.rows)
        self.ids_ptr = _pointer(buffers.input_ids)
        self.pos_ptr = _pointer(buffers.position_ids)
        self.mask_ptr = _pointer(buffers.attention_mask)
        self.padded_mask_ptr = _pointer(buffers.padded_mask)
        self.logits_ptr = _pointer(buffers.logits)
        self.slot_bytes = int(self.keys[0][0].nbytes)  # one slot of one layer's K (or V) buffer
        self.bound_rows: tuple[int, int] | None = None  # (first_slot, batch) of the decode binding's KV
        self.profile = False  # when True, `run_seconds` collects the time of each session run (benchmarks)
        self.run_seconds: list[float] = []
        self.prefill_runs = 0  # steps run on the prefill session

    def _bind_kv(self, b: Any, batch: int, first_slot: int) -> None:
        """Binds the KV buffers of slots [first_slot, first_slot + batch) and the logits on binding `b`."""
        shape = [batch, *self.kv_tail]
        offset = first_slot * self.slot_bytes
        for i in range(self.layers):
            for kind, bufs in (("key", self.keys), ("value", self.values)):
                ptr = _pointer(bufs[i]) + offset
                b.bind_input(LmIo.past(i, kind), "cpu", 0, self.kv_dtype, shape, ptr)
                b.bind_output(LmIo.present(i, kind), "cpu", 0, self.kv_dtype, shape, ptr)
        b.bind_output(LmIo.LOGITS, "cpu", 0, np.float32, [batch, self.rows], self.logits_ptr)

    def _step(self, first_slot: int, batch: int, seq: int, mask_len: int, mask_ptr: int) -> None:
        if self.prefill is not None and seq >= PREFILL_MIN_TOKENS:
            session, b = self.prefill, self.prefill.io_binding()  # prompts are rare: bind afresh
            self._bind_kv(b, batch, first_slot)
            self.prefill_runs += 1
        else:
            session, b = self.session, self.binding
            if self.bound_rows != (first_slot, batch):
                self._bind_kv(b, batch, first_slot)
                self.bound_rows = (first_slot, batch)
        b.bind_input(LmIo.INPUT_IDS, "cpu", 0, np.int64, [batch, seq], self.ids_ptr)
        b.bind_input(LmIo.POSITION_IDS, "cpu", 0, np.int64, [batch, seq], self.pos_ptr)
        b.bind_input(LmIo.ATTENTION_MASK, "cpu", 0, np.int64, [batch, mask_len], mask_ptr)
        if self.profile:
            t0 = time.perf_counter()
            session.run_with_iobinding(b)
            self.run_seconds.append(time.perf_counter() - t0)
        else:
            session.run_with_iobinding(b)

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        """One step over the first `batch` KV slots (called by the C++ loop)."""
        batch, seq = input_ids.shape
        self._step(0, batch, seq, past_len + seq, self.mask_ptr)

    def forward_rows(self, input_ids: np.ndarray, first_slot: int, mask_len: int, logits: np.ndarray) -> None:
        """A Scheduler step: rows in KV slots [first_slot, first_slot + batch), each with its own context length
        (the padded mask's ones); GroupQueryAttention writes each row's new K/V at its own positions."""
        batch, seq = input_ids.shape
        self._step(first_slot, batch, seq, mask_len, self.padded_mask_ptr)


class PlainLm(ABC):
    """What the plain LM drivers share: one session over one graph file, its output names and the outputs of the
    last run (calibration reads them); `reset(batch)` and `step(ids)` are the flavour's own."""

    DEFAULT_GRAPH = LM_GRAPH  # the manifest entry `from_bundle` runs when none is named

    def __init__(self, onnx_path: str | Path, model: ModelFacts, threads: int | None = None) -> None:
        self.model = model
        self.session = create_session(Path(onnx_path), threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.outputs: dict[str, np.ndarray] = {}  # every output of the last run, by name
        self.reset()

    @classmethod
    def from_bundle(cls, bundle: Any, threads: int | None = None, graph: str | None = None) -> PlainLm:
        """The LM entry `graph` (default DEFAULT_GRAPH) of a bundle (an opened `Bundle`, or a folder opened with
        verify="fast")."""
        from ..bundle import Bundle

        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(bundle, verify="fast")
        graph = graph or cls.DEFAULT_GRAPH
        return cls(bundle.path(bundle.graph(graph).path_name), bundle.manifest.lm_model(graph), threads)

    @abstractmethod
    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0)."""

    @abstractmethod
    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feeds ids [B, S] after what was fed so far; returns last-position logits [B, head rows]."""


class GrowingPastLm(PlainLm):
    """The plainest driver of an LM graph: one session run per call, present K/V fed back as past."""

    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0)."""
        m = self.model
        kv = np.float16 if m.kv_dtype == "float16" else np.float32
        shape = (batch, m.num_kv_heads, 0, m.head_dim)
        self.past = {LmIo.past(i, n): np.zeros(shape, kv) for i in range(m.num_layers) for n in ("key", "value")}
        self.length = 0

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feeds ids [B, S] after what was fed so far; returns last-position logits [B, head rows]."""
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        if self.length + s > self.model.max_context:
            raise InputError(f"{self.length + s} tokens do not fit the model's {self.model.max_context}-token context")
        pos = np.broadcast_to(np.arange(self.length, self.length + s, dtype=np.int64), (b, s)).copy()
        feed = {LmIo.INPUT_IDS: ids, LmIo.ATTENTION_MASK: np.ones((b, self.length + s), np.int64),
                LmIo.POSITION_IDS: pos, **self.past}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        self.outputs = out
        self.past = {LmIo.present_to_past(k): v for k, v in out.items() if k.startswith("present.")}
        self.length += s
        return out[LmIo.LOGITS]
