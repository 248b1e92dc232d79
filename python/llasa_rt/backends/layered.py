"""The layered LM: L + 1 ONNX segment graphs around llasa-rt's attention kernel, or llasa-rt's own decoder.

The decoder was exported cut at attention (export/lm_graph.py, `build_layered`): segment 0 turns the tokens
into layer 0's rotated query/key/value, segment i finishes layer i-1 and produces layer i's, segment L
finishes the last layer and gives the logits. Between segments `_core.Attention` stores the new keys/values
in the core's KvCache (float16 or float32, whatever the activations are) and attends over each row's slot -
with the positions of a shared prompt read once from one slot for every candidate (`set_shared_prefix`).

int4/int8 bundles on a CPU whose kernel `native_decode` allows run every step on `_core.NativeLm` instead
(native.py: the same weights, attention kernel and KV slots, llasa-rt's matrix kernels); ONNX Runtime is then not
loaded. Otherwise every segment runs through an IOBinding into buffers owned here (query, key, value, attention
output and two residual buffers used in turn), allocated for the largest batch x sequence seen so far and rebound
only when a step's shape changes, so a decode step allocates nothing; input_ids, position_ids and logits are the
core's StepBuffers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..bundle import ModelFacts
from ..errors import BundleError, InputError
from ..layout import LmIo, TokenLayout


@dataclass
class LayeredGraphs:
    """The sessions of a layered LM's segments (shared by every backend over it) and the kernel's threads."""

    sessions: list[Any]  # segment 0 .. num_layers, in order (empty when `native` runs every step)
    threads: int  # threads of one attention run
    native: Any = None  # _core.NativeLm over the same weights (native.open_native): runs every step, or None


def open_layered(folder: Path, segments: list[str], model: ModelFacts, tokens: TokenLayout, threads: int | None,
                 providers: list[str] | None, bundle_root: Path | None = None,
                 native_decode: str = "auto") -> LayeredGraphs:
    """The layered LM in `folder` (segment files `segments`): llasa-rt's own decoder (`native.open_native`) when
    `native_decode` allows it on this CPU and the graphs are int4/int8 (then ONNX Runtime is not loaded at all),
    else ONNX Runtime sessions of the segments, checked against the manifest."""
    from .native import open_native
    from .ort import create_session

    count = threads or os.cpu_count() or 1
    cpu_only = providers is None or list(providers) == ["CPUExecutionProvider"]
    where = f"the layered LM of bundle '{bundle_root}'" if bundle_root else f"the layered LM in '{folder}'"
    if len(segments) != model.num_layers + 1:
        raise BundleError(f"{where} has {len(segments)} segments but model.num_layers = {model.num_layers} needs "
                          f"{model.num_layers + 1}; re-export the bundle")
    native = open_native(Path(folder), segments, model, tokens.head_rows, count, native_decode) if cpu_only else None
    if native is not None:
        return LayeredGraphs([], count, native)
    # The segments run in turn with the attention kernel's threads: ONNX Runtime's threads spinning between the
    # runs of L + 1 sessions would starve those (measured: a 1B decode step 20x slower with spinning).
    sessions = [create_session(Path(folder) / name, threads, providers, bundle_root, spinning=False)
                for name in segments]
    check_segments(sessions, model, tokens, where)
    return LayeredGraphs(sessions, count)


def check_segments(sessions: list[Any], model: ModelFacts, tokens: TokenLayout, where: str) -> None:
    """Checks each segment's inputs and outputs against the manifest (widths, layer count, head rows)."""
    if len(sessions) != model.num_layers + 1:
        raise BundleError(f"{where} has {len(sessions)} segments but model.num_layers = {model.num_layers} needs "
                          f"{model.num_layers + 1}; re-export the bundle")
    q_width, kv_width = model.num_attention_heads * model.head_dim, model.num_kv_heads * model.head_dim
    for index, session in enumerate(sessions):
        inputs = {i.name: i.shape[-1] for i in session.get_inputs()}
        outputs = {o.name: o.shape[-1] for o in session.get_outputs()}
        need_in = {LmIo.INPUT_IDS: None, LmIo.POSITION_IDS: None} if index == 0 else {
            LmIo.ATTENTION: q_width, LmIo.RESIDUAL_IN: model.hidden_size}
        if 0 < index < model.num_layers:
            need_in[LmIo.POSITION_IDS] = None
        need_out = {LmIo.LOGITS: tokens.head_rows} if index == model.num_layers else {
            LmIo.QUERY: q_width, LmIo.KEY: kv_width, LmIo.VALUE: kv_width, LmIo.RESIDUAL: model.hidden_size}
        for kind, have, need in (("input", inputs, need_in), ("output", outputs, need_out)):
            for name, width in need.items():
                if name not in have or (width is not None and isinstance(have[name], int) and have[name] != width):
                    raise BundleError(f"segment {index} of {where} has no {kind} {name!r} of width {width} (has "
                                      f"{have}); it does not match manifest.json: re-export the bundle")


