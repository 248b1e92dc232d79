"""Adding, removing and embedding verifiers in a bundle (numpy + ONNX Runtime; no torch).

- `add_verifier` checks a graph against its kind's contract (loads it, scores a second of noise), computes the
  reference embedding of every voice for a speaker verifier, and only then copies the graph to
  `verifiers/<name>.onnx` (temporary name + rename) and replaces `manifest.json` (atomically). On any failure the
  bundle is left as it was.
- Reference embeddings are stored in the voice's manifest entry (`voices.NAME.embeddings.VERIFIER`: a few KB of
  JSON) rather than in files: they are small, they change together with the manifest in one atomic write, and a
  voice or verifier removal cannot leave a stray file behind. Each records the verifier graph's sha256, so a
  replaced graph makes it stale (the verifier then says to re-embed).
- Voices store only codes, so an embedding made when a speaker verifier is added to a bundle that already has
  voices comes from the voice's codes decoded with the bundle's codec (`source: "codes"`); `voice add` embeds the
  recording itself (`source: "recording"`), via `embed_recording`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import CODEC_GRAPH, Bundle, VerifierEntry, VoiceEmbedding, sha256_file
from ..bundle.voices import NAME_RE
from ..bundle.writer import check_writable, write_manifest
from ..errors import BundleError, InputError
from . import KINDS, SAMPLE_RATE, VERIFIER_DIR, ScoreContext, build_verifier, load_verifier
from .base import MAX_MIN_SAMPLES


def _stderr(msg: str) -> None:
    print(f"llasa-rt: {msg}", file=sys.stderr, flush=True)


def check_verifier_name(name: str) -> str:
    """Verifier names become file names: letters, digits, '_' and '-' only (no paths, no dots)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(f"verifier name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with "
                         "a letter or digit (it becomes the file name verifiers/<name>.onnx)")
    return name


def prepare_add(bundle: Bundle, name: str, overwrite: bool) -> None:
    """Checks, before any slow work, that verifier `name` can be added to the bundle."""
    check_verifier_name(name)
    if name in bundle.manifest.verifiers and not overwrite:
        raise InputError(f"bundle '{bundle.root}' already has a verifier '{name}'; remove it first "
                         f"(`llasa-rt verifier remove --bundle {bundle.root} --name {name}`) or pass --force")
    check_writable(bundle.root, f"add verifier '{name}'")
    folder = bundle.root / VERIFIER_DIR
    if folder.exists():
        bundle.path(VERIFIER_DIR)  # refuses a verifiers/ symlink that leaves the bundle
        check_writable(folder, f"add verifier '{name}'")


def _vector(v: np.ndarray) -> list[float]:
    return [float(f"{x:.9g}") for x in v]  # float32 precision, short JSON


def decode_voice(bundle: Bundle, voice: str, decoder: Any) -> np.ndarray:
    """The audio of a voice's codes, decoded with the bundle's codec."""
    from ..bundle.voices import read_voice

    codes, _ = read_voice(bundle, voice)
    return decoder.decode(codes)


def embed_voices_with(bundle: Bundle, verifier: Any, voices: list[str],
                      log: Callable[[str], None] = _stderr) -> dict[str, VoiceEmbedding]:
    """Embeddings of `voices` (decoded from their codes) by a speaker verifier; empty when the bundle has no codec."""
    if not voices:
        return {}
    if CODEC_GRAPH not in bundle.manifest.graphs:
        log(f"the bundle has no codec decoder, so its voices ({', '.join(voices)}) cannot be decoded for speaker "
            f"verifier '{verifier.name}'; add them again with `llasa-rt voice add --force` to embed their recordings")
        return {}
    from ..codec import CodecDecoder

    decoder = CodecDecoder(bundle)
    audios = [decode_voice(bundle, v, decoder) for v in voices]
    vectors, valid = verifier.embed(audios)
    out = {}
    for voice, vec, ok in zip(voices, vectors, valid, strict=True):
        if ok:
            out[voice] = VoiceEmbedding(vector=_vector(vec), verifier_sha256=verifier.sha256, source="codes")
        else:
            log(f"voice '{voice}' decodes to silence for speaker verifier '{verifier.name}'; it was not embedded")
    return out


