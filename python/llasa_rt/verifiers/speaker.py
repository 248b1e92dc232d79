"""Speaker verifiers: audio -> embedding; score = cosine similarity to the reference voice's stored embedding.

Two front ends, as the manifest entry's `front_end.type` says:

- "ge2e_mel": resemblyzer's GE2E encoder; numpy mel windows (`ge2e.Ge2eFrontEnd`), graph `mels [W, 160, 40]` ->
  `embedding [W, 256]`; the windows of all audios of a call run together, then are averaged per audio.
- "waveform": x-vector graphs (WavLM / UniSpeech-SAT) and user graphs: `audio [B, T]` (+ `audio_lengths [B]`) ->
  `embedding [B, D]`, batched as `base.WaveformGraph` describes.

Reference embeddings live in the voice's manifest entry (`voices.NAME.embeddings.VERIFIER`), tied to the verifier
graph's sha256: `llasa_rt.verifiers.store` writes them when a voice or a speaker verifier is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bundle import Bundle, VerifierEntry
from ..bundle.fields import Fields
from ..errors import BundleError, InputError
from .base import BATCHING, MAX_MIN_SAMPLES, ScoreContext, Verifier, WaveformGraph, check_audios, check_context
from .ge2e import Ge2eFrontEnd

LOW_SCORE = -1.0  # empty audio, or audio whose embedding is all zeros: the lowest cosine similarity


class SpeakerVerifier(Verifier):
    """Cosine similarity of each audio's embedding to the reference voice's embedding, in [-1, 1]."""

    needs_voice = True

    def __init__(self, bundle: Bundle, name: str, entry: VerifierEntry, session: Any, f: Fields) -> None:
        super().__init__(name, "speaker")
        self.bundle, self.sha256, self.session = bundle, entry.sha256, session
        where = f"verifier '{name}' ({entry.file})"
        front = f.obj("front_end")
        self.front_end = front.text("type", choices=("ge2e_mel", "waveform"))
        self.embedding_dim = f.integer("embedding_dim", 1, 1 << 16)
        outputs = {o.name: o for o in session.get_outputs()}
        if "embedding" not in outputs or len(outputs["embedding"].shape) != 2:
            raise BundleError(f"{where} has no output `embedding` [B, D]; a speaker graph must have one "
                              "(see docs/verifiers.md)")
        dim = outputs["embedding"].shape[1]
        if isinstance(dim, int) and dim != self.embedding_dim:
            raise BundleError(f"{where} outputs {dim}-dim embeddings but manifest.json says embedding_dim "
                              f"{self.embedding_dim}; re-export the verifier")
        if self.front_end == "ge2e_mel":
            self.ge2e: Ge2eFrontEnd | None = Ge2eFrontEnd(front, self.sample_rate)
            self.graph: WaveformGraph | None = None
            inputs = {i.name for i in session.get_inputs()}
            if inputs != {"mels"}:
                raise BundleError(f"{where} is a GE2E graph but takes {sorted(inputs)} instead of `mels`; re-export it")
        else:
            self.ge2e = None
            self.graph = WaveformGraph(session, f.text("batching", choices=BATCHING),
                                       f.integer("min_samples", 0, MAX_MIN_SAMPLES, 0), where)
        self.runs = 0  # session runs so far (GE2E path; waveform graphs count in self.graph.runs)

    def embed(self, audios: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (L2-normalised float64 embeddings [N, D], valid [N]); empty audio and all-zero embeddings are
        not valid (their rows are zero)."""
        items = check_audios(audios)
        out = np.zeros((len(items), self.embedding_dim), dtype=np.float64)
        live = [i for i, a in enumerate(items) if a.size > 0]
        if live:
            if self.ge2e is not None:
                windows = [self.ge2e.partials(items[i]) for i in live]
                counts = [w.shape[0] for w in windows]
                partial = self.session.run(["embedding"], {"mels": np.concatenate(windows)})[0]
                self.runs += 1
                bounds = np.cumsum([0, *counts])
                for k, i in enumerate(live):
                    out[i] = partial[bounds[k]: bounds[k + 1]].astype(np.float64).mean(axis=0)
            else:
                assert self.graph is not None
                rows = self.graph.run([items[i] for i in live], ["embedding"])[0]
                for k, i in enumerate(live):
                    out[i] = rows[k].astype(np.float64)
        norms = np.linalg.norm(out, axis=1)
        valid = np.isfinite(norms) & (norms > 1e-12)
        out[valid] /= norms[valid, None]
        out[~valid] = 0.0
        return out, valid

    def reference(self, voice: str) -> np.ndarray:
        """The stored, L2-normalised reference embedding of bundle voice `voice` for this verifier."""
        voices = self.bundle.manifest.voices
        entry = voices.get(voice)
        if entry is None:
            have = ", ".join(sorted(voices)) or "none"
            raise InputError(f"bundle '{self.bundle.root}' has no voice '{voice}' (voices: {have}); add one with "
                             "`llasa-rt voice add`")
        stored = entry.embeddings.get(self.name)
        fix = (f"run `llasa-rt verifier embed --bundle {self.bundle.root}` (embeds every voice from its codes), or add "
               "the voice again with `llasa-rt voice add --force` (embeds the recording)")
        if stored is None:
            raise InputError(f"voice '{voice}' has no reference embedding for speaker verifier '{self.name}' (the "
                             f"voice was added before the verifier); {fix}")
        if stored.verifier_sha256 != self.sha256 or len(stored.vector) != self.embedding_dim:
            raise InputError(f"the reference embedding of voice '{voice}' was made by another version of verifier "
                             f"'{self.name}'; {fix}")
        ref = np.asarray(stored.vector, dtype=np.float64)
        norm = np.linalg.norm(ref)
        if not norm > 1e-12:
            raise InputError(f"the reference embedding of voice '{voice}' for '{self.name}' is all zeros (a silent "
                             "recording?); add the voice again with `llasa-rt voice add --force`")
        return ref / norm

    def _voice(self, ctx: ScoreContext) -> str:
        check_context(ctx)
        if ctx.voice is None:
            raise InputError(f"speaker verifier '{self.name}' needs a reference voice; pass voice=NAME, a voice of the "
                             "bundle"
                             " (add one with `llasa-rt voice add --bundle B --name NAME --wav ref.wav --text ...`)")
        return ctx.voice

    def _scores(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> tuple[np.ndarray, np.ndarray]:
        ref = self.reference(self._voice(ctx))
        emb, valid = self.embed(audios)
        scores = np.clip(emb @ ref, -1.0, 1.0)
        scores[~valid] = LOW_SCORE
        return scores, valid

    def score(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> np.ndarray:
        """Cosine similarity of each audio to `ctx.voice`, in [-1, 1]; empty audio scores -1."""
        return self._scores(audios, ctx)[0]

    def details(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> list[dict[str, Any]]:
        """Per audio: score (cosine similarity), seconds, and whether an embedding could be made."""
        items = check_audios(audios)
        scores, valid = self._scores(items, ctx)
        return [{"score": float(s), "seconds": a.size / self.sample_rate, "voice": ctx.voice, "embedded": bool(v)}
                for s, v, a in zip(scores, valid, items, strict=True)]