def _pointer(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


class LayeredLmBackend(_core.Backend):
    """A layered LM as a `llasa_rt._core.Backend` (see the module docstring)."""

    def __init__(self, graphs: LayeredGraphs, cache: Any, buffers: Any, model: ModelFacts) -> None:
        super().__init__(cache, buffers)
        self.sessions = graphs.sessions
        self.native = graphs.native
        self.bindings = [s.io_binding() for s in self.sessions]
        self.layers = model.num_layers
        self.q_width = model.num_attention_heads * model.head_dim
        self.kv_width = model.num_kv_heads * model.head_dim
        self.hidden = model.hidden_size
        # The segments' activation dtype and the attention kernel between them: only without NativeLm, which runs
        # every step with its own attention (no idle thread pool per backend).
        self.act, self.attention = np.float32, None
        if self.native is None:
            residual_type = next(o.type for o in self.sessions[0].get_outputs() if o.name == LmIo.RESIDUAL)
            self.act = np.float16 if residual_type == "tensor(float16)" else np.float32
            self.attention = _core.Attention(cache, _core.AttentionConfig(
                num_heads=model.num_attention_heads, num_kv_heads=model.num_kv_heads, head_dim=model.head_dim,
                scale=float(1.0 / np.sqrt(model.head_dim)), threads=graphs.threads))
        self.rows = int(buffers.rows)
        self.ids_ptr = _pointer(buffers.input_ids)
        self.pos_ptr = _pointer(buffers.position_ids)
        self.logits_ptr = _pointer(buffers.logits)
        slots = int(cache.config.slots)
        self.slots = np.zeros(slots, np.int32)  # KV slot of each row of the step
        self.past_lens = np.zeros(slots, np.int32)  # cached positions of each row before the step
        self.prefix = (-1, 0)  # (slot, length) of the prompt every row reads (set_shared_prefix)
        self.capacity = 0  # tokens (batch x sequence) the step buffers hold
        self.bound: tuple[int, int] | None = None  # (batch, seq) the bindings and views are for
        self.views: dict[str, np.ndarray] = {}
        self.profile = False  # when True, `run_seconds` collects the time of each step (benchmarks)
        self.run_seconds: list[float] = []

    # ---- contract (2): the prompt's KV read from one slot by every row --------------------------------
    def shares_prefix(self) -> bool:
        """The kernel reads a shared prompt from one slot, so forks need not copy it."""
        return True

    def set_shared_prefix(self, slot: int, length: int) -> None:
        """Rows read positions [0, length) from `slot` (slot -1 / length 0: nothing shared)."""
        self.prefix = (int(slot), int(length)) if length > 0 else (-1, 0)

    # ---- steps ---------------------------------------------------------------------------------------
    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        """One step over the first `batch` KV slots, every row with `past_len` cached positions."""
        batch, seq = input_ids.shape
        self.slots[:batch] = np.arange(batch, dtype=np.int32)
        self.past_lens[:batch] = past_len
        self._run(batch, seq, *self.prefix)

    def forward_rows(self, input_ids: np.ndarray, first_slot: int, mask_len: int, logits: np.ndarray) -> None:
        """A Scheduler step: rows in KV slots [first_slot, first_slot + batch), each with its own context length
        (the ones of its padded-mask row); nothing is shared between requests."""
        batch, seq = input_ids.shape
        mask = self.buffers.padded_mask[:batch * mask_len].reshape(batch, mask_len)
        self.slots[:batch] = np.arange(first_slot, first_slot + batch, dtype=np.int32)
        self.past_lens[:batch] = mask.sum(axis=1) - seq
        self._run(batch, seq, -1, 0)

    def _run(self, batch: int, seq: int, prefix_slot: int, prefix_len: int) -> None:
        if self.native is not None:
            t0 = time.perf_counter() if self.profile else 0.0
            tokens = batch * seq
            self.native.run(self.cache, self.buffers.input_ids[:tokens].reshape(batch, seq),
                            self.buffers.position_ids[:tokens].reshape(batch, seq), self.slots[:batch],
                            self.past_lens[:batch], prefix_slot, prefix_len,
                            self.buffers.logits.reshape(-1)[:batch * self.rows].reshape(batch, self.rows))
            if self.profile:
                self.run_seconds.append(time.perf_counter() - t0)
            return
        if self.bound != (batch, seq):
            self._bind(batch, seq)
        t0 = time.perf_counter() if self.profile else 0.0
        v = self.views
        slots, past_lens = self.slots[:batch], self.past_lens[:batch]
        self.sessions[0].run_with_iobinding(self.bindings[0])
        for layer in range(self.layers):
            self.attention.run(layer, v["q"], v["k"], v["v"], slots, past_lens, prefix_slot, prefix_len, v["attn"])
            self.sessions[layer + 1].run_with_iobinding(self.bindings[layer + 1])
        if self.profile:
            self.run_seconds.append(time.perf_counter() - t0)

    def _bind(self, batch: int, seq: int) -> None:
        """Grows the step buffers if needed and binds every segment for steps of shape [batch, seq]."""
        tokens = batch * seq
        if tokens > self.capacity:
            self.capacity = tokens
            self.store = {"q": np.empty(tokens * self.q_width, np.float32),
                          "k": np.empty(tokens * self.kv_width, np.float32),
                          "v": np.empty(tokens * self.kv_width, np.float32),
                          "attn": np.empty(tokens * self.q_width, np.float32),
                          "res0": np.empty(tokens * self.hidden, self.act),
                          "res1": np.empty(tokens * self.hidden, self.act)}
        widths = {"q": self.q_width, "k": self.kv_width, "v": self.kv_width, "attn": self.q_width,
                  "res0": self.hidden, "res1": self.hidden}
        self.views = {k: self.store[k][:tokens * widths[k]].reshape(batch, seq, widths[k]) for k in widths}

        def bind(b: Any, output: bool, name: str, key: str) -> None:
            view = self.views[key]
            (b.bind_output if output else b.bind_input)(name, "cpu", 0, view.dtype, list(view.shape), _pointer(view))

        for index, b in enumerate(self.bindings):
            if index == 0:
                b.bind_input(LmIo.INPUT_IDS, "cpu", 0, np.int64, [batch, seq], self.ids_ptr)
            else:
                bind(b, False, LmIo.ATTENTION, "attn")
                bind(b, False, LmIo.RESIDUAL_IN, f"res{(index - 1) % 2}")
            if index == self.layers:
                b.bind_output(LmIo.LOGITS, "cpu", 0, np.float32, [batch, self.rows], self.logits_ptr)
                continue
            b.bind_input(LmIo.POSITION_IDS, "cpu", 0, np.int64, [batch, seq], self.pos_ptr)
            outputs = ((LmIo.QUERY, "q"), (LmIo.KEY, "k"), (LmIo.VALUE, "v"), (LmIo.RESIDUAL, f"res{index % 2}"))
            for name, key in outputs:
                bind(b, True, name, key)
        self.bound = (batch, seq)


class LayeredLm:
    """The plainest driver of a layered LM (as `ort.GrowingPastLm` is of a fused one): `step(ids)` feeds tokens
    after those fed so far and returns the last position's logits; a KV cache of `batch` slots of its own."""

    def __init__(self, graphs: LayeredGraphs, model: ModelFacts, rows: int) -> None:
        self.graphs, self.model, self.rows = graphs, model, rows
        self.reset()

    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0) with `batch` rows."""
        m = self.model
        self.cache = _core.KvCache(_core.KvCacheConfig(num_layers=m.num_layers, num_kv_heads=m.num_kv_heads,
                                                       head_dim=m.head_dim, slots=batch, max_seq_len=m.max_context,
                                                       dtype=m.kv_dtype))
        self.buffers = _core.StepBuffers(self.cache, rows=self.rows)
        self.backend = LayeredLmBackend(self.graphs, self.cache, self.buffers, m)
        self.batch, self.length = batch, 0

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feeds ids [batch, S]; returns last-position logits [batch, head rows] (a copy)."""
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        if b != self.batch:
            raise InputError(f"{b} rows given to a layered LM reset for {self.batch}; call reset(batch={b}) first")
        if self.length + s > self.model.max_context:
            raise InputError(f"{self.length + s} tokens do not fit the model's {self.model.max_context}-token context")
        buf = self.buffers
        buf.input_ids[:b * s] = ids.reshape(-1)
        buf.position_ids[:b * s] = np.tile(np.arange(self.length, self.length + s, dtype=np.int64), b)
        logits = buf.logits.reshape(-1)[:b * self.rows].reshape(b, self.rows)
        self.backend.forward(buf.input_ids[:b * s].reshape(b, s), self.length, logits)
        self.length += s
        return logits.copy()