def _smoke_test(verifier: Any) -> None:
    """Runs a new verifier once on a second of noise, so that a graph that loads but cannot run is refused."""
    noise = (0.05 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    try:
        if verifier.kind == "speaker":
            verifier.embed([noise, noise[:8000]])
        else:
            scores = verifier.score([noise, noise[:8000]], ScoreContext(text="a test"))
            if scores.shape != (2,) or not np.all(np.isfinite(scores)):
                raise BundleError(f"it returned {scores!r} for two audios")
    except (InputError, BundleError) as e:
        raise BundleError(f"verifier '{verifier.name}' does not run as a {verifier.kind} verifier: {e}") from None
    except Exception as e:  # ONNX Runtime's own errors (shape mismatches, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"verifier '{verifier.name}' fails on one second of audio ({first[:300]}); check its inputs "
                          "against docs/verifiers.md") from None


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def add_verifier(bundle_dir: str | Path, name: str, graph: str | Path, kind: str, details: dict[str, Any],
                 overwrite: bool = False, log: Callable[[str], None] = _stderr) -> VerifierEntry:
    """Adds the ONNX graph `graph` to the bundle as verifier `name` of `kind` with manifest `details`.

    Speaker verifiers also get the reference embedding of every voice (decoded from its codes).

    Raises:
        InputError / BundleError: with the problem and the fix; the bundle is then left unchanged.
    """
    if kind not in KINDS or kind == "alignment":
        raise InputError(f"kind must be one of speaker, asr, score for an ONNX verifier, not {kind!r}")
    bundle = Bundle.open(bundle_dir, verify="fast")
    prepare_add(bundle, name, overwrite)
    graph = Path(graph)
    if not graph.is_file():
        raise InputError(f"'{graph}' does not exist or is not a file; pass an .onnx graph")
    rel = f"{VERIFIER_DIR}/{name}.onnx"
    entry = VerifierEntry(file=rel, sha256=sha256_file(graph), kind=kind, details=dict(details))
    verifier = build_verifier(bundle, name, entry, graph_path=graph)
    _smoke_test(verifier)
    embeddings = embed_voices_with(bundle, verifier, sorted(bundle.manifest.voices), log) if kind == "speaker" else {}
    (bundle.root / VERIFIER_DIR).mkdir(exist_ok=True)
    target = bundle.path(rel)
    backup = target.parent / f".{target.name}.old-{os.getpid()}"
    had = target.is_file()
    if had:
        os.replace(target, backup)
    old_entry = bundle.manifest.verifiers.get(name)
    old_embeddings = {v: e.embeddings.get(name) for v, e in bundle.manifest.voices.items()}
    try:
        _copy_atomic(graph, target)
        bundle.manifest.verifiers[name] = entry
        for voice, e in bundle.manifest.voices.items():
            e.embeddings.pop(name, None)
            if voice in embeddings:
                e.embeddings[name] = embeddings[voice]
        write_manifest(bundle.root, bundle.manifest)
    except BaseException:
        # Keep the bundle consistent: the old graph and entry come back if the manifest was not written.
        target.unlink(missing_ok=True)
        if had:
            os.replace(backup, target)
        if old_entry is None:
            bundle.manifest.verifiers.pop(name, None)
        else:
            bundle.manifest.verifiers[name] = old_entry
        for voice, old in old_embeddings.items():
            bundle.manifest.voices[voice].embeddings.pop(name, None)
            if old is not None:
                bundle.manifest.voices[voice].embeddings[name] = old
        raise
    backup.unlink(missing_ok=True)
    return entry


def remove_verifier(bundle_dir: str | Path, name: str) -> None:
    """Removes verifier `name` and the voices' embeddings made by it from the manifest (atomically), then deletes
    its files (inside the bundle only)."""
    check_verifier_name(name)
    bundle = Bundle.open(bundle_dir, verify="fast")
    entry = bundle.manifest.verifiers.get(name)
    if entry is None:
        have = ", ".join(sorted(bundle.manifest.verifiers)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no verifier '{name}' (verifiers: {have})")
    targets = [bundle.path(f) for f in [entry.file, *entry.files]]
    check_writable(bundle.root, f"remove verifier '{name}'")
    del bundle.manifest.verifiers[name]
    for voice in bundle.manifest.voices.values():
        voice.embeddings.pop(name, None)
    write_manifest(bundle.root, bundle.manifest)
    for target in targets:
        target.unlink(missing_ok=True)
    folder = bundle.root / VERIFIER_DIR / name  # model folders of file-based verifiers (alignment)
    if folder.is_dir() and not folder.is_symlink():
        for sub in sorted(folder.rglob("*"), reverse=True):
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()


def speaker_verifiers(bundle: Bundle) -> list[str]:
    """Names of the bundle's speaker verifiers."""
    return sorted(n for n, e in bundle.manifest.verifiers.items() if e.kind == "speaker")


def embed_voices(bundle_dir: str | Path, force: bool = False, threads: int | None = None,
                 log: Callable[[str], None] = _stderr) -> dict[str, list[str]]:
    """Gives every voice a reference embedding for every speaker verifier, decoded from its codes.

    Only missing or stale embeddings are made (all of them with `force`). Returns {verifier: [voices embedded]}.
    """
    bundle = Bundle.open(bundle_dir, verify="fast")
    check_writable(bundle.root, "store voice embeddings")
    done: dict[str, list[str]] = {}
    for name in speaker_verifiers(bundle):
        verifier = load_verifier(bundle, name, threads)
        todo = []
        for voice, entry in sorted(bundle.manifest.voices.items()):
            stored = entry.embeddings.get(name)
            if force or stored is None or stored.verifier_sha256 != verifier.sha256:
                todo.append(voice)
        made = embed_voices_with(bundle, verifier, todo, log)
        for voice, embedding in made.items():
            bundle.manifest.voices[voice].embeddings[name] = embedding
        done[name] = sorted(made)
    if any(done.values()):
        write_manifest(bundle.root, bundle.manifest)
    return done


def embed_recording(bundle: Bundle, audio: np.ndarray, threads: int | None = None) -> dict[str, VoiceEmbedding]:
    """The reference embeddings of a voice's own recording (16 kHz float32) for every speaker verifier of the
    bundle (used by `voice add`)."""
    out = {}
    for name in speaker_verifiers(bundle):
        verifier = load_verifier(bundle, name, threads)
        vectors, valid = verifier.embed([audio])
        if not valid[0]:
            raise InputError(f"speaker verifier '{name}' cannot embed this recording (it hears silence); pass a "
                             "recording of the reference speaker")
        out[name] = VoiceEmbedding(vector=_vector(vectors[0]), verifier_sha256=verifier.sha256, source="recording")
    return out


def _read_vocab(path: str | Path) -> dict[str, int]:
    import json

    try:
        vocab = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"--vocab '{path}' is not a readable JSON file ({e})") from None
    if (not isinstance(vocab, dict) or not vocab
            or not all(isinstance(k, str) and type(v) is int for k, v in vocab.items())):
        raise InputError(f"--vocab '{path}' must hold a JSON object {{token: id}} (Wav2Vec2CTCTokenizer's vocab.json)")
    return vocab


