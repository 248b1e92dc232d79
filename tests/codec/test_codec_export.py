"""codec_decoder.onnx reproduces the xcodec2 package's decode_code, uses standard ops only, and fails cleanly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from llasa_rt.bundle import Bundle, sha256_file
from llasa_rt.errors import CheckpointError, InputError
from llasa_rt.export.codec import GRAPH_NAME, export_codec_decoder, snr_db

LENGTHS = (1, 7, 100, 500)


def _ort(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _parity(bundle_dir, reference, floor_db):
    session = _ort(Bundle.open(bundle_dir).path(GRAPH_NAME))
    rng = np.random.default_rng(11)
    results = {}
    for t in LENGTHS:
        for b in (1, 2):
            codes = rng.integers(0, 65536, size=(b, 1, t)).astype(np.int32)
            expected = reference.decode_code(torch.from_numpy(codes).long()).numpy()
            got = session.run(["audio"], {"codes": codes})[0]
            assert got.shape == (b, 1, 320 * t) == expected.shape
            assert got.dtype == np.float32
            results[(t, b)] = snr_db(expected, got)
    assert min(results.values()) >= floor_db, results
    return results


def test_tiny_fp32_graph_matches_decode_code(codec_bundle, tiny_reference):
    _parity(codec_bundle, tiny_reference, 60.0)


def test_real_size_fp32_graph_matches_decode_code(real_codec_bundle, real_reference):
    _parity(real_codec_bundle, real_reference, 60.0)


def test_fp16_graph_stays_close_to_decode_code(codec_bundle_fp16, tiny_reference):
    # fp16 weights and activations (random weights): a tested floor, far below fp32's ~115 dB.
    _parity(codec_bundle_fp16, tiny_reference, 45.0)
    entry = Bundle.open(codec_bundle_fp16).graph("codec_decoder")
    assert entry.precision == "fp16"
    model = onnx.load(str(codec_bundle_fp16 / GRAPH_NAME))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_graph_uses_standard_ops_with_dynamic_batch_and_length(codec_bundle):
    model = onnx.load(str(codec_bundle / GRAPH_NAME))
    onnx.checker.check_model(model)
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert all(domain in ("", "ai.onnx") for domain, _ in ops)
    names = {op for _, op in ops}
    assert not names & {"STFT", "DFT", "Complex", "Fold", "Col2Im"}
    assert "Gather" in names  # the FSQ index -> code lookup
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 1 and dims[2].dim_param
    assert model.opset_import[0].version == 17


def test_graph_entry_describes_the_graph(codec_bundle, tiny_codec):
    entry = Bundle.open(codec_bundle).graph("codec_decoder")
    assert entry.files == {GRAPH_NAME: sha256_file(codec_bundle / GRAPH_NAME)}
    assert entry.backend == "onnxruntime" and entry.precision == "fp32" and entry.opset == 17
    d = entry.details
    assert d["sample_rate"] == 16000 and d["hop_length"] == 320 and d["codebook_size"] == 65536
    assert d["inputs"]["codes"]["dtype"] == "int32" and d["outputs"]["audio"]["dtype"] == "float32"
    assert d["source"]["model_safetensors_sha256"] == sha256_file(tiny_codec / "model.safetensors")
    assert d["self_check_snr_db"] > 60


def test_unknown_precision_is_refused_without_files(tiny_codec, tmp_path):
    with pytest.raises(InputError, match="fp32, fp16"):
        export_codec_decoder(tiny_codec, tmp_path, "int3")
    assert list(tmp_path.iterdir()) == []


def test_non_checkpoint_leaves_no_partial_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(b"")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CheckpointError):
        export_codec_decoder(src, dest, "fp32")
    assert list(dest.iterdir()) == []


def test_failed_export_removes_its_temporary_files(tiny_codec, tmp_path, monkeypatch):
    import llasa_rt.export.codec as codec_mod

    def broken(src, dst):
        raise RuntimeError("simulated failure while converting to fp16")

    monkeypatch.setattr(codec_mod, "_to_fp16", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        export_codec_decoder(tiny_codec, tmp_path, "fp16")
    assert list(tmp_path.iterdir()) == []
