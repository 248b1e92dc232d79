"""A toy language model that really uses a KV cache, for testing the decode loop without ONNX Runtime.

Keys and values are functions of (token, position); the logits of a position are a fixed projection of attention
over every cached position of that row's slot. So a wrong slot, a stale position or a bad copy changes the
logits. Every row is computed on its own (no batched BLAS), so results do not depend on the batch size.
"""

from __future__ import annotations

import numpy as np
import runtime_sampler_reference as ref

from llasa_rt import _core as core
from llasa_rt.layout import LLASA_TOKENS

SPEECH_BASE = LLASA_TOKENS.speech_base_id
NUM_SPEECH = LLASA_TOKENS.speech_count
END_ID = LLASA_TOKENS.end_id
ROWS = LLASA_TOKENS.head_rows


class ToyModel:
    """Tiny attention 'LM' over the real Llasa token layout (65,536 speech rows + END)."""

    def __init__(self, layers: int = 2, kv_heads: int = 2, head_dim: int = 8, seed: int = 0, end_every: int = 0):
        """`end_every` > 0 makes END the most likely row after any token whose row is divisible by it."""
        rng = np.random.default_rng(seed)
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.table = 4096  # Token ids are hashed into this many embeddings.
        shape = (self.table, layers, kv_heads, head_dim)
        self.key_table = rng.standard_normal(shape).astype(np.float32)
        self.value_table = rng.standard_normal(shape).astype(np.float32)
        self.query_table = rng.standard_normal(shape).astype(np.float32)
        self.freq = (1.0 / (10.0 ** np.arange(head_dim) / head_dim)).astype(np.float32)
        features = layers * kv_heads * head_dim
        self.head = (rng.standard_normal((ROWS, features)) * 0.8).astype(np.float32)
        self.end_every = end_every

    def _positional(self, position: int) -> np.ndarray:
        return np.sin(position * self.freq).astype(np.float32)

    def key_value(self, token: int, position: int) -> tuple[np.ndarray, np.ndarray]:
        """[layers, kv_heads, head_dim] keys and values of `token` at `position`."""
        t = token % self.table
        pos = self._positional(position)
        return self.key_table[t] + pos, self.value_table[t] - pos

    def step(
        self, keys: list[np.ndarray], values: list[np.ndarray], input_ids: np.ndarray, past_len: int
    ) -> np.ndarray:
        """Writes K/V of `input_ids` [batch, seq] at [past_len, past_len + seq) of slots [0, batch) in `keys` /
        `values` (per layer [slots, kv_heads, max_seq_len, head_dim]); returns last-position logits [batch, rows]."""
        batch, seq = input_ids.shape
        logits = np.empty((batch, ROWS), dtype=np.float32)
        for b in range(batch):
            for j in range(seq):
                k, v = self.key_value(int(input_ids[b, j]), past_len + j)
                for layer in range(self.layers):
                    keys[layer][b, :, past_len + j, :] = k[layer]
                    values[layer][b, :, past_len + j, :] = v[layer]
            logits[b] = self._logits(keys, values, b, int(input_ids[b, -1]), past_len + seq - 1)
        return logits

    def _logits(self, keys, values, slot: int, token: int, position: int) -> np.ndarray:
        query = self.query_table[token % self.table] + self._positional(position)
        features = []
        for layer in range(self.layers):
            k = keys[layer][slot, :, : position + 1, :].astype(np.float32)  # [heads, positions, dim]
            v = values[layer][slot, :, : position + 1, :].astype(np.float32)
            scores = np.einsum("hpd,hd->hp", k, query[layer]) / np.sqrt(self.head_dim)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            features.append(np.einsum("hp,hpd->hd", weights, v))
        logits = self.head @ np.concatenate(features).reshape(-1)
        row = token - SPEECH_BASE
        if self.end_every and 0 <= row < NUM_SPEECH and row % self.end_every == 0:
            logits[-1] = logits.max() + 2.0
        return logits


class ToyBackend(core.Backend):
    """The toy model as a runtime backend: reads and writes the core's KV slots in place."""

    def __init__(self, model: ToyModel, cache: core.KvCache, buffers: core.StepBuffers):
        super().__init__(cache, buffers)
        self.model = model
        self.keys = [cache.key(layer) for layer in range(model.layers)]
        self.values = [cache.value(layer) for layer in range(model.layers)]
        self.calls: list[tuple[int, int, int]] = []  # (batch, seq_len, past_len) per call.
        self.pointers: set[tuple[int, int]] = set()  # Addresses of the input_ids and logits views seen.

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        self.calls.append((input_ids.shape[0], input_ids.shape[1], past_len))
        self.pointers.add((input_ids.ctypes.data, logits.ctypes.data))
        logits[...] = self.model.step(self.keys, self.values, input_ids, past_len)


def make_generator(
    model: ToyModel, slots: int, max_seq_len: int, sampler_threads: int = 1
) -> tuple[core.Generator, ToyBackend]:
    cache = core.KvCache(
        core.KvCacheConfig(
            num_layers=model.layers, num_kv_heads=model.kv_heads, head_dim=model.head_dim, slots=slots,
            max_seq_len=max_seq_len,
        )
    )
    buffers = core.StepBuffers(cache, rows=ROWS)
    backend = ToyBackend(model, cache, buffers)
    config = core.GeneratorConfig(speech_token_base=SPEECH_BASE, num_speech_tokens=NUM_SPEECH, end_token_id=END_ID,
                                  sampler_threads=sampler_threads)
    generator = core.Generator(backend, config)
    return generator, backend


def prompt_rows(prompt_ids: list[int]) -> list[int]:
    """Prompt tokens that are logits rows (speech codes and END): the repetition penalty's prompt history."""
    rows = []
    for t in prompt_ids:
        if SPEECH_BASE <= t < SPEECH_BASE + NUM_SPEECH:
            rows.append(t - SPEECH_BASE)
        elif t == END_ID:
            rows.append(NUM_SPEECH)
    return rows


def reference_generate(
    model: ToyModel, prompt_ids: list[int], options: ref.Options, uid: int, max_seq_len: int, prefix: list[int] = ()
) -> tuple[list[int], float, str]:
    """One candidate alone, with its own KV and the NumPy reference sampler: no slots, no compaction, no batching.
    `prefix` = tokens this candidate already generated (they are part of the prefill and count as steps)."""
    shape = (1, model.kv_heads, max_seq_len, model.head_dim)
    keys = [np.zeros(shape, np.float32) for _ in range(model.layers)]
    values = [np.zeros(shape, np.float32) for _ in range(model.layers)]
    tokens = list(prefix)
    prefill = list(prompt_ids) + [SPEECH_BASE + r for r in tokens]
    logits = model.step(keys, values, np.array([prefill]), 0)[0]
    history = prompt_rows(prompt_ids)
    limit = options.max_new_tokens or (max_seq_len - len(prompt_ids))
    logprob = 0.0
    while True:
        row, lp = ref.sample(logits, np.array(history + tokens), uid, len(tokens), options)
        logprob += lp
        if row == NUM_SPEECH:
            return tokens, logprob, "end"
        tokens.append(row)
        if len(tokens) >= limit:
            return tokens, logprob, "max_new_tokens" if options.max_new_tokens else "context_full"
        logits = model.step(keys, values, np.array([[SPEECH_BASE + row]]), len(prompt_ids) + len(tokens) - 1)[0]
