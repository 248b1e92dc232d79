"""The generated checkpoints have the published HKUSTAudio/xcodec2 layout; bad checkpoints are refused clearly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from llasa_rt.errors import CheckpointError
from llasa_rt.export.xcodec2_checkpoint import check_folder, resolve_source


def test_tiny_checkpoint_keys_equal_the_xcodec2_package_model(tiny_codec, tiny_reference):
    ours = load_file(str(tiny_codec / "model.safetensors"))
    theirs = tiny_reference.state_dict()
    assert set(ours) == set(theirs)
    assert all(tuple(ours[k].shape) == tuple(theirs[k].shape) for k in ours)
    # The published format's characteristic keys are present.
    assert "CodecEnc.conv_blocks.0.parametrizations.weight.original0" in ours
    assert "CodecEnc.conv_blocks.1.block.0.block.0.upsample.filter" in ours
    assert "generator.head.istft.window" in ours
    assert "semantic_model.encoder.layers.23.final_layer_norm.weight" in ours
    # Buffers that the package computes itself (alias-free filters, iSTFT window) hold the package's values:
    # compare with freshly built package modules (not loaded from our file).
    from xcodec2.vq.codec_decoder_vocos import CodecDecoderVocos
    from xcodec2.vq.codec_encoder import CodecEncoder_Transformer

    enc = CodecEncoder_Transformer(ngf=4, hidden_dim=32).state_dict()
    dec = CodecDecoderVocos(hidden_dim=128, depth=2, heads=2, vq_dim=64).state_dict()
    for key, value in enc.items():
        if key.endswith("filter"):
            assert torch.equal(ours["CodecEnc." + key], value), key
    assert torch.equal(ours["generator.head.istft.window"], dec["head.istft.window"])
    assert json.loads((tiny_codec / "config.json").read_text())["model_type"] == "xcodec"


def test_real_decoder_preset_has_the_published_decoder_size(real_codec):
    from safetensors import safe_open

    with safe_open(str(real_codec / "model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    decoder = sum(torch.Size(s).numel() for k, s in shapes.items()
                  if (k.startswith("generator.") and "project_in" not in k and "istft" not in k)
                  or k.startswith("fc_post_a."))
    assert 186e6 < decoder < 188e6
    assert shapes["fc_post_a.weight"] == [1024, 2048]
    assert shapes["generator.backbone.transformers.11.att.c_attn.weight"] == [3072, 1024]
    assert shapes["generator.head.out.weight"] == [1282, 1024]


def test_folder_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "xcodec"}')
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        check_folder(tmp_path)


def test_other_model_type_is_refused(tiny_codec, tmp_path):
    shutil.copy(tiny_codec / "model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(CheckpointError, match="not an X-Codec2 checkpoint"):
        check_folder(tmp_path)


def test_transformers_native_layout_is_refused_with_a_hint(tmp_path):
    save_file({"decoder.head.linear.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "xcodec2"}')
    with pytest.raises(CheckpointError, match="transformers-native"):
        check_folder(tmp_path)


def test_weights_without_decoder_are_refused(tmp_path):
    save_file({"CodecEnc.x": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "xcodec"}')
    with pytest.raises(CheckpointError, match="lacks X-Codec2 decoder weights"):
        check_folder(tmp_path)


def test_non_safetensors_weights_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "config.json").write_text('{"model_type": "xcodec"}')
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        check_folder(tmp_path)


def test_hub_id_offline_says_to_pass_a_local_folder(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="local folder"):
        resolve_source("HKUSTAudio/xcodec2")


def test_nonsense_source_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        resolve_source(str(tmp_path / "missing" / "deeper"))
