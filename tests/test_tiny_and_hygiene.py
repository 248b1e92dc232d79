"""The tiny checkpoints have Llasa's real layout; the runtime import path stays free of torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from llasa_rt.export.quantize import dequantize, quantize_blockwise


def test_tiny_tokenizer_has_llasa_ids(tiny_checkpoint):
    tok = Tokenizer.from_file(str(tiny_checkpoint("h64") / "tokenizer.json"))
    expect = {"<|begin_of_text|>": 128000, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007,
              "<|eot_id|>": 128009, "<|TEXT_UNDERSTANDING_START|>": 128258, "<|TEXT_UNDERSTANDING_END|>": 128259,
              "<|SPEECH_GENERATION_START|>": 128260, "<|SPEECH_GENERATION_END|>": 128261, "<|s_0|>": 128264,
              "<|s_65535|>": 193799}
    assert {t: tok.token_to_id(t) for t in expect} == expect
    assert tok.get_vocab_size(with_added_tokens=True) == 193800
    assert tok.encode("<|s_7|><|s_8|>", add_special_tokens=False).ids == [128271, 128272]


def test_tiny_config_matches_llasa_fields(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint("h128") / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["vocab_size"] == 193800
    assert cfg["rope_scaling"]["rope_type"] == "llama3" and cfg["rope_theta"] == 500000.0
    assert (cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (128, 24, 8)
    assert (tiny_checkpoint("h128") / "model.safetensors.index.json").is_file()


def test_runtime_import_does_not_pull_torch():
    code = ("import sys, llasa_rt, llasa_rt.bundle, llasa_rt.prompt, llasa_rt.cli, llasa_rt._core\n"
            "bad = [m for m in ('torch', 'transformers', 'onnx') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize(("n", "k"), [(48, 128), (51, 100)])
def test_matmulnbits_layout_matches_numpy(bits, n, k):
    """Our packing, run by ONNX Runtime's own MatMulNBits and GatherBlockQuantized, equals NumPy dequantisation."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, k)).astype(np.float32)
    q = quantize_blockwise(w, bits, 32)
    assert np.abs(dequantize(q) - w).max() <= q.scales.max() / 2 + 1e-6  # round-to-nearest error bound
    inits = [numpy_helper.from_array(q.data, "B"), numpy_helper.from_array(q.scales.reshape(-1), "s"),
             numpy_helper.from_array(q.zero_points.reshape(-1), "z"),
             numpy_helper.from_array(q.data.reshape(n, -1), "D"), numpy_helper.from_array(q.scales, "s2"),
             numpy_helper.from_array(q.zero_points, "z2")]
    nodes = [helper.make_node("MatMulNBits", ["A", "B", "s", "z"], ["Y"], domain="com.microsoft", K=k, N=n,
                              bits=bits, block_size=32, accuracy_level=0)]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    if k % 32 == 0:  # GatherBlockQuantized needs whole blocks
        nodes.append(helper.make_node("GatherBlockQuantized", ["D", "I", "s2", "z2"], ["G"], domain="com.microsoft",
                                      bits=bits, block_size=32, gather_axis=0, quantize_axis=1))
        outputs.append(helper.make_tensor_value_info("G", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", k]),
                                           helper.make_tensor_value_info("I", TensorProto.INT64, ["x"])],
                              outputs, inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = rng.standard_normal((3, k)).astype(np.float32)
    idx = np.array([0, n - 1, 5], np.int64)
    out = sess.run(None, {"A": a, "I": idx})
    np.testing.assert_allclose(out[0], a @ dequantize(q).T, atol=1e-5)
    if len(out) > 1:
        np.testing.assert_array_equal(out[1], dequantize(q)[idx])


def test_chunked_quantisation_equals_whole_matrix():
    w = np.random.default_rng(1).standard_normal((1000, 96)).astype(np.float32)
    whole, chunked = quantize_blockwise(w, 4, 32), quantize_blockwise(w, 4, 32, rows_per_chunk=128)
    for field in ("data", "scales", "zero_points"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(chunked, field))
