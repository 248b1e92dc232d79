"""How far a quantised (or otherwise different) LM graph drifts from a reference graph.

Both bundles' LMs are fed the same token sequences (teacher forcing): a Llasa prompt for each text of a
prompt set, then the reference's own greedy speech tokens. At every step we compare the two distributions
over the 65,537 speech rows: top-1 agreement, KL(reference || candidate) at temperature 1, and the largest
logit difference. Then the candidate runs free (greedy, on its own tokens) for the same number of steps: the
greedy agreement is the share of those steps before its first token that differs from the reference's greedy
run (which the teacher forcing followed). On trained weights this says how much int8 / int4 / fp16 change the
model; on random weights (the tests) it only orders the precisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import lm_driver
from ..errors import InputError
from ..prompt import PromptBuilder

DATA = Path(__file__).resolve().parent / "data"


def default_prompts() -> list[str]:
    """The packaged prompt set (16 English sentences of different kinds)."""
    return [line.strip() for line in (DATA / "prompts.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class DriftReport:
    """Teacher-forced comparison of a candidate LM with a reference LM."""

    prompts: int  # texts used
    steps: int  # compared positions (prefill + decode steps over all texts)
    top1_agreement: float  # fraction of positions where both pick the same most likely row
    mean_kl: float  # mean KL(reference || candidate) in nats over the 65,537 rows
    max_kl: float  # largest per-position KL
    max_abs_logit_diff: float  # largest |logit difference| anywhere
    greedy_agreement: float | None = None  # free greedy run: mean share of steps before the first different token
    greedy_steps: int = 0  # steps of each free greedy run

    def __str__(self) -> str:
        greedy = "" if self.greedy_agreement is None else (
            f", greedy agreement {100 * self.greedy_agreement:.1f}% of {self.greedy_steps} steps")
        return (f"{self.steps} positions over {self.prompts} prompts: top-1 agreement "
                f"{100 * self.top1_agreement:.1f}%, KL mean {self.mean_kl:.4g} / max {self.max_kl:.4g} nats, "
                f"max |logit diff| {self.max_abs_logit_diff:.4g}{greedy}")


def _greedy(lm: Any, prompt: list[int], steps: int, head_ids: np.ndarray, speech_count: int) -> list[int]:
    """`steps` greedy speech rows of an LM driver from `prompt`."""
    lm.reset()
    ids, rows = np.asarray([prompt], np.int64), []
    for _ in range(steps):
        row = int(np.argmax(lm.step(ids)[0, :speech_count]))
        rows.append(row)
        ids = np.array([[head_ids[row]]], np.int64)
    return rows


def measure_drift(reference: str | Path, candidate: str | Path, texts: list[str] | None = None,
                  steps: int = 32, threads: int | None = None,
                  log: Callable[[str], None] | None = None, greedy: bool = True) -> DriftReport:
    """Compares `candidate`'s LM with `reference`'s on the same tokens (see the module docstring). Each is a bundle
    folder (its default LM) or an LM graph file inside one (e.g. BUNDLE/lm.portable.onnx)."""
    (ref_b, ref), (cand_b, cand) = lm_driver(reference, threads), lm_driver(candidate, threads)
    if ref_b.manifest.prompt != cand_b.manifest.prompt or ref_b.manifest.tokens != cand_b.manifest.tokens:
        raise InputError("the two bundles render prompts differently; export both from the same checkpoint")
    builder = PromptBuilder.from_bundle(ref_b)
    texts = texts or default_prompts()
    tokens = builder.tokens
    head_ids = tokens.head_token_ids()
    longest = max(len(builder.build(t)) for t in texts) + steps + 1
    context = min(ref.model.max_context, cand.model.max_context)
    if longest > context:
        raise InputError(f"{steps} steps after the longest prompt need {longest} tokens, more than the "
                         f"{context}-token context; use at most --steps {max(0, steps - (longest - context))}")
    agree, kls, worst, parted = [], [], 0.0, []
    for n, text in enumerate(texts):
        if log:
            log(f"prompt {n + 1}/{len(texts)}: {steps} steps")
        ref.reset()
        cand.reset()
        ids = np.asarray([builder.build(text)], np.int64)
        rows = []  # the reference's greedy rows (the teacher forcing follows its free greedy run)
        for _ in range(steps + 1):
            a, b = ref.step(ids), cand.step(ids)
            la, lb = _log_softmax(a[0]), _log_softmax(b[0])
            kls.append(float((np.exp(la) * (la - lb)).sum()))
            agree.append(int(np.argmax(a[0])) == int(np.argmax(b[0])))
            worst = max(worst, float(np.abs(a - b).max()))
            row = int(np.argmax(a[0, :tokens.speech_count]))  # continue with the reference's greedy speech token
            rows.append(row)
            ids = np.array([[head_ids[row]]], np.int64)
        if greedy:
            own = _greedy(cand, builder.build(text), steps, head_ids, tokens.speech_count)
            same = [x == y for x, y in zip(rows[:steps], own, strict=True)]
            parted.append((same.index(False) if False in same else steps) / steps)
    return DriftReport(prompts=len(texts), steps=len(kls), top1_agreement=float(np.mean(agree)),
                       mean_kl=float(np.mean(kls)), max_kl=float(np.max(kls)), max_abs_logit_diff=worst,
                       greedy_agreement=float(np.mean(parted)) if greedy else None, greedy_steps=steps if greedy else 0)
