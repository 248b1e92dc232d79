"""Reference voices: a recording + its transcript encoded into X-Codec2 codes and stored in a bundle.

`add_voice` writes `voices/<name>.npz` (codes int32 [T], transcript) and the manifest entry voices[name] (with the
recording's reference embedding for each speaker verifier of the bundle, `llasa_rt.verifiers.store`). The
encoder runs in PyTorch (export time only) from the same X-Codec2 checkpoint the bundle's decoder came from; the LM
prompt then puts the transcript before the text and the codes after <|SPEECH_GENERATION_START|>, and the prompt's
audio is not part of the output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from llasa_rt.bundle import Bundle, VoiceEntry, sha256_file
from llasa_rt.bundle.voices import VOICE_DIR, check_voice_name, prepare_store, remove_voice, store_voice
from llasa_rt.errors import BundleError, InputError
from llasa_rt.verifiers.store import embed_recording

from .voice_audio import TARGET_RATE, load_prompt_audio
from .xcodec2_checkpoint import resolve_source

__all__ = ["VOICE_DIR", "add_voice", "check_voice_name", "default_codec_source", "remove_voice"]


def _say(msg: str) -> None:
    print(f"llasa-rt: {msg}", file=sys.stderr, flush=True)


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


def add_voice(bundle_dir: str | Path, name: str, wav_path: str | Path, transcript: str,
              codec_source: str | None = None, overwrite: bool = False) -> VoiceEntry:
    """Encodes `wav_path` into a reference voice `name` of the bundle and returns its manifest entry.

    Everything that can be checked cheaply (name, transcript, bundle, recording, writability, the codec
    checkpoint) is checked before PyTorch and the encoder are loaded.

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
    bundle = Bundle.open(bundle_dir, verify="fast")
    transcript = prepare_store(bundle, name, transcript, overwrite)
    audio = load_prompt_audio(wav_path)
    source = codec_source or default_codec_source(bundle)
    codec = resolve_source(source)
    recorded = (bundle.manifest.sources.get("codec") or {}).get("model_safetensors_sha256")
    if recorded and recorded != codec.weights_sha256:
        raise BundleError(f"the X-Codec2 checkpoint '{source}' is not the one bundle '{bundle.root}' was exported "
                          "with (model.safetensors hash differs); its codes would not fit the bundle's decoder")
    # The recording's own speaker embedding for each speaker verifier (ONNX Runtime), before the slow encoder.
    embeddings = embed_recording(bundle, audio.wav)
    t0 = time.perf_counter()
    _say("loading PyTorch and the X-Codec2 encoder (this takes a while the first time)")
    from .xcodec2_model import XCodec2Encoder  # torch: only once everything else is known to be fine

    encoder = XCodec2Encoder.from_folder(codec.folder)
    _say(f"encoding {audio.seconds:.1f} s of '{Path(wav_path).name}' (encoder loaded in "
         f"{time.perf_counter() - t0:.1f} s)")
    codes = encoder.encode(audio.wav)
    entry = VoiceEntry(file="", sha256="", transcript=transcript, num_codes=int(codes.shape[0]),
                       seconds=round(audio.seconds, 3), source_sha256=sha256_file(Path(wav_path)),
                       sample_rate_in=audio.sample_rate_in, resampled=audio.resampled, truncated=audio.truncated,
                       embeddings=embeddings)
    store_voice(bundle, name, codes, entry)
    _say(f"voice '{name}': {entry.num_codes} codes ({TARGET_RATE // 320} per second) -> {entry.file}")
    return entry
