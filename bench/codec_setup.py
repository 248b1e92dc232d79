"""Shared setup of the codec benchmarks: a bundle holding an X-Codec2 decoder exported from a checkpoint folder
(default: a random checkpoint with the published decoder size, generated on the spot)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llasa_rt._version import __version__
from llasa_rt.bundle import Manifest
from llasa_rt.engines.bundle_writer import staged_bundle, write_manifest
from llasa_rt.export.codec import export_codec_decoder
from llasa_rt.export.tiny_codec import make_tiny_xcodec2


def codec_checkpoint(codec: str | None, work: Path) -> Path:
    """The checkpoint folder given, or a random 'real-decoder' checkpoint written into `work`."""
    return Path(codec) if codec else make_tiny_xcodec2(work / "xcodec2-real-decoder", "real-decoder", seed=0)


def codec_bundle(checkpoint: Path, work: Path, precision: str) -> Path:
    """A bundle in `work` with only codec_decoder.onnx (the LM is not needed to benchmark the codec)."""
    out = work / f"bundle-{precision}"
    with staged_bundle(out, overwrite=True) as tmp:
        entry = export_codec_decoder(checkpoint, tmp, precision)
        write_manifest(tmp, Manifest(llasa_rt_version=__version__, graphs={"codec_decoder": entry}, model={},
                                     audio={"sample_rate": 16000, "hop_length": 320}, tokens={}, prompt={},
                                     generation={}, sources={"codec": entry.details["source"]}))
    return out


def work_dir(path: str | None) -> Path:
    return Path(path) if path else Path(tempfile.mkdtemp(prefix="llasa-rt-codec-bench-"))
