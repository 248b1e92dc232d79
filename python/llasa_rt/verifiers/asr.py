"""ASR verifiers: audio -> CTC logits -> greedy transcript; score = 1 - WER (or CER for CJK text), clipped to [0, 1].

The graph (waveform contract, docs/verifiers.md) outputs `logits [B, F, V]` and, when it takes `audio_lengths`,
`logit_lengths [B]` (valid frames per item). Greedy decoding follows transformers' Wav2Vec2CTCTokenizer.decode:
the best token per frame, repeats merged, the blank (pad) token removed, the word delimiter turned into a space
(so the transcript equals `processor.batch_decode(logits.argmax(-1))`). For scoring, the tokenizer's other special
tokens (<s>, </s>, <unk>) are dropped, then `text.error_rate` normalises both sides and compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bundle import VerifierEntry
from ..bundle.fields import Fields
from ..errors import BundleError
from .base import BATCHING, MAX_MIN_SAMPLES, ScoreContext, Verifier, WaveformGraph, check_audios, check_context
from .text import error_rate


class CtcAsrVerifier(Verifier):
    """Greedy CTC transcription and 1 - error rate against the text."""

    def __init__(self, name: str, entry: VerifierEntry, session: Any, f: Fields) -> None:
        super().__init__(name, "asr")
        where = f"verifier '{name}' ({entry.file})"
        self.graph = WaveformGraph(session, f.text("batching", choices=BATCHING),
                                   f.integer("min_samples", 0, MAX_MIN_SAMPLES, 0), where)
        vocab = f.data.get("vocabulary")
        if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
            raise f.fail("vocabulary", "must be a non-empty list of token strings (index = logit row)")
        self.vocabulary: list[str] = vocab
        self.blank_id = f.integer("blank_id", 0, len(vocab) - 1)
        self.delimiter = f.text("word_delimiter", "|")
        specials = f.data.get("special_tokens", [])
        if not isinstance(specials, list) or not all(isinstance(t, str) for t in specials):
            raise f.fail("special_tokens", "must be a list of token strings")
        self.special_ids = {i for i, t in enumerate(vocab) if t in specials}
        self.lower = f.flag("do_lower_case", False)
        outputs = {o.name: o for o in session.get_outputs()}
        logits = outputs.get("logits")
        if logits is None or len(logits.shape) != 3:
            raise BundleError(f"{where} has no output `logits` [B, frames, vocabulary]; re-export it")
        if isinstance(logits.shape[2], int) and logits.shape[2] != len(vocab):
            raise BundleError(f"{where} outputs {logits.shape[2]} logits per frame but its vocabulary has "
                              f"{len(vocab)} tokens; re-export it")
        self.has_lengths = "logit_lengths" in outputs
        if self.graph.has_lengths and not self.has_lengths:
            raise BundleError(f"{where} takes audio_lengths but does not output logit_lengths; a padded batch needs "
                              "them (see docs/verifiers.md)")

    def _ids(self, audios: list[np.ndarray]) -> list[list[int] | None]:
        """Greedy CTC token ids per audio (repeats merged, blanks removed); None for empty audio."""
        live = [i for i, a in enumerate(audios) if a.size > 0]
        out: list[list[int] | None] = [None] * len(audios)
        if not live:
            return out
        names = ["logits", "logit_lengths"] if self.has_lengths else ["logits"]
        results = self.graph.run([audios[i] for i in live], names)
        for k, i in enumerate(live):
            logits = results[0][k]
            frames = int(results[1][k]) if self.has_lengths else logits.shape[0]
            best = logits[:frames].argmax(axis=-1)
            merged = [int(t) for j, t in enumerate(best) if j == 0 or t != best[j - 1]]
            out[i] = [t for t in merged if t != self.blank_id]
        return out

    def _text(self, ids: list[int], drop_special: bool) -> str:
        tokens = [" " if self.vocabulary[t] == self.delimiter else self.vocabulary[t] for t in ids
                  if not (drop_special and t in self.special_ids)]
        text = "".join(tokens).strip()
        return text.lower() if self.lower else text

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Greedy transcripts, exactly as transformers' `processor.batch_decode(logits.argmax(-1))`."""
        return ["" if ids is None else self._text(ids, drop_special=False) for ids in self._ids(check_audios(audios))]

    def details(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> list[dict[str, Any]]:
        """Per audio: score, transcript, error rate, metric ("wer" / "cer"), and both normalised sides."""
        check_context(ctx)
        items = check_audios(audios)
        rows = []
        for ids in self._ids(items):
            transcript = "" if ids is None else self._text(ids, drop_special=False)
            heard = "" if ids is None else self._text(ids, drop_special=True)
            rate, metric, ref, hyp = error_rate(ctx.text, heard)
            rows.append({"score": float(1.0 - min(1.0, rate)), "transcript": transcript, metric: rate,
                         "metric": metric, "reference": ref, "hypothesis": hyp})
        return rows

    def score(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> np.ndarray:
        """1 - WER (CER for mostly-CJK text) of each audio's transcript against `ctx.text`, in [0, 1]; empty audio
        has an empty transcript (score 0 unless the text has no words)."""
        return np.array([row["score"] for row in self.details(audios, ctx)], dtype=np.float64)
