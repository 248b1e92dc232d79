"""The layered LM (segment graphs + the attention kernel): one prompt's KV shared by every candidate, float16 KV
drift measured, the manifest entry checked, the Engine running on it. Its logits are checked against
transformers in test_lm_parity.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import llasa_rt
from llasa_rt import _core
from llasa_rt.backends.layered import LayeredLmBackend, open_layered
from llasa_rt.bundle import LM_GRAPH, Bundle
from llasa_rt.errors import BundleError

from lm_helpers import HEAD_IDS, LLASA_TOKENS, random_prompt

PROMPT_LEN = 23


def _prompt(seed: int = 3) -> np.ndarray:
    return random_prompt(PROMPT_LEN, seed)


def _next_rows(step: int, batch: int) -> np.ndarray:
    """Varied (not argmax) continuation tokens, one per row, so the steps visit many tokens."""
    rows = np.random.default_rng(step).integers(0, LLASA_TOKENS.head_rows, size=batch)
    return np.asarray(HEAD_IDS)[rows].reshape(batch, 1).astype(np.int64)


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_rows_read_the_shared_prompt_from_one_slot(name, tiny_bundle, hf_model):
    """Contract (2): the prompt is prefilled into slot 0 only; with set_shared_prefix(0, P) the rows in slots
    1 and 2 (whose positions < P were never written) still get transformers' logits."""
    bundle = Bundle.open(tiny_bundle(name, "fp32", "layered", "float32"), verify="fast")
    model_facts, tokens, _ = bundle.manifest.lm_parts()
    entry = bundle.graph(LM_GRAPH)
    graphs = open_layered(bundle.root, entry.segments, model_facts, tokens, 2, None)
    cache = _core.KvCache(_core.KvCacheConfig(num_layers=model_facts.num_layers, num_kv_heads=model_facts.num_kv_heads,
                                              head_dim=model_facts.head_dim, slots=3, max_seq_len=64, dtype="float32"))
    buffers = _core.StepBuffers(cache, rows=tokens.head_rows)
    backend = LayeredLmBackend(graphs, cache, buffers, model_facts)
    assert backend.shares_prefix()

    def step(ids: np.ndarray, past: int) -> np.ndarray:
        b, s = ids.shape
        buffers.input_ids[:b * s] = ids.reshape(-1)
        buffers.position_ids[:b * s] = np.tile(np.arange(past, past + s), b)
        logits = buffers.logits.reshape(-1)[:b * tokens.head_rows].reshape(b, tokens.head_rows)
        backend.forward(buffers.input_ids[:b * s].reshape(b, s), past, logits)
        return logits.copy()

    model = hf_model(name)
    prompt = _prompt(5)
    with torch.no_grad():
        ref = model(input_ids=torch.as_tensor(np.repeat(prompt, 3, axis=0)), use_cache=True)
        first = step(prompt, 0)
        np.testing.assert_allclose(first, ref.logits[:1, -1, HEAD_IDS].numpy(), atol=1e-4)
        past = ref.past_key_values
        backend.set_shared_prefix(0, PROMPT_LEN)
        assert not cache.key(0)[1:, :, :PROMPT_LEN].any()  # nothing copied into the other slots
        for n in range(8):
            ids = _next_rows(100 + n, 3)
            ours = step(ids, PROMPT_LEN + n)
            out = model(input_ids=torch.as_tensor(ids), past_key_values=past, use_cache=True)
            past = out.past_key_values
            np.testing.assert_allclose(ours, out.logits[:, -1, HEAD_IDS].numpy(), atol=1e-4)
        backend.set_shared_prefix(-1, 0)
        assert backend.prefix == (-1, 0)


def test_greedy_codes_of_layered_and_fused_bundles_are_equal(tiny_bundle):
    """The Engine on a layered bundle (float32 and float16 KV): greedy codes of 3 candidates, which read the prompt's
    KV from one slot (contract (2)), equal the fused graph's; seeded sampling is batch independent as on the fused
    graph."""
    fused = llasa_rt.Engine(tiny_bundle("h64", "fp32"), threads=2)
    text = "Layered and fused graphs speak alike."
    greedy = dict(temperature=0.0, max_new_tokens=40, min_new_tokens=40, num_candidates=3)
    want = fused.generate_codes(text, **greedy)
    for kv in ("float32", "float16"):
        layered = llasa_rt.Engine(tiny_bundle("h64", "fp32", "layered", kv), threads=2)
        got = layered.generate_codes(text, **greedy)
        assert [c.codes.tolist() for c in got.candidates] == [c.codes.tolist() for c in want.candidates], kv
        # the forks read the prompt from slot 0: it was never copied into slots 1 and 2 (fresh, zero-filled)
        prompt_len = len(got.prompt_ids)
        keys = layered.lm.backend.cache.key(0)
        assert keys[0, :, :prompt_len].any() and not keys[1:3, :, :prompt_len].any()
        assert layered.lm.backend.prefix == (-1, 0)  # sharing ended with the generation
    kw = dict(temperature=0.9, top_p=0.95, max_new_tokens=40, seed=7)
    one = layered.generate_codes(text, num_candidates=1, **kw)
    four = layered.generate_codes(text, num_candidates=4, **kw)
    assert four.candidates[0].codes.tolist() == one.candidates[0].codes.tolist()
    assert len({tuple(c.codes.tolist()) for c in four.candidates}) == 4


def test_float16_kv_drift_is_reported_by_compare(tiny_bundle, capsys):
    """`llasa-rt compare` takes layered bundles: fp32 graph with float16 KV against float32 KV."""
    from llasa_rt.cli import main
    from llasa_rt.evaluation.drift import measure_drift

    ref = tiny_bundle("h64", "fp32", "layered", "float32")
    cand = tiny_bundle("h64", "fp32", "layered", "float16")
    report = measure_drift(ref, cand, steps=16)
    print(f"float16 KV vs float32 KV: {report}")
    assert 0.0 < report.max_abs_logit_diff < 0.05
    assert report.top1_agreement >= 0.95
    assert main(["compare", str(tiny_bundle("h64", "fp32")), str(ref), "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "KL" in out


def test_manifest_records_the_flavour_and_info_shows_it(tiny_bundle, tmp_path, capsys):
    import shutil

    from llasa_rt.cli import main

    src = tiny_bundle("h64", "fp32", "layered")
    manifest = json.loads((src / "manifest.json").read_text())
    lm = manifest["graphs"]["lm"]
    layers = manifest["model"]["num_layers"]
    assert lm["details"]["flavour"] == "ort-cpu-layered"
    assert lm["details"]["segments"] == [f"lm.{i}.onnx" for i in range(layers + 1)]
    assert list(lm["files"]) == [*lm["details"]["segments"], "lm.layered.data"]  # one data file for all
    assert manifest["model"]["kv_dtype"] == "float16"  # the layered default
    assert main(["info", str(src), "--fast"]) == 0
    assert f"{layers + 1} segments" in capsys.readouterr().out

    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    lm["details"]["segments"] = lm["details"]["segments"][:-1]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"details\.segments"):
        Bundle.open(broken, verify="fast")


def test_fused_export_refuses_another_kv_dtype(tiny_checkpoint, tmp_path, capsys):
    from llasa_rt.cli import main

    code = main(["export", "--model", str(tiny_checkpoint("h64")), "--out", str(tmp_path / "b"),
                 "--kv-dtype", "float16"])
    assert code != 0
    assert "--lm-flavour layered" in capsys.readouterr().err
