"""English content check without a neural ASR: pocketsphinx forced alignment (optional extra `pocketsphinx`).

No trained CTC weights can be had offline, but the pocketsphinx wheel ships a trained US-English acoustic model and
pronunciation dictionary. Its free decoding is too weak to score WER on synthetic speech (see docs/verifiers.md),
but forcing an alignment of the TEXT to the audio is a sharp pass/fail test: speech of the text aligns, speech of
another sentence, noise and silence do not. Score: 1.0 when the normalised text (`text.normalise_text`, numbers
spelled out) aligns to the whole audio, else 0.0. It judges whole utterances: use it as an outcome verifier, not
on partial audio.

`install_pocketsphinx` copies the model (acoustic model ~6 MB + dictionary ~3 MB) into `verifiers/<name>/`, so the
bundle holds what it is scored with, hashed like every other file; pocketsphinx itself must be installed to run it.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, VerifierEntry, sha256_file
from ..bundle.fields import Fields
from ..bundle.writer import write_manifest
from ..errors import BundleError, InputError
from .base import VERIFIER_DIR, ScoreContext, Verifier, check_audios, check_context
from .text import normalise_text

DICTIONARY = "dictionary.dict"
ACOUSTIC = "acoustic"
BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}  # wider than pocketsphinx's defaults (see docs)
FRAME_SECONDS = 0.01  # pocketsphinx's frame rate: 100 per second


def _need_pocketsphinx() -> Any:
    try:
        import pocketsphinx
    except ImportError as e:
        raise InputError("alignment verifiers need pocketsphinx: pip install 'llasa-rt[pocketsphinx]'") from e
    return pocketsphinx


class AlignmentVerifier(Verifier):
    """1.0 when the text force-aligns to the audio with pocketsphinx, else 0.0."""

    def __init__(self, bundle: Bundle, name: str, entry: VerifierEntry, f: Fields) -> None:
        super().__init__(name, "alignment")
        ps = _need_pocketsphinx()
        f.text("engine", choices=("pocketsphinx",))
        beams = {k: f.number(k, 1e-300, 1.0, default) for k, default in BEAMS.items()}
        acoustic = {bundle.path(p).parent for p in entry.files if p.split("/")[-2:-1] == [ACOUSTIC]}
        if len(acoustic) != 1:
            raise f.fail("files", f"must list the acoustic model files under {VERIFIER_DIR}/{name}/{ACOUSTIC}/")
        try:
            self.decoder = ps.Decoder(hmm=str(acoustic.pop()), dict=str(bundle.path(entry.file)), lm=None,
                                      loglevel="FATAL", **beams)
        except Exception as e:  # pocketsphinx raises RuntimeError / ValueError for unreadable model files
            raise BundleError(f"pocketsphinx cannot load verifier '{name}' of bundle '{bundle.root}' ({e}); install "
                              "it again with `llasa-rt verifier export --align pocketsphinx --force`") from None

    def _words(self, text: str) -> tuple[list[str], list[str]]:
        """The normalised text's words the dictionary knows, and those it does not."""
        words = normalise_text(text).split()
        known = [w for w in words if self.decoder.lookup_word(w) is not None]
        return known, [w for w in words if w not in known]

    def _align(self, audio: np.ndarray, words: list[str]) -> list[tuple[str, float, float]] | None:
        """Word segments (word, start s, end s) of the alignment, or None when the text does not align."""
        if audio.size < 160 or not words:  # less than one 10 ms frame: nothing to align
            return None
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        try:
            self.decoder.set_align_text(" ".join(words))
            # The feature front end (cepstral mean, noise estimate) adapts from one utterance to the next: reset
            # it, so that a score does not depend on what was scored before (measured: it did).
            self.decoder.reinit_feat()
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
        except (RuntimeError, IndexError, ValueError):
            return None
        if self.decoder.hyp() is None:
            return None
        return [(s.word, s.start_frame * FRAME_SECONDS, (s.end_frame + 1) * FRAME_SECONDS)
                for s in self.decoder.seg() if not s.word.startswith(("<", "["))]

    def details(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> list[dict[str, Any]]:
        """Per audio: score, aligned, the word segments, and the text's words missing from the dictionary."""
        check_context(ctx)
        items = check_audios(audios)
        words, unknown = self._words(ctx.text)
        rows = []
        for audio in items:
            segments = self._align(audio, words)
            rows.append({"score": 1.0 if segments is not None else 0.0, "aligned": segments is not None,
                         "words": segments or [], "unknown_words": unknown})
        return rows

    def score(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> np.ndarray:
        """1.0 per audio the text aligns to, else 0.0 (empty audio: 0.0). Words missing from the dictionary are
        left out of the alignment (`details` lists them)."""
        return np.array([row["score"] for row in self.details(audios, ctx)], dtype=np.float64)


def install_pocketsphinx(bundle_dir: str | Path, name: str = "align-en", overwrite: bool = False,
                         log: Callable[[str], None] = lambda m: print(f"llasa-rt: {m}", file=sys.stderr)
                         ) -> VerifierEntry:
    """Copies pocketsphinx's US-English acoustic model and dictionary into `verifiers/<name>/` and adds the entry.

    The folder is assembled under a temporary name and renamed into place; the manifest is replaced atomically
    afterwards. On failure the bundle is left as it was.
    """
    from .store import prepare_add

    ps = _need_pocketsphinx()
    bundle = Bundle.open(bundle_dir, verify="fast")
    prepare_add(bundle, name, overwrite)
    model = Path(ps.get_model_path()) / "en-us"
    source_am, source_dict = model / "en-us", model / "cmudict-en-us.dict"
    if not source_am.is_dir() or not source_dict.is_file():
        raise InputError(f"the pocketsphinx package at '{model.parent}' has no en-us model; reinstall pocketsphinx")
    root = bundle.root / VERIFIER_DIR
    root.mkdir(exist_ok=True)
    final = bundle.path(f"{VERIFIER_DIR}/{name}")
    staged = root / f".{name}.partial-{os.getpid()}"
    old = root / f".{name}.old-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    previous = bundle.manifest.verifiers.get(name)
    moved = False
    try:
        (staged / ACOUSTIC).mkdir(parents=True)
        for f in sorted(source_am.iterdir()):
            if f.is_file():
                shutil.copyfile(f, staged / ACOUSTIC / f.name)
        shutil.copyfile(source_dict, staged / DICTIONARY)
        prefix = f"{VERIFIER_DIR}/{name}"
        files = {f"{prefix}/{ACOUSTIC}/{f.name}": sha256_file(f) for f in sorted((staged / ACOUSTIC).iterdir())}
        try:
            version = importlib.metadata.version("pocketsphinx")
        except importlib.metadata.PackageNotFoundError:
            version = ""
        entry = VerifierEntry(file=f"{prefix}/{DICTIONARY}", sha256=sha256_file(staged / DICTIONARY),
                              kind="alignment", files=files,
                              details={"sample_rate": 16000, "engine": "pocketsphinx", "engine_version": version,
                                       "language": "en-us", **BEAMS,
                                       "source": {"id": "pocketsphinx", "version": version, "model": "en-us"}})
        if final.exists():
            os.replace(final, old)
            moved = True
        os.replace(staged, final)
        bundle.manifest.verifiers[name] = entry
        AlignmentVerifier(bundle, name, entry, Fields(entry.details, f"verifiers.{name}"))  # loads, or refuses
        write_manifest(bundle.root, bundle.manifest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        if final.exists() and (moved or previous is None):
            shutil.rmtree(final, ignore_errors=True)
        if moved:
            os.replace(old, final)
        if previous is None:
            bundle.manifest.verifiers.pop(name, None)
        else:
            bundle.manifest.verifiers[name] = previous
        raise
    shutil.rmtree(old, ignore_errors=True)
    log(f"verifier '{name}': pocketsphinx {version} en-us forced alignment -> {VERIFIER_DIR}/{name}/")
    return entry
