"""Shared setup of the codec benchmarks: a bundle holding an X-Codec2 decoder exported from a checkpoint folder
(default: a random checkpoint with the published decoder size, generated on the spot)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from llasa_rt.export.codec import export_codec_bundle
from llasa_rt.export.tiny_codec import make_tiny_xcodec2


def codec_checkpoint(codec: str | None, work: Path) -> Path:
    """The checkpoint folder given, or a random 'real-decoder' checkpoint in `work` (written on first use)."""
    if codec:
        return Path(codec)
    folder = work / "xcodec2-real-decoder"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    return make_tiny_xcodec2(folder, "real-decoder", seed=0)


def codec_bundle(checkpoint: Path, work: Path, precision: str) -> Path:
    """A bundle in `work` with only codec_decoder.onnx (the LM is not needed to benchmark the codec)."""
    return export_codec_bundle(checkpoint, work / f"bundle-{precision}", precision, overwrite=True)


def add_common_arguments(ap: argparse.ArgumentParser, seconds: float | None = 10.0) -> None:
    """--codec, --work, --threads (and --seconds unless None): the arguments every codec benchmark takes."""
    ap.add_argument("--codec", help="X-Codec2 checkpoint folder (default: random, published decoder size)")
    ap.add_argument("--work", help="folder for generated files (default: a new temporary folder)")
    if seconds is not None:
        ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--threads", type=int, default=2)


def work_dir(path: str | None) -> Path:
    return Path(path) if path else Path(tempfile.mkdtemp(prefix="llasa-rt-codec-bench-"))