def custom_details(graph: str | Path, kind: str, batching: str | None = None, min_samples: int = 0,
                   empty_score: float = 0.0, vocab: str | Path | None = None, blank: str = "<pad>",
                   delimiter: str = "|") -> dict[str, Any]:
    """Manifest details for a user graph (`llasa-rt verifier add`), read from the options and the graph itself."""
    from ..backends.ort import create_session

    if kind not in ("score", "speaker", "asr"):
        raise InputError(f"--kind must be score, speaker or asr, not {kind!r}")
    if not 0 <= min_samples <= MAX_MIN_SAMPLES:
        raise InputError(f"--min-samples must be in [0, {MAX_MIN_SAMPLES}], not {min_samples}")
    if not np.isfinite(empty_score):
        raise InputError("--empty-score must be a finite number")
    if kind == "asr" and vocab is None:
        raise InputError("an asr verifier needs --vocab vocab.json (token -> logit row)")
    if kind != "asr" and vocab is not None:
        raise InputError("--vocab is for --kind asr only")
    tokens = _read_vocab(vocab) if vocab is not None else {}
    path = Path(graph)
    if not path.is_file():
        raise InputError(f"'{graph}' does not exist or is not a file; pass an .onnx graph")
    session = create_session(path)
    inputs = {i.name for i in session.get_inputs()}
    details: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "front_end": {"type": "waveform"},
                               "batching": batching or "length_buckets", "min_samples": min_samples,
                               "model": "custom", "source": {"id": str(path.resolve())}}
    if details["batching"] == "pad_mask" and "audio_lengths" not in inputs:
        raise InputError(f"--batching pad_mask needs a graph that takes audio_lengths; '{graph}' takes "
                         f"{', '.join(sorted(inputs))}")
    if kind == "score":
        details["empty_score"] = float(empty_score)
    elif kind == "speaker":
        out = {o.name: o for o in session.get_outputs()}.get("embedding")
        if out is None or len(out.shape) != 2:
            raise InputError(f"'{graph}' has no output `embedding` [B, D]; a speaker graph needs one")
        dim = out.shape[1]
        if not isinstance(dim, int):  # a dynamic width: ask the graph
            feed = {"audio": np.zeros((1, max(min_samples, SAMPLE_RATE)), np.float32)}
            if "audio_lengths" in inputs:
                feed["audio_lengths"] = np.array([feed["audio"].shape[1]], np.int64)
            try:
                dim = int(session.run(["embedding"], feed)[0].shape[1])
            except Exception as e:  # ONNX Runtime's own errors
                raise InputError(f"'{graph}' fails on one second of silence ({str(e).splitlines()[0][:200]})") from None
        details["embedding_dim"] = dim
    else:
        size = max(tokens.values()) + 1
        vocabulary = [""] * size
        for token, index in tokens.items():
            if not 0 <= index < size:
                raise InputError(f"--vocab: token {token!r} has id {index}, outside [0, {size - 1}]")
            vocabulary[index] = token
        if blank not in tokens:
            raise InputError(f"--vocab has no blank token {blank!r}; pass --blank-token")
        details.update(vocabulary=vocabulary, blank_id=tokens[blank], word_delimiter=delimiter,
                       special_tokens=[t for t in ("<s>", "</s>", "<unk>") if t in tokens], do_lower_case=False)
    return details
