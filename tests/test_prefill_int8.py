"""The int8 prefill graph (`export --prefill-int8`): the same fused LM with int8 weights and dynamically quantised
activations, run for prompts only, writing the same KV slots the decode graph then reads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

import llasa_rt
from llasa_rt.backends.ort import PREFILL_MIN_TOKENS, GrowingPastLm
from llasa_rt.bundle import Bundle
from llasa_rt.errors import BundleError
from llasa_rt.layout import LLASA_TOKENS


@pytest.fixture(scope="module")
def prefill_bundle(tiny_checkpoint, tmp_path_factory):
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("prefill-int8") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, precision="int4", prefill_int8=True, log=lambda m: None)


def _prompt(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([[128000], rng.integers(0, 128000, n - 2), [LLASA_TOKENS.start_id]]).astype(np.int64)


def test_manifest_lists_the_prefill_graph_and_it_uses_integer_products(prefill_bundle):
    entry = Bundle.open(prefill_bundle).graph("lm")
    assert entry.details["prefill"] == "lm.prefill.onnx"
    assert {"lm.prefill.onnx", "lm.prefill.onnx.data"} <= set(entry.files)
    ops = [n.op_type for n in onnx.load(str(prefill_bundle / "lm.prefill.onnx"), load_external_data=False).graph.node]
    assert ops.count("MatMulInteger") == ops.count("DynamicQuantizeLinear") > 0
    assert "MatMulNBits" in ops  # the head (last position only) keeps the decode graph's 8-bit weights


def _kl(ref: np.ndarray, other: np.ndarray) -> float:
    p, q = (np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (ref, other))
    return float((p * (np.log(p + 1e-30) - np.log(q + 1e-30))).sum())


def test_prefill_logits_are_closer_to_fp32_than_the_int4_graph(prefill_bundle, tiny_bundle):
    fp32 = tiny_bundle("h64", "fp32")
    model = Bundle.open(prefill_bundle).manifest.lm_parts()[0]
    kls = {"int4": [], "prefill": []}
    for seed in range(4):
        prompt = _prompt(40, seed)[None]
        ref = GrowingPastLm(fp32 / "lm.onnx", model).step(prompt)[0]
        kls["int4"].append(_kl(ref, GrowingPastLm(prefill_bundle / "lm.onnx", model).step(prompt)[0]))
        kls["prefill"].append(_kl(ref, GrowingPastLm(prefill_bundle / "lm.prefill.onnx", model).step(prompt)[0]))
    int4, prefill = np.mean(kls["int4"]), np.mean(kls["prefill"])
    print(f"KL vs fp32 over 4 prompts: int4 decode graph {int4:.4f}, int8 prefill graph {prefill:.4f}")
    assert 0 < prefill < int4, kls


def test_engine_prefills_on_the_int8_graph_and_decodes_on_the_int4_one(prefill_bundle, tmp_path):
    engine = llasa_rt.Engine(prefill_bundle, threads=1)
    generator = engine.lm.generator(2)
    opts, _ = engine.sampling_options(llasa_rt.GenerationOptions(max_new_tokens=6, min_new_tokens=6, seed=1),
                                      engine.max_context)
    result = generator.generate(_prompt(PREFILL_MIN_TOKENS + 4), options=opts, num_candidates=2)
    assert engine.lm.backend.prefill_runs == 1  # the prompt; the 6 decode steps ran on lm.onnx
    assert all(len(c.tokens) == 6 for c in result.candidates)
    generator.generate(_prompt(PREFILL_MIN_TOKENS - 4), options=opts, num_candidates=1)
    assert engine.lm.backend.prefill_runs == 1  # a short prompt stays on the decode graph

    # Without the prefill graph (manifest entry removed) the same bundle decodes on lm.onnx alone.
    plain = tmp_path / "plain"
    shutil.copytree(prefill_bundle, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    del manifest["graphs"]["lm"]["details"]["prefill"]
    (plain / "manifest.json").write_text(json.dumps(manifest))
    assert llasa_rt.Engine(plain, threads=1, verify="fast").lm.generator(1) is not None


def test_prefill_entry_must_name_one_of_the_lm_files(prefill_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(prefill_bundle, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["graphs"]["lm"]["details"]["prefill"] = "elsewhere.onnx"
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"details\.prefill"):
        Bundle.open(bad, verify="fast")


def test_prefill_int8_is_refused_where_it_does_not_apply(tiny_checkpoint, tmp_path):
    from llasa_rt.export.bundle_export import export_bundle

    for kwargs in (dict(precision="fp32"), dict(precision="int4", lm_flavour="layered")):
        with pytest.raises(BundleError, match="--prefill-int8"):
            export_bundle(str(tiny_checkpoint("h64")), tmp_path / "x", prefill_int8=True, log=lambda m: None,
                          **kwargs)
        assert not (tmp_path / "x").exists()


def test_the_servers_prefill_chunks_run_on_the_prefill_graph(prefill_bundle):
    from llasa_rt.batching import RequestBatcher

    engine = llasa_rt.Engine(prefill_bundle, threads=1)
    batcher = RequestBatcher(engine, max_batch=2, prefill_chunk=PREFILL_MIN_TOKENS)
    handle = batcher.submit("A request whose prompt takes several prefill chunks of the scheduler.",
                            llasa_rt.GenerationOptions(seed=1, max_new_tokens=8, min_new_tokens=8))
    for _ in range(100):
        if not (batcher.scheduler.running or batcher.scheduler.queued):
            break
        batcher.step()
    result = handle.wait(timeout=0)
    assert len(result.codes) == 8
    assert batcher.backend.prefill_runs >= 2  # whole 16-token chunks; the last partial chunk and decode: lm.onnx
