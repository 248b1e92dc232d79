"""Reference voices: a recording + its transcript encoded into X-Codec2 codes and stored in a bundle.

`add_voice` writes `voices/<name>.npz` (codes int32 [T], transcript) and the manifest entry voices[name]. The
encoder runs in PyTorch (export time only) from the same X-Codec2 checkpoint the bundle's decoder came from; the LM
prompt then puts the transcript before the text and the codes after <|SPEECH_GENERATION_START|>, and the prompt's
audio is not part of the output.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.bundle import Bundle, sha256_file
from llasa_rt.engines.bundle_writer import write_manifest
from llasa_rt.errors import BundleError, InputError

from .voice_audio import TARGET_RATE, load_prompt_audio
from .xcodec2_checkpoint import CodecSource, resolve_source
from .xcodec2_model import XCodec2Encoder

VOICE_DIR = "voices"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_voice_name(name: str) -> str:
    """Voice names become file names: letters, digits, '_' and '-' only (no paths, no dots)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(f"voice name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a "
                         "letter or digit (it becomes the file name voices/<name>.npz)")
    return name


def default_codec_source(bundle: Bundle) -> str:
    """The X-Codec2 checkpoint recorded when the bundle was exported: its local path if still there, else its id."""
    record = bundle.manifest.sources.get("codec") or {}
    path = record.get("path")
    if path and Path(path).is_dir():
        return str(path)
    if record.get("id"):
        return str(record["id"])
    raise InputError(f"bundle '{bundle.root}' does not record which X-Codec2 checkpoint it was exported with; pass "
                     "--codec HUB_ID_OR_FOLDER")


def _write_npz_atomic(path: Path, codes: np.ndarray, transcript: str) -> str:
    buf = io.BytesIO()
    np.savez(buf, codes=codes.astype(np.int32), transcript=np.array(transcript))
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return sha256_file(path)


def add_voice(bundle_dir: str | Path, name: str, wav_path: str | Path, transcript: str,
              codec_source: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Encodes `wav_path` into a reference voice `name` of the bundle and returns its manifest entry.

    Args:
        bundle_dir: the bundle folder.
        name: voice name (letters, digits, '_', '-').
        wav_path: recording of the reference speaker; other rates are resampled to 16 kHz, stereo is mixed down,
            and only the first 10 s are used (each said on stderr).
        transcript: exactly what is said in the recording.
        codec_source: X-Codec2 checkpoint (hub id or folder); default: the one recorded in the bundle.
        overwrite: replace an existing voice of the same name.

    Raises:
        InputError / BundleError / CheckpointError: with the problem and the fix; the bundle is left unchanged.
    """
    check_voice_name(name)
    if not isinstance(transcript, str) or not transcript.strip():
        raise InputError("the transcript is empty; pass exactly what is said in the recording with --text")
    bundle = Bundle.open(bundle_dir, verify="fast")
    if name in bundle.manifest.voices and not overwrite:
        raise InputError(f"bundle '{bundle.root}' already has a voice '{name}'; remove it first or pass --force")
    audio = load_prompt_audio(wav_path)
    source = codec_source or default_codec_source(bundle)
    codec: CodecSource = resolve_source(source)
    recorded = (bundle.manifest.sources.get("codec") or {}).get("model_safetensors_sha256")
    if recorded and recorded != codec.weights_sha256:
        raise BundleError(f"the X-Codec2 checkpoint '{source}' is not the one bundle '{bundle.root}' was exported "
                          "with (model.safetensors hash differs); its codes would not fit the bundle's decoder")
    print(f"llasa-rt: encoding {audio.seconds:.1f} s of '{Path(wav_path).name}' with the X-Codec2 encoder",
          file=sys.stderr)
    codes = XCodec2Encoder.from_folder(codec.folder).encode(audio.wav)
    voices_dir = bundle.root / VOICE_DIR
    voices_dir.mkdir(exist_ok=True)
    rel = f"{VOICE_DIR}/{name}.npz"
    target = bundle.root / rel
    previous = target.read_bytes() if target.exists() else None
    entry = {
        "file": rel,
        "sha256": "",
        "transcript": transcript.strip(),
        "num_codes": int(codes.shape[0]),
        "seconds": round(audio.seconds, 3),
        "source_sha256": sha256_file(Path(wav_path)),
        "sample_rate_in": audio.sample_rate_in,
        "resampled": audio.resampled,
        "truncated": audio.truncated,
    }
    try:
        entry["sha256"] = _write_npz_atomic(target, codes, entry["transcript"])
        bundle.manifest.voices[name] = entry
        write_manifest(bundle.root, bundle.manifest)
    except BaseException:
        # Keep the bundle consistent: restore the old file (or remove the new one) if the manifest was not written.
        if previous is not None:
            target.write_bytes(previous)
        else:
            target.unlink(missing_ok=True)
        raise
    print(f"llasa-rt: voice '{name}': {entry['num_codes']} codes ({TARGET_RATE // 320} per second) -> {rel}",
          file=sys.stderr)
    return entry


def remove_voice(bundle_dir: str | Path, name: str) -> None:
    """Removes voice `name` from the manifest (atomically) and deletes its file."""
    check_voice_name(name)
    bundle = Bundle.open(bundle_dir, verify="fast")
    entry = bundle.manifest.voices.pop(name, None)
    if entry is None:
        have = ", ".join(sorted(bundle.manifest.voices)) or "none"
        raise InputError(f"bundle '{bundle.root}' has no voice '{name}' (voices: {have})")
    write_manifest(bundle.root, bundle.manifest)
    (bundle.root / entry["file"]).unlink(missing_ok=True)

