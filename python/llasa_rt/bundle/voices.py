"""A bundle's reference voices: `voices/<name>.npz` (codes int32 [T] + transcript) and their manifest entries.

Reading, storing and removing need numpy only; encoding a recording into codes (PyTorch, X-Codec2 encoder) is
`llasa_rt.export.voice.add_voice`, which stores its result through `store_voice`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from ..errors import BundleError, InputError
from .manifest import VoiceEntry
from .reader import Bundle, sha256_file
from .writer import check_writable, write_bytes_atomic, write_manifest

VOICE_DIR = "voices"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_TRANSCRIPT_CHARS = 2000


def check_voice_name(name: str) -> str:
    """Voice names become file names: letters, digits, '_' and '-' only (no paths, no dots)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(f"voice name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a "
                         "letter or digit (it becomes the file name voices/<name>.npz)")
    return name


def check_transcript(transcript: str) -> str:
    """The transcript of a voice must be speakable text: it is put into every prompt that uses the voice."""
    from ..prompt import PromptBuilder

    if isinstance(transcript, str) and len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise InputError(f"the transcript has {len(transcript)} characters; a reference recording of at most 10 s "
                         f"has far fewer (limit {MAX_TRANSCRIPT_CHARS})")
    return PromptBuilder.check_text(transcript, "the transcript").strip()


def read_voice(bundle: Bundle, name: str) -> tuple[np.ndarray, str]:
    """Returns (codes int32 [T], transcript) of voice `name` in an opened bundle."""
    entry = bundle.manifest.voices.get(name)
    if entry is None:
        have = ", ".join(sorted(bundle.manifest.voices)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no voice '{name}' (voices: {have}); add one with "
                         "`llasa-rt voice add`")
    try:
        with np.load(bundle.path(entry.file), allow_pickle=False) as data:
            codes, transcript = data["codes"], str(data["transcript"])
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise BundleError(f"voice file {entry.file} of bundle '{bundle.root}' is unreadable ({e}); add the voice "
                          "again with `llasa-rt voice add --force`") from e
    tokens = bundle.manifest.tokens
    if (codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer) or codes.size == 0
            or (tokens and (codes.min() < 0 or codes.max() >= tokens.speech_count))):
        raise BundleError(f"voice file {entry.file} of bundle '{bundle.root}' does not hold 1-D speech codes; add "
                          "the voice again with `llasa-rt voice add --force`")
    return codes.astype(np.int32), transcript


def prepare_store(bundle: Bundle, name: str, transcript: str, overwrite: bool) -> str:
    """Checks, before any slow work, that voice `name` can be stored; returns the cleaned transcript."""
    check_voice_name(name)
    transcript = check_transcript(transcript)
    if name in bundle.manifest.voices and not overwrite:
        raise InputError(f"bundle '{bundle.root}' already has a voice '{name}'; remove it first or pass --force")
    check_writable(bundle.root, f"add voice '{name}'")
    voices = bundle.root / VOICE_DIR
    if voices.exists():
        bundle.path(VOICE_DIR)  # refuses a voices/ symlink that leaves the bundle
        check_writable(voices, f"add voice '{name}'")
    return transcript


def store_voice(bundle: Bundle, name: str, codes: np.ndarray, entry: VoiceEntry) -> VoiceEntry:
    """Writes `voices/<name>.npz` and the manifest entry; on failure the bundle is left as it was."""
    (bundle.root / VOICE_DIR).mkdir(exist_ok=True)
    entry.file = f"{VOICE_DIR}/{name}.npz"
    target = bundle.path(entry.file)
    previous = target.read_bytes() if target.is_file() else None
    buf = io.BytesIO()
    np.savez(buf, codes=np.asarray(codes).astype(np.int32), transcript=np.array(entry.transcript))
    try:
        write_bytes_atomic(target, buf.getvalue())
        entry.sha256 = sha256_file(target)
        bundle.manifest.voices[name] = entry
        write_manifest(bundle.root, bundle.manifest)
    except BaseException:
        # Keep the bundle consistent: restore the old file (or remove the new one) if the manifest was not written.
        bundle.manifest.voices.pop(name, None)
        if previous is not None:
            target.write_bytes(previous)
        else:
            target.unlink(missing_ok=True)
        raise
    return entry


def remove_voice(bundle_dir: str | Path, name: str) -> None:
    """Removes voice `name` from the manifest (atomically), then deletes its file (inside the bundle only)."""
    check_voice_name(name)
    bundle = Bundle.open(bundle_dir, verify="fast")
    entry = bundle.manifest.voices.get(name)
    if entry is None:
        have = ", ".join(sorted(bundle.manifest.voices)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no voice '{name}' (voices: {have})")
    target = bundle.path(entry.file)
    check_writable(bundle.root, f"remove voice '{name}'")
    del bundle.manifest.voices[name]
    write_manifest(bundle.root, bundle.manifest)
    target.unlink(missing_ok=True)
