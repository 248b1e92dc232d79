"""fp16 / int8 / int4 graphs: they run, they are exactly "the model with quantised weights", and how far
they drift from fp32 is reported (on random weights agreement says nothing about quality, so it is not
asserted)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from llasa_rt.export.checkpoint import check_llasa, resolve
from llasa_rt.export.lm_graph import LlamaGraphBuilder, LmExportOptions
from llasa_rt.export.quantize import dequantize, quantize_blockwise

from lm_helpers import HEAD_IDS, LLASA_TOKENS, GrowingPastLm


def _greedy(lm: GrowingPastLm, prompt: np.ndarray, n: int) -> tuple[list[int], list[np.ndarray]]:
    lm.reset()
    ids, toks, logits_seen = prompt, [], []
    for _ in range(n):
        logits = lm.step(ids)
        logits_seen.append(logits)
        row = int(np.argmax(logits[0, :LLASA_TOKENS.speech_count]))
        toks.append(row)
        ids = np.array([[HEAD_IDS[row]]], np.int64)
    return toks, logits_seen


PROMPT = np.array([[128000, 128006, 882, 128007, 271, 5, 77, 300, 128258, 44, 128259, 128260]], np.int64)


@pytest.mark.parametrize("precision", ["fp16", "int8", "int4"])
def test_quantized_graph_runs_and_report_drift(precision, tiny_bundle):
    ref_toks, ref_logits = _greedy(GrowingPastLm.from_bundle(tiny_bundle("h128", "fp32")), PROMPT, 30)
    bundle = tiny_bundle("h128", precision)
    toks, logits = _greedy(GrowingPastLm.from_bundle(bundle), PROMPT, 30)
    agree = sum(a == b for a, b in zip(toks, ref_toks, strict=True))
    first = float(np.abs(logits[0] - ref_logits[0]).max())
    print(f"{precision}: greedy agreement with fp32 {agree}/30 (random weights: not a quality measure); "
          f"prefill max |logit diff| {first:.3g}")
    assert all(np.isfinite(x).all() for x in logits)
    fp32_size = (tiny_bundle("h128", "fp32") / "lm.onnx.data").stat().st_size
    size = (bundle / "lm.onnx.data").stat().st_size
    assert size < {"fp16": 0.55, "int8": 0.4, "int4": 0.4}[precision] * fp32_size
    if precision == "fp16":
        assert first < 0.05  # fp16 rounding only; a broken graph is off by O(1)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["graphs"]["lm"]["precision"] == precision
    ops = {n.op_type for n in onnx.load(str(bundle / "lm.onnx"), load_external_data=False).graph.node}
    assert ("MatMulNBits" in ops) == (precision != "fp16")


def _dequantized_reference(hf, bits: int, head_bits: int, embed_bits: int, block: int, embed_block: int):
    """A copy of the transformers model whose weights are replaced by what the quantised graph stores."""
    import copy

    model = copy.deepcopy(hf)
    def dq(w, b, size=block):
        return torch.from_numpy(dequantize(quantize_blockwise(w.detach().numpy(), b, size)))

    with torch.no_grad():
        for layer in model.model.layers:
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                        layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                lin.weight.copy_(dq(lin.weight, bits))
        head = model.lm_head.weight.detach().clone()
        head[torch.as_tensor(HEAD_IDS)] = dq(head[torch.as_tensor(HEAD_IDS)], head_bits)
        model.lm_head.weight = torch.nn.Parameter(head)  # untie: the graph quantises head and table separately
        model.model.embed_tokens.weight = torch.nn.Parameter(dq(model.model.embed_tokens.weight, embed_bits,
                                                                embed_block))
    return model


@pytest.mark.parametrize(("name", "precision", "head_bits"), [("h64", "int4", 4), ("h128", "int8", 8)])
def test_quantized_graph_equals_model_with_dequantized_weights(name, precision, head_bits, tiny_checkpoint, hf_model,
                                                               tmp_path):
    """With fp32 compute (accuracy_level 0) the int4/int8 graph must equal transformers run on the
    dequantised weights: this checks the packing, the fused layouts and the quantised head/embeddings."""
    opts = LmExportOptions(precision=precision, accuracy_level=0, head_bits=head_bits)
    ckpt = check_llasa(resolve(str(tiny_checkpoint(name)), []))
    facts = LlamaGraphBuilder(ckpt, opts).build(tmp_path / "lm.onnx")
    lm = GrowingPastLm(tmp_path / "lm.onnx", facts)
    bits = 4 if precision == "int4" else 8
    embed_block = next(b for b in (128, 64, 32, 16) if ckpt.config["hidden_size"] % b == 0 and b <= opts.block_size)
    ref = _dequantized_reference(hf_model(name), bits, head_bits, opts.embed_bits, opts.block_size, embed_block)
    rows = torch.as_tensor(HEAD_IDS)
    ids, past, worst = PROMPT, None, 0.0
    with torch.no_grad():
        for step in range(6):
            ours = lm.step(ids)
            out = ref(input_ids=torch.as_tensor(ids), past_key_values=past, use_cache=True)
            past = out.past_key_values
            worst = max(worst, float(np.abs(ours - out.logits[:, -1, :][:, rows].numpy()).max()))
            ids = np.array([[HEAD_IDS[(step * 7919) % LLASA_TOKENS.head_rows]]], np.int64)
    print(f"{name} {precision}: graph vs dequantised transformers, max |logit diff| {worst:.3g}")
    assert worst <= 1e-4


def test_drift_orders_precisions_and_is_zero_for_the_same_graph(tiny_bundle, capsys):
    from llasa_rt.cli import main
    from llasa_rt.evaluation.drift import measure_drift

    texts = ["Hello there.", "A second, slightly longer test sentence."]
    ref = tiny_bundle("h128", "fp32")
    same = measure_drift(ref, ref, texts, steps=6)
    assert same.top1_agreement == 1.0 and same.mean_kl == 0.0 and same.max_abs_logit_diff == 0.0
    kl = {p: measure_drift(ref, tiny_bundle("h128", p), texts, steps=6).mean_kl for p in ("fp16", "int8", "int4")}
    print("mean KL vs fp32:", kl)
    assert 0.0 < kl["fp16"] < kl["int8"] < kl["int4"]
    assert main(["compare", str(ref), str(tiny_bundle("h128", "int4")), "--steps", "2"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
