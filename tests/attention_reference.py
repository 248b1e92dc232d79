"""A NumPy implementation of the attention kernel's contract (contract (1): `_core.Attention.run`), the
reference the layered LM and the C++ kernel are checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AttentionConfig:
    """As `_core.AttentionConfig`."""

    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    scale: float = 0.0
    threads: int = 1


class NumpyAttention:
    """`_core.Attention(cache, config).run(...)` in NumPy: stores the new K/V in the cache's dtype, then attends
    causally over each row's slot, positions [0, prefix_len) read from `prefix_slot`."""

    def __init__(self, cache, config) -> None:
        self.cache, self.config = cache, config

    def run(self, layer, q, k, v, slots, past_lens, prefix_slot, prefix_len, out) -> None:
        c = self.config
        H, Hkv, D = c.num_heads, c.num_kv_heads, c.head_dim
        keys, values = self.cache.key(layer), self.cache.value(layer)  # [slots, Hkv, Smax, D]
        batch, seq = q.shape[:2]
        for b in range(batch):
            slot, past = int(slots[b]), int(past_lens[b])
            assert past >= prefix_len
            keys[slot, :, past:past + seq] = k[b].reshape(seq, Hkv, D).transpose(1, 0, 2)
            values[slot, :, past:past + seq] = v[b].reshape(seq, Hkv, D).transpose(1, 0, 2)
            kk = keys[slot, :, :past + seq].astype(np.float32)
            vv = values[slot, :, :past + seq].astype(np.float32)
            if prefix_len:
                kk[:, :prefix_len] = keys[prefix_slot, :, :prefix_len]
                vv[:, :prefix_len] = values[prefix_slot, :, :prefix_len]
            kk, vv = np.repeat(kk, H // Hkv, axis=0), np.repeat(vv, H // Hkv, axis=0)  # [H, T, D]
            qh = q[b].reshape(seq, H, D).transpose(1, 0, 2).astype(np.float64)
            scores = c.scale * qh @ kk.transpose(0, 2, 1)  # [H, seq, T]
            visible = np.arange(past + seq)[None, :] <= past + np.arange(seq)[:, None]
            scores = np.where(visible[None], scores, -np.inf)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[b] = (p @ vv).transpose(1, 0, 2).reshape(seq, H * D)
