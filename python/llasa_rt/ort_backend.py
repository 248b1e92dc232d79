"""The ONNX Runtime backend of the decode loop: runs lm.onnx on buffers that the C++ core owns.

ONNX Runtime ships no C/C++ headers here, so the step is driven from Python: the C++ loop calls
`forward` (taking the GIL only for that call) and we run the session through an IOBinding whose inputs
and outputs point straight into the core's memory:

- `past_key_values.{i}.key|value` and `present.{i}.key|value` are bound to the SAME buffer, the first
  `batch` slots of the core's KV cache [slots, kv_heads, max_seq_len, head_dim]: GroupQueryAttention
  then writes the new keys/values in place, so no KV tensor is copied or allocated per step;
- `input_ids`, `position_ids`, `attention_mask` (a prefix of an all-ones buffer) and `logits` are the
  core's StepBuffers.

KV bindings change only when the number of live candidates changes; per step we rebind the three
small inputs (their shapes change) and run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _core
from .errors import BundleError


def _pointer(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


class OrtLmBackend(_core.Backend):
    """lm.onnx of a bundle as a `llasa_rt._core.Backend` (shared past/present KV buffers)."""

    def __init__(self, session: Any, cache: Any, buffers: Any, model: dict) -> None:
        super().__init__(cache, buffers)
        self.session = session
        self.binding = session.io_binding()
        self.layers = int(model["num_layers"])
        cfg = cache.config
        self.kv_dtype = np.float16 if model.get("kv_dtype") == "float16" else np.float32
        self.kv_tail = [cfg.num_kv_heads, cfg.max_seq_len, cfg.head_dim]
        self.keys = [cache.key(i) for i in range(self.layers)]
        self.values = [cache.value(i) for i in range(self.layers)]
        for buf in self.keys + self.values:
            if buf.dtype != self.kv_dtype or not buf.flags.c_contiguous:
                raise BundleError(f"KV buffer of dtype {buf.dtype} / layout {buf.strides} does not fit this graph "
                                  f"(needs contiguous {np.dtype(self.kv_dtype).name})")
        names = {i.name for i in session.get_inputs()}
        for need in ("input_ids", "attention_mask", "position_ids", "past_key_values.0.key"):
            if need not in names:
                raise BundleError(f"lm.onnx has no input {need!r}: the bundle was not written by llasa-rt export")
        self.rows = int(buffers.rows)
        self.ids_ptr = _pointer(buffers.input_ids)
        self.pos_ptr = _pointer(buffers.position_ids)
        self.mask_ptr = _pointer(buffers.attention_mask)
        self.logits_ptr = _pointer(buffers.logits)
        self.bound_batch = 0
        self.profile = False  # when True, `run_seconds` collects the time of each session run (benchmarks)
        self.run_seconds: list[float] = []

    def _bind_batch(self, batch: int) -> None:
        """(Re)binds the KV buffers and logits for `batch` live rows."""
        b = self.binding
        shape = [batch, *self.kv_tail]
        for i in range(self.layers):
            for kind, bufs in (("key", self.keys), ("value", self.values)):
                ptr = _pointer(bufs[i])
                b.bind_input(f"past_key_values.{i}.{kind}", "cpu", 0, self.kv_dtype, shape, ptr)
                b.bind_output(f"present.{i}.{kind}", "cpu", 0, self.kv_dtype, shape, ptr)
        b.bind_output("logits", "cpu", 0, np.float32, [batch, self.rows], self.logits_ptr)
        self.bound_batch = batch

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        """One step over the first `batch` KV slots (called by the C++ loop)."""
        batch, seq = input_ids.shape
        if batch != self.bound_batch:
            self._bind_batch(batch)
        b = self.binding
        b.bind_input("input_ids", "cpu", 0, np.int64, [batch, seq], self.ids_ptr)
        b.bind_input("position_ids", "cpu", 0, np.int64, [batch, seq], self.pos_ptr)
        b.bind_input("attention_mask", "cpu", 0, np.int64, [batch, past_len + seq], self.mask_ptr)
        if self.profile:
            t0 = time.perf_counter()
            self.session.run_with_iobinding(b)
            self.run_seconds.append(time.perf_counter() - t0)
        else:
            self.session.run_with_iobinding(b)
