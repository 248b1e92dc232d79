"""A plain driver for any LM graph file of a bundle (the ORT flavour or the portable one), read from its inputs.

Two KV layouts exist (docs/gpu.md):
- growing past (lm.onnx, ORT flavour): `past_key_values.*` [batch, kv_heads, past, head_dim] and `present.*`
  [batch, kv_heads, past + seq, head_dim]; the present is fed back as the next past;
- static capacity (portable graph): `past_key_values.*` [batch, kv_heads, max_context, head_dim] are the slot
  buffers (positions [0, past) valid), `present.*` hold only the `seq` new positions, which the driver writes
  into its buffers at positions [past, past + seq).
The layout is recognised from the graph (a fixed integer third dimension of the past input = static capacity),
so a graph rewritten by `llasa_rt.calibration` (Q/DQ) runs here like the graph it came from. Graph outputs
other than logits and present (e.g. activations exposed for calibration) are returned by `run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..backends.ort import create_session
from ..errors import BundleError, InputError
from ..layout import LmIo

_KV_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class LmRunner:
    """One sequence batch at a time through an LM graph, one session run per call (tests, calibration, compare)."""

    def __init__(self, onnx_path: str | Path, max_context: int, threads: int | None = None,
                 session: Any = None) -> None:
        self.path = Path(onnx_path)
        self.session = session or create_session(self.path, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        first = inputs.get(LmIo.past(0, "key"))
        if first is None or LmIo.INPUT_IDS not in inputs:
            raise BundleError(f"{self.path.name} is not an LM graph (no {LmIo.INPUT_IDS} / {LmIo.past(0, 'key')} "
                              "inputs)")
        self.layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
        shape = first.shape
        if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
            raise BundleError(f"{self.path.name} takes KV of shape {shape}; expected [batch, kv_heads, past, "
                              "head_dim] with fixed kv_heads and head_dim")
        if first.type not in _KV_TYPES:
            raise BundleError(f"{self.path.name} takes KV of type {first.type}; expected float or float16")
        self.kv_dtype = _KV_TYPES[first.type]
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.static = isinstance(shape[2], int)  # portable graph: fixed-capacity slot buffers
        self.max_context = int(shape[2]) if self.static else int(max_context)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0)."""
        cap = self.max_context if self.static else 0
        shape = (batch, self.kv_heads, cap, self.head_dim)
        self.past = {LmIo.past(i, n): np.zeros(shape, self.kv_dtype) for i in range(self.layers)
                     for n in ("key", "value")}
        self.length = 0

    def run(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Feeds ids [B, S] after what was fed so far; returns every graph output by name."""
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        if self.length + s > self.max_context:
            raise InputError(f"{self.length + s} tokens do not fit the model's {self.max_context}-token context")
        pos = np.broadcast_to(np.arange(self.length, self.length + s, dtype=np.int64), (b, s)).copy()
        feed = {LmIo.INPUT_IDS: ids, LmIo.ATTENTION_MASK: np.ones((b, self.length + s), np.int64),
                LmIo.POSITION_IDS: pos, **self.past}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        for name, value in out.items():
            if not name.startswith("present."):
                continue
            past = LmIo.present_to_past(name)
            if self.static:
                self.past[past][:, :, self.length:self.length + s] = value
            else:
                self.past[past] = value
        self.length += s
        return out

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feeds ids [B, S]; returns last-position logits [B, head rows]."""
        return self.run(ids)[LmIo.LOGITS]
