"""The portable LM graph (standard ONNX operators, `lm.portable.onnx`) on ONNX Runtime.

Its KV contract (docs/gpu.md, "The portable graph and its KV cache"): `past_key_values.{i}.key|value` are the
core's slot buffers bound as they are, [batch, kv_heads, max_context, head_dim] (static capacity), read-only for
the graph; `present.{i}.key|value` are only the new positions [batch, kv_heads, seq, head_dim], which the
backend writes into each row's slot at that row's positions after the run. So per step:

- no KV tensor is copied into the graph (the inputs point into the cache: the first `batch` slots of a buffer
  [slots, kv_heads, max_context, head_dim] are contiguous);
- the new K/V (seq positions per row) are copied once into the cache; nothing of the past is copied;
- `present` is bound to scratch owned by the backend, grown only when a longer step than before comes (a prompt);
  decode steps allocate nothing.

`PortableLmBackend` serves the C++ loop (`forward`, and `forward_rows` for request batching, where each row has
its own cache length); `PortableLm` is the plain driver (parity tests, `llasa-rt compare`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ..bundle import LM_PORTABLE_GRAPH, ModelFacts
from ..errors import BundleError, InputError
from ..layout import LmIo, TokenLayout
from .ort import PlainLm, check_lm_graph, core_kv_buffers


def _pointer(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def check_portable_graph(session: Any, model: ModelFacts, tokens: TokenLayout, name: str) -> None:
    """check_lm_graph, plus the portable contract: KV inputs of static capacity max_context, new-only present."""
    check_lm_graph(session, model, tokens, name)
    past = {i.name: i.shape for i in session.get_inputs()}[LmIo.past(0, "key")]
    if past[2] != model.max_context:
        raise BundleError(f"{name} takes KV of capacity {past[2]}, but manifest.json says model.max_context = "
                          f"{model.max_context} (the portable graph reads the cache at its full capacity); "
                          "re-export the bundle")
    outputs = {o.name for o in session.get_outputs()}
    if LmIo.present(0, "key") not in outputs:
        raise BundleError(f"{name} has no output {LmIo.present(0, 'key')!r}: it was not written by llasa-rt "
                          "export --target portable; re-export it")


class _NewKv:
    """Scratch for the graph's `present` outputs (one K and one V per layer), grown to the longest step so far."""

    def __init__(self, layers: int, slots: int, kv_heads: int, head_dim: int, dtype: Any) -> None:
        self.layers, self.slots, self.kv_heads, self.head_dim, self.dtype = layers, slots, kv_heads, head_dim, dtype
        self.seq_capacity = 0
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def views(self, batch: int, seq: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """[batch, kv_heads, seq, head_dim] views at the start of each scratch buffer."""
        if seq > self.seq_capacity:
            size = self.slots * self.kv_heads * seq * self.head_dim
            self.keys = [np.empty(size, self.dtype) for _ in range(self.layers)]
            self.values = [np.empty(size, self.dtype) for _ in range(self.layers)]
            self.seq_capacity = seq
        n = batch * self.kv_heads * seq * self.head_dim
        shape = (batch, self.kv_heads, seq, self.head_dim)
        return [k[:n].reshape(shape) for k in self.keys], [v[:n].reshape(shape) for v in self.values]


class PortableLmBackend(_core.Backend):
    """The portable LM graph as a `llasa_rt._core.Backend` (see the module docstring)."""

    def __init__(self, session: Any, cache: Any, buffers: Any, model: ModelFacts) -> None:
        super().__init__(cache, buffers)
        self.session = session
        self.binding = session.io_binding()
        self.layers = model.num_layers
        cfg = cache.config
        if cfg.max_seq_len != model.max_context:
            raise BundleError(f"the KV cache holds {cfg.max_seq_len} positions per slot but the portable graph reads "
                              f"{model.max_context}; make the cache with max_seq_len = model.max_context")
        self.kv_dtype, self.keys, self.values = core_kv_buffers(cache, model)
        self.kv_shape = [cfg.num_kv_heads, cfg.max_seq_len, cfg.head_dim]
        self.slot_bytes = int(self.keys[0][0].nbytes)
        self.new_kv = _NewKv(self.layers, cfg.slots, cfg.num_kv_heads, cfg.head_dim, self.kv_dtype)
        self.rows = int(buffers.rows)
        self.input_ids = buffers.input_ids
        self.position_ids = buffers.position_ids
        self.ones_mask = buffers.attention_mask  # all ones: the mask of a step whose rows share one past length
        self.padded_mask = buffers.padded_mask
        self.rows_mask = np.ones_like(self.padded_mask)  # forward_rows: the padded mask in the graph's layout
        self.columns = np.arange(cfg.max_seq_len, dtype=np.int64)
        self.logits_ptr = _pointer(buffers.logits)
        self.bound: tuple[int, int, int] | None = None  # (first_slot, batch, seq) of the KV / logits binding
        self.new_keys: list[np.ndarray] = []
        self.new_values: list[np.ndarray] = []

    def _bind(self, first_slot: int, batch: int, seq: int) -> None:
        if self.bound == (first_slot, batch, seq):
            return
        b = self.binding
        shape = [batch, *self.kv_shape]
        offset = first_slot * self.slot_bytes
        self.new_keys, self.new_values = self.new_kv.views(batch, seq)
        for i in range(self.layers):
            for kind, cache, new in (("key", self.keys, self.new_keys), ("value", self.values, self.new_values)):
                b.bind_input(LmIo.past(i, kind), "cpu", 0, self.kv_dtype, shape, _pointer(cache[i]) + offset)
                b.bind_output(LmIo.present(i, kind), "cpu", 0, self.kv_dtype, list(new[i].shape), _pointer(new[i]))
        b.bind_output(LmIo.LOGITS, "cpu", 0, np.float32, [batch, self.rows], self.logits_ptr)
        self.bound = (first_slot, batch, seq)

    def _run(self, batch: int, seq: int, mask: np.ndarray, mask_len: int) -> None:
        b = self.binding
        b.bind_input(LmIo.INPUT_IDS, "cpu", 0, np.int64, [batch, seq], _pointer(self.input_ids))
        b.bind_input(LmIo.POSITION_IDS, "cpu", 0, np.int64, [batch, seq], _pointer(self.position_ids))
        b.bind_input(LmIo.ATTENTION_MASK, "cpu", 0, np.int64, [batch, mask_len], _pointer(mask))
        self.session.run_with_iobinding(b)

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        """One step over the first `batch` slots, every row with `past_len` cached positions (the C++ loop)."""
        batch, seq = input_ids.shape
        self._bind(0, batch, seq)
        self._run(batch, seq, self.ones_mask, past_len + seq)
        end = past_len + seq
        for i in range(self.layers):
            self.keys[i][:batch, :, past_len:end] = self.new_keys[i]
            self.values[i][:batch, :, past_len:end] = self.new_values[i]

    def forward_rows(self, input_ids: np.ndarray, first_slot: int, mask_len: int, logits: np.ndarray) -> None:
        """A Scheduler step over slots [first_slot, first_slot + batch), row b with its own cache length (the ones
        of its padded-mask row, minus seq): the mask becomes [valid cache columns | new tokens] and each row's new
        K/V go to its own positions."""
        batch, seq = input_ids.shape
        past = mask_len - seq
        padded = self.padded_mask[:batch * mask_len].reshape(batch, mask_len)
        lengths = padded.sum(axis=1) - seq  # cached positions of each row
        mask = self.rows_mask[:batch * mask_len].reshape(batch, mask_len)
        np.less(self.columns[:past], lengths[:, None], out=mask[:, :past], casting="unsafe")
        mask[:, past:] = 1
        self._bind(first_slot, batch, seq)
        self._run(batch, seq, self.rows_mask, mask_len)
        for r, length in enumerate(lengths.tolist()):
            slot, end = first_slot + r, length + seq
            for i in range(self.layers):
                self.keys[i][slot, :, length:end] = self.new_keys[i][r]
                self.values[i][slot, :, length:end] = self.new_values[i][r]


class PortableLm(PlainLm):
    """The plain driver of a portable graph: capacity caches [batch, kv_heads, max_context, head_dim] it owns, one
    session run per call, the new K/V written after each run (the same contract the runtime backends follow)."""

    DEFAULT_GRAPH = LM_PORTABLE_GRAPH

    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0)."""
        m = self.model
        kv = np.float16 if m.kv_dtype == "float16" else np.float32
        shape = (batch, m.num_kv_heads, m.max_context, m.head_dim)
        self.cache = {LmIo.past(i, n): np.zeros(shape, kv) for i in range(m.num_layers) for n in ("key", "value")}
        self.lengths = np.zeros(batch, np.int64)

    @property
    def length(self) -> int:
        """Cached positions (of the longest row)."""
        return int(self.lengths.max())

    def step(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Feeds ids [B, S] after what each row holds; returns last-position logits [B, head rows].

        `lengths` (optional, [B]) sets how many cached positions each row attends to before this call (default:
        all it holds); rows of different lengths are padded with masked cache columns, as request batching does.
        """
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        lengths = self.lengths.copy() if lengths is None else np.asarray(lengths, np.int64)
        past = int(lengths.max())
        if past + s > self.model.max_context:
            raise InputError(f"{past + s} tokens do not fit the model's {self.model.max_context}-token context")
        pos = lengths[:, None] + np.arange(s, dtype=np.int64)[None, :]
        mask = np.ones((b, past + s), np.int64)
        mask[:, :past] = np.arange(past)[None, :] < lengths[:, None]
        feed = {LmIo.INPUT_IDS: ids, LmIo.ATTENTION_MASK: mask, LmIo.POSITION_IDS: pos, **self.cache}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        self.outputs = out
        for r in range(b):
            n = int(lengths[r])
            for name, new in out.items():
                if name.startswith("present."):
                    self.cache[LmIo.present_to_past(name)][r, :, n:n + s] = new[r]
        self.lengths = lengths + s
        return out[LmIo.LOGITS]
