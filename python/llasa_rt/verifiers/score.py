"""User verifiers of kind "score": any graph with the waveform contract that outputs `score [B]` (higher is better).

Emotion, MOS or any other model the user exports: `llasa-rt verifier add --bundle B --name mos --onnx mos.onnx`.
The score is the graph's own number; an empty audio gets the entry's `empty_score` (default 0) without a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bundle import VerifierEntry
from ..bundle.fields import Fields
from ..errors import BundleError
from .base import BATCHING, MAX_MIN_SAMPLES, ScoreContext, Verifier, WaveformGraph, check_audios, check_context


class ScoreVerifier(Verifier):
    """The graph's scalar `score` output per audio."""

    def __init__(self, name: str, entry: VerifierEntry, session: Any, f: Fields) -> None:
        super().__init__(name, "score")
        where = f"verifier '{name}' ({entry.file})"
        self.graph = WaveformGraph(session, f.text("batching", "length_buckets", choices=BATCHING),
                                   f.integer("min_samples", 0, MAX_MIN_SAMPLES, 0), where)
        self.empty_score = f.number("empty_score", -1e30, 1e30, 0.0)
        out = {o.name: o for o in session.get_outputs()}.get("score")
        if out is None or len(out.shape) != 1:
            raise BundleError(f"{where} has no output `score` [B]; a score graph must have one (see docs/verifiers.md)")

    def score(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> np.ndarray:
        """The graph's score per audio (float64); empty audio gets `empty_score`."""
        check_context(ctx)
        items = check_audios(audios)
        scores = np.full(len(items), self.empty_score, dtype=np.float64)
        live = [i for i, a in enumerate(items) if a.size > 0]
        if live:
            values = self.graph.run([items[i] for i in live], ["score"])[0]
            for k, i in enumerate(live):
                scores[i] = float(np.asarray(values[k]).reshape(-1)[0])
        return scores

    def details(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> list[dict[str, Any]]:
        """Per audio: the score and the audio's length in seconds."""
        items = check_audios(audios)
        return [{"score": float(s), "seconds": a.size / self.sample_rate}
                for s, a in zip(self.score(items, ctx), items, strict=True)]
