"""Shared fixtures: tiny Llasa checkpoints in the real format and bundles exported from them.

Everything is generated in the test session (nothing is downloaded or committed). Expensive artifacts
are session-scoped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The two head layouts of the real models, at tiny width: (preset, checkpoint options).
CHECKPOINTS = {
    # Llasa-1B layout: head_dim 64, 32 q / 8 kv heads; tied embeddings; fp32 in one file.
    "h64": ("tiny-h64", dict(dtype="float32", shards=1)),
    # Llasa-3B layout: head_dim 128, 24 q / 8 kv heads; bf16 weights in 2 shards, separate lm_head.
    "h128": ("tiny-h128", dict(dtype="bfloat16", shards=2, tie_word_embeddings=False)),
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Returns a function name -> checkpoint folder (created once per session)."""
    from llasa_rt.export.tiny import make_tiny_llasa

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            preset, opts = CHECKPOINTS[name]
            made[name] = make_tiny_llasa(tmp_path_factory.mktemp(f"ckpt-{name}") / "model", preset, seed=7, **opts)
        return made[name]

    return get


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    """Returns a function (checkpoint name, precision, LM flavour, KV dtype) -> exported bundle folder (created
    once per session)."""
    from llasa_rt.export.bundle_export import export_bundle

    made: dict[tuple[str, str, str, str | None], Path] = {}

    def get(name: str, precision: str = "fp32", flavour: str = "fused", kv_dtype: str | None = None) -> Path:
        key = (name, precision, flavour, kv_dtype)
        if key not in made:
            out = tmp_path_factory.mktemp(f"bundle-{name}-{precision}-{flavour}-{kv_dtype}") / "bundle"
            made[key] = export_bundle(str(tiny_checkpoint(name)), out, precision=precision, lm_flavour=flavour,
                                      kv_dtype=kv_dtype, log=lambda m: None)
        return made[key]

    return get


@pytest.fixture(scope="session")
def tiny_codec(tmp_path_factory) -> Path:
    """A tiny random X-Codec2 checkpoint folder (config.json + model.safetensors) in the published layout."""
    from llasa_rt.export.tiny_codec import make_tiny_xcodec2

    return make_tiny_xcodec2(tmp_path_factory.mktemp("xcodec2") / "tiny", "tiny", seed=0)


def _full_bundle(flavour, tiny_checkpoint, tiny_codec, tmp_path_factory):
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp(f"bundle-full-{flavour}") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, precision="fp32", codec=str(tiny_codec), log=lambda m: None,
                         lm_flavour=flavour)


@pytest.fixture(scope="session")
def full_bundle(tiny_checkpoint, tiny_codec, tmp_path_factory):
    """A complete bundle (tiny LM with the Llasa-1B head layout, fp32 + tiny X-Codec2 decoder)."""
    return _full_bundle("fused", tiny_checkpoint, tiny_codec, tmp_path_factory)


@pytest.fixture(scope="session")
def layered_full_bundle(tiny_checkpoint, tiny_codec, tmp_path_factory):
    """`full_bundle` with the layered LM (float16 KV, the layered default)."""
    return _full_bundle("layered", tiny_checkpoint, tiny_codec, tmp_path_factory)


@pytest.fixture(scope="session")
def hf_model(tiny_checkpoint):
    """Returns a function name -> transformers LlamaForCausalLM (fp32, eval) of a tiny checkpoint."""
    import torch
    from transformers import LlamaForCausalLM

    loaded = {}

    def get(name: str):
        if name not in loaded:
            loaded[name] = LlamaForCausalLM.from_pretrained(str(tiny_checkpoint(name)), dtype=torch.float32).eval()
        return loaded[name]

    return get
