"""Fixtures for the X-Codec2 tests: random checkpoints in the published layout, the xcodec2 package as reference,
and bundles that hold a codec decoder. Everything is generated in the test session; expensive parts once."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_codec_bundle(out: Path, codec_dir: Path, precision: str = "fp32") -> Path:
    """A bundle holding only the codec decoder (the codec code needs no LM)."""
    from llasa_rt.export.codec import export_codec_bundle

    return export_codec_bundle(codec_dir, out, precision)


@pytest.fixture(scope="session")
def real_codec(tmp_path_factory) -> Path:
    """A random X-Codec2 checkpoint with the published decoder size (~187M parameters)."""
    from llasa_rt.export.tiny_codec import make_tiny_xcodec2

    return make_tiny_xcodec2(tmp_path_factory.mktemp("xcodec2") / "real-decoder", "real-decoder", seed=0)


def _reference(folder: Path):
    try:
        from xcodec2_reference import load_reference
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"reference loader unavailable: {e}")
    try:
        return load_reference(folder)
    except ImportError as e:
        pytest.skip(f"the xcodec2 package (reference) is not installed here ({e}); run `bash .ci/extras.sh`")


@pytest.fixture(scope="session")
def tiny_reference(tiny_codec):
    """The xcodec2 package's encode_code/decode_code on the tiny checkpoint's weights."""
    return _reference(tiny_codec)


@pytest.fixture(scope="session")
def real_reference(real_codec):
    return _reference(real_codec)


@pytest.fixture(scope="session")
def codec_bundle(tiny_codec, tmp_path_factory) -> Path:
    return make_codec_bundle(tmp_path_factory.mktemp("bundles") / "tiny", tiny_codec)


@pytest.fixture(scope="session")
def codec_bundle_fp16(tiny_codec, tmp_path_factory) -> Path:
    return make_codec_bundle(tmp_path_factory.mktemp("bundles") / "tiny-fp16", tiny_codec, "fp16")


@pytest.fixture(scope="session")
def real_codec_bundle(real_codec, tmp_path_factory) -> Path:
    return make_codec_bundle(tmp_path_factory.mktemp("bundles") / "real", real_codec)
