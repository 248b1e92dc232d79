"""A readable NumPy reference of the runtime sampler: Hugging Face transformers' logits processors in generate()'s
order (repetition penalty, END masked before min_new_tokens, temperature, top-k, top-p, min-p), over the kept rows
(speech codes, END last), plus the counter-based RNG the C++ core uses for its draws.

Logit transforms run in `dtype` (float32 like transformers on float32 logits); probabilities in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASK64 = (1 << 64) - 1


@dataclass
class Options:
    """Same fields and defaults as llasa_rt._core.SamplingOptions."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_new_tokens: int = 0
    max_new_tokens: int = 0
    seed: int = 0


def splitmix64(z: int) -> int:
    """SplitMix64's finaliser on a 64-bit integer."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def uniform_draw(seed: int, uid: int, step: int) -> float:
    """The draw in [0, 1) of candidate `uid` at step `step`: a pure function of its arguments."""
    h = splitmix64(seed & MASK64)
    h = splitmix64(h ^ uid)
    h = splitmix64(h ^ step)
    return (h >> 11) / float(1 << 53)


def softmax64(scores: np.ndarray) -> np.ndarray:
    """Softmax in float64; -inf rows get probability 0."""
    s = scores.astype(np.float64)
    w = np.exp(s - s.max())
    return w / w.sum()


def processed_scores(
    logits: np.ndarray, history: np.ndarray, step: int, o: Options, dtype: type = np.float32
) -> np.ndarray:
    """The scores after every processor (removed rows are -inf). Greedy stops after the history processors."""
    x = np.asarray(logits, dtype=dtype)
    s = x.copy()
    end_row = len(s) - 1
    history = np.asarray(history, dtype=np.int64)
    if o.repetition_penalty != 1.0 and history.size:
        rows = np.unique(history)  # At most once per row, from the raw logit.
        penalty = dtype(o.repetition_penalty)
        s[rows] = np.where(x[rows] < 0, x[rows] * penalty, x[rows] / penalty)
    if step < o.min_new_tokens:
        s[end_row] = -np.inf
    if o.temperature == 0:
        return s
    if o.temperature != 1.0:
        s = s / dtype(o.temperature)
    if o.top_k > 0:
        k = min(o.top_k, len(s))
        kth = np.sort(s)[-k]  # The k-th largest value, duplicates counted.
        s = np.where(s < kth, -np.inf, s).astype(dtype)
    if o.top_p < 1.0:
        order = np.argsort(s, kind="stable")  # Ascending; ties keep index order.
        cumulative = np.cumsum(softmax64(s)[order])
        remove = cumulative <= 1.0 - o.top_p
        remove[-1] = False  # Keep at least the largest.
        s = s.copy()
        s[order[remove]] = -np.inf
    if o.min_p > 0.0:
        p = softmax64(s)
        remove = p < o.min_p * p.max()
        remove[np.argmax(p)] = False
        s = s.copy()
        s[remove] = -np.inf
    return s


def distribution(
    logits: np.ndarray, history: np.ndarray, step: int, o: Options, dtype: type = np.float32
) -> np.ndarray:
    """The final distribution a row is drawn from; one-hot at the argmax for greedy."""
    s = processed_scores(logits, history, step, o, dtype)
    if not np.isfinite(s).any():
        raise ValueError("no row is left to choose")
    if o.temperature == 0:
        p = np.zeros(len(s))
        p[int(np.argmax(s))] = 1.0
        return p
    return softmax64(s)


def raw_logprobs(logits: np.ndarray) -> np.ndarray:
    """log-softmax of the unprocessed logits (the candidate's score)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def sample(logits: np.ndarray, history: np.ndarray, uid: int, step: int, o: Options) -> tuple[int, float]:
    """(row, raw log-prob): inverse CDF in row order at u = uniform_draw(seed, uid, step)."""
    p = distribution(logits, history, step, o)
    if o.temperature == 0:
        row = int(np.argmax(p))
    else:
        cumulative = np.cumsum(p)
        row = int(np.searchsorted(cumulative, uniform_draw(o.seed, uid, step) * cumulative[-1], side="right"))
        row = min(row, int(np.flatnonzero(p)[-1]))
    return row, float(raw_logprobs(logits)[row])
