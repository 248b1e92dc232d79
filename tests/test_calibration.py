"""Explicit quantisation (llasa_rt.calibration): Q/DQ graphs are standard ONNX that ONNX Runtime runs, the
quantisers round-trip within a step, SmoothQuant's folding keeps the float function, and the quantised tiny LM
stays close to fp32 (bounds measured on the tiny random model; a broken recipe falls far below them)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from llasa_rt.backends.ort import GrowingPastLm
from llasa_rt.calibration.collect import ActivationStats, Calibration, collect
from llasa_rt.calibration.graph import GraphFile, pack_int4, unpack_int4
from llasa_rt.calibration.qdq import (
    QuantOptions,
    dequantize_int4_blocks,
    quantize_graph,
    quantize_int4_blocks,
    quantize_int8_columns,
    smooth_only,
)
from llasa_rt.cli import main
from llasa_rt.errors import InputError
from llasa_rt.evaluation.drift import measure_drift
from llasa_rt.layout import LLASA_TOKENS

STANDARD = {"", "ai.onnx"}


# ---- NumPy quantisers ----------------------------------------------------------------------------------
def test_int8_columns_round_trip_within_half_a_step():
    w = np.random.default_rng(0).normal(size=(64, 48)).astype(np.float32)
    w[:, 3] *= 50  # an outlier column gets its own scale
    q, scale = quantize_int8_columns(w)
    assert q.dtype == np.int8 and scale.shape == (48,)
    assert np.all(np.abs(q.astype(np.float32) * scale - w) <= scale / 2 + 1e-6)
    assert np.abs(q).max() == 127


def test_int4_blocks_round_trip_and_onnx_packing():
    w = np.random.default_rng(1).normal(size=(256, 40)).astype(np.float32)
    q, scale = quantize_int4_blocks(w, 128)
    assert scale.shape == (2, 40) and q.min() >= -8 and q.max() <= 7
    step = np.repeat(scale, 128, axis=0)
    assert np.all(np.abs(dequantize_int4_blocks(q, scale) - w) <= step / 2 + 1e-6)
    packed = pack_int4(q)
    assert len(packed.data) == q.size // 2 and np.array_equal(unpack_int4(packed), q)
    # ONNX's INT4 layout: element 0 in the low nibble of byte 0, element 1 in the high nibble.
    first = np.array([[-1, 7]], np.int8)
    assert pack_int4(first).data == bytes([0xF | (7 << 4)])


# ---- a small standard-operator graph (RMSNorm as plain ops, two linears) ---------------------------------
def _mlp_graph(path, k=128, hidden=256, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 1.5, k).astype(np.float32)
    w1 = rng.normal(0, 0.05, (k, hidden)).astype(np.float32)
    w2 = rng.normal(0, 0.05, (hidden, k)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], name="mean", keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["mse"], name="add_eps"),
        helper.make_node("Sqrt", ["mse"], ["rms"], name="sqrt"),
        helper.make_node("Div", ["x", "rms"], ["xn"], name="div"),
        helper.make_node("Mul", ["xn", "gamma"], ["h"], name="norm/Mul"),
        helper.make_node("MatMul", ["h", "w1"], ["u"], name="up/MatMul"),
        helper.make_node("Relu", ["u"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="down/MatMul"),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("axes", np.array([-1], np.int64)), ("eps", np.array(1e-5, np.float32)), ("gamma", gamma), ("w1", w1),
        ("w2", w2))]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=256)
    return path


def _inputs(k=128, n=64, seed=3):
    x = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    x[:, 5] *= 30  # an activation outlier channel, as LLMs have
    return x


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _calibrate(path, x) -> Calibration:
    """Statistics of both linears' inputs, computed through an ONNX Runtime run with them exposed."""
    model = onnx.load(str(path))
    for name in ("h", "r"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _, h, r = sess.run(None, {"x": x})
    stats = {"h": ActivationStats(), "r": ActivationStats()}
    stats["h"].add(h, 64)
    stats["r"].add(r, 64)
    return Calibration(stats=stats, prompts=1, steps=0, positions=len(x))


@pytest.mark.parametrize("scheme,clip,bound", [("int8", False, 0.03), ("int8", True, 0.03), ("int4", False, 0.25)])
def test_qdq_graph_is_standard_onnx_and_runs(tmp_path, scheme, clip, bound):
    src = _mlp_graph(tmp_path / "mlp.onnx")
    x = _inputs()
    ref = _run(src, x)
    g = GraphFile(src)
    report = quantize_graph(g, _calibrate(src, x), QuantOptions(scheme=scheme, smooth_mul=True, clip_search=clip))
    out = tmp_path / f"mlp.{scheme}.onnx"
    assert g.save(out) == [out.name, out.name + ".data"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert all(n.domain in STANDARD for n in model.graph.node)
    assert ops.count("MatMul") == 2 and report.quantized == 2
    if scheme == "int8":
        assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 4
        types = {t.name: t.data_type for t in model.graph.initializer}
        assert types["w1.int8"] == TensorProto.INT8 and "w1" not in types  # the float weight is gone
        assert report.smoothed_folded == 1 and report.smoothed_mul == 1  # norm's Mul folded; Relu needs a Mul
        assert bool(report.clip_ratios) == clip
    else:
        assert "QuantizeLinear" not in ops and ops.count("DequantizeLinear") == 2
        dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert all({a.name: a.i for a in n.attribute}["block_size"] == 128 for n in dq)
        assert {t.data_type for t in model.graph.initializer if t.name.endswith(".int4")} == {TensorProto.INT4}
    y = _run(out, x)
    rel = float(np.abs(y - ref).max() / np.abs(ref).max())
    print(f"{scheme}: max error relative to max |y| {rel:.4f}")
    assert 0 < rel < bound


def test_smoothing_alone_keeps_the_float_function(tmp_path):
    src = _mlp_graph(tmp_path / "mlp.onnx")
    x = _inputs()
    g = GraphFile(src)
    report = smooth_only(g, _calibrate(src, x), alpha=0.5, smooth_mul=True)
    assert report.smoothed_folded == 1 and report.smoothed_mul == 1
    out = tmp_path / "mlp.smooth.onnx"
    g.save(out)
    gamma = numpy_helper.to_array(next(t for t in onnx.load(str(out)).graph.initializer if t.name == "gamma"))
    assert not np.allclose(gamma, numpy_helper.to_array(
        next(t for t in onnx.load(str(src)).graph.initializer if t.name == "gamma")))  # it did change something
    np.testing.assert_allclose(_run(out, x), _run(src, x), atol=1e-5, rtol=1e-4)


def test_graph_without_linears_is_refused(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save_model(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    calib = Calibration(stats={}, prompts=0, steps=0, positions=0)
    with pytest.raises(InputError, match="no MatMul with a \\[K, N\\] float weight"):
        quantize_graph(GraphFile(tmp_path / "relu.onnx"), calib, QuantOptions(scheme="int8"))


def test_int4_block_that_does_not_divide_k_is_refused(tmp_path):
    src = _mlp_graph(tmp_path / "mlp.onnx", k=96)
    x = _inputs(k=96)
    with pytest.raises(InputError, match=r"96 are not multiples of the int4 block size 128.*--block-size 32"):
        quantize_graph(GraphFile(src), _calibrate(src, x), QuantOptions(scheme="int4"))


# ---- the tiny LM (Llasa-1B head layout) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_bundle(tiny_checkpoint, tmp_path_factory):
    """A tiny fp32 bundle with both LM flavours, lm.onnx and lm.portable.onnx (quantize writes into it)."""
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("qdq") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, precision="fp32", target="both", max_context=256,
                         log=lambda m: None)


def _cli(args, capsys):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_smoothing_folded_into_the_lm_norms_keeps_logits(lm_bundle, tmp_path):
    """SmoothQuant scales folded into (Skip)SimplifiedLayerNormalization weights: same logits within 1e-4."""
    from llasa_rt.bundle import Bundle
    from llasa_rt.prompt import PromptBuilder

    bundle = Bundle.open(lm_bundle, verify="fast")
    builder = PromptBuilder.from_bundle(bundle)
    prompts = [builder.build(t) for t in ("Hello there.", "A second, longer sentence to calibrate on.")]
    work = tmp_path / "lm.onnx"
    shutil.copy(lm_bundle / "lm.onnx", work)
    shutil.copy(lm_bundle / "lm.onnx.data", work.parent / "lm.onnx.data")
    model = bundle.manifest.lm_model("lm")
    calib = collect(work, model, False, prompts, LLASA_TOKENS.head_token_ids(), LLASA_TOKENS.speech_count, steps=4)
    g = GraphFile(work)
    report = smooth_only(g, calib, alpha=0.5)
    assert report.smoothed_folded == 2 * 2  # qkv and gate/up of both layers; o/down/head have no norm input
    g.save(tmp_path / "lm.smooth.onnx")
    ref, smooth = GrowingPastLm(work, model), GrowingPastLm(tmp_path / "lm.smooth.onnx", model)
    ids = np.asarray([prompts[1]], np.int64)
    for _ in range(5):
        a, b = ref.step(ids), smooth.step(ids)
        assert np.abs(a - b).max() < 1e-4
        ids = np.array([[LLASA_TOKENS.head_token_ids()[int(np.argmax(a[0, :-1]))]]], np.int64)


# Measured on this tiny random model (16 prompts, 16 steps): int8 84.6% / KL 0.0035, int4 45% / KL 0.09; the
# weight-only exports (MatMulNBits) give 91% / 0.0007 and 52% / 0.066. A wrong scale or axis gives ~0% / KL > 1.
@pytest.mark.parametrize("graph", ["lm", "lm.portable"])
@pytest.mark.parametrize("scheme,top1,kl", [("int8", 0.75, 0.01), ("int4", 0.3, 0.2)])
def test_quantize_cli_adds_a_graph_that_compare_measures(lm_bundle, capsys, graph, scheme, top1, kl):
    code, out, err = _cli(["quantize", lm_bundle, "--graph", f"{graph}.onnx", "--scheme", scheme, "--steps", "8"],
                          capsys)
    assert code == 0, err
    name = f"{graph}.{scheme}"
    assert out.strip() == name
    manifest = json.loads((lm_bundle / "manifest.json").read_text())
    entry = manifest["graphs"][name]
    assert entry["precision"] == scheme and list(entry["files"]) == [f"{name}.onnx", f"{name}.onnx.data"]
    assert entry["details"]["calibration"]["prompts"] == 16 and entry["details"]["quantized_linears"] == 2 * 4 + 1
    assert entry["opset"] == (21 if scheme == "int4" else manifest["graphs"][graph]["opset"])
    assert manifest["graphs"][graph]["precision"] == "fp32"  # the float graph is untouched
    from llasa_rt.bundle import Bundle

    Bundle.open(lm_bundle, verify="full")  # hashes recorded right
    if graph == "lm.portable":  # the TensorRT input: standard ONNX only, checked in full
        model = onnx.load(str(lm_bundle / f"{name}.onnx"))
        onnx.checker.check_model(model, full_check=True)
        assert all(n.domain in STANDARD for n in model.graph.node)
    report = measure_drift(lm_bundle / f"{graph}.onnx", lm_bundle / f"{name}.onnx", steps=16)
    print(f"tiny h64 {name} vs fp32 (random weights): {report}")
    assert report.top1_agreement >= top1 and report.mean_kl <= kl
    code, out, err = _cli(["compare", lm_bundle / f"{graph}.onnx", lm_bundle / f"{name}.onnx", "--steps", "2",
                           "--prompts", _one_prompt(lm_bundle)], capsys)
    assert code == 0 and "top-1 agreement" in out and "greedy agreement" in out, err


def _one_prompt(folder):
    path = folder.parent / "one_prompt.txt"
    path.write_text("One short sentence.\n")
    return path


@pytest.mark.parametrize("args,message", [
    (["--scheme", "int3"], "unknown quantisation scheme 'int3'; choose one of int8, int4"),
    (["--scheme", "int8", "--graph", "nope.onnx"], "has no LM graph 'nope.onnx'; its LM graphs: lm.onnx"),
    (["--scheme", "int4"], "not multiples of the int4 block size 128"),
    (["--scheme", "int8", "--alpha", "2"], "--alpha must be a number in [0, 1], not 2.0"),
    (["--scheme", "int8", "--head", "fp8"], "--head must be one of same, int8, float"),
])
def test_quantize_bad_input_one_line(tiny_bundle, capsys, args, message):
    bundle = tiny_bundle("h128", "fp32")  # hidden 192: int4 blocks of 128 do not fit
    before = sorted(p.name for p in bundle.iterdir())
    code, _, err = _cli(["quantize", bundle, "--steps", "1", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in bundle.iterdir()) == before  # nothing written


def test_quantize_missing_bundle_one_line(tmp_path, capsys):
    code, _, err = _cli(["quantize", tmp_path / "absent", "--scheme", "int8"], capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


# ---- the codec decoder -----------------------------------------------------------------------------------
def test_codec_decoder_int8_is_standard_onnx_with_a_measured_snr(tiny_codec, tmp_path, capsys):
    """MatMul and Conv weights per output channel, activations per tensor; measured 24.1 dB on the tiny random
    decoder (random codes); a wrong axis or scale gives < 5 dB."""
    from llasa_rt.calibration import codec_snr
    from llasa_rt.export.codec import export_codec_bundle

    bundle = export_codec_bundle(tiny_codec, tmp_path / "codec")
    code, out, err = _cli(["quantize", bundle, "--graph", "codec_decoder.onnx", "--scheme", "int8"], capsys)
    assert code == 0 and out.strip() == "codec_decoder.int8", err
    entry = json.loads((bundle / "manifest.json").read_text())["graphs"]["codec_decoder.int8"]
    assert entry["precision"] == "int8" and entry["details"]["calibration"]["codes"] == "random codes"
    model = onnx.load(str(bundle / "codec_decoder.int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert all(n.domain in STANDARD for n in model.graph.node)
    consumers = {i: n for n in model.graph.node for i in n.input}
    convs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
             and consumers[n.output[0]].op_type == "Conv" and n.input[0].endswith(".int8")]
    assert convs and all({a.name: a.i for a in n.attribute}["axis"] == 0 for n in convs)
    codes = [np.random.default_rng(5).integers(0, 65536, (1, 1, 120)).astype(np.int32)]
    snr = codec_snr(bundle / "codec_decoder.onnx", bundle / "codec_decoder.int8.onnx", codes, "codes")
    print(f"tiny codec int8 SNR vs fp32: {snr:.1f} dB (recorded {entry['details']['snr_db_vs_fp32']} dB)")
    assert snr > 15 and entry["details"]["snr_db_vs_fp32"] > 15
    code, _, err = _cli(["quantize", bundle, "--graph", "codec_decoder.onnx", "--scheme", "int4"], capsys)
    assert code == 2 and "--scheme int8 only" in err and len(err.strip().splitlines()) == 1


def test_engine_speaks_from_a_quantised_graph_file(full_bundle, tmp_path):
    """The new entry is an LM entry: Engine(BUNDLE/lm.int8.onnx) runs it (and the bundle's codec)."""
    import llasa_rt
    from llasa_rt.calibration import quantize_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(full_bundle, bundle)
    assert quantize_bundle(bundle, "int8", steps=2, texts=["Calibrate on this."]) == "lm.int8"
    audio = llasa_rt.Engine(bundle / "lm.int8.onnx").speak("Hello there.", max_new_tokens=12, seed=1)
    assert len(audio.samples) == 12 * 320 and np.isfinite(audio.samples).all()
