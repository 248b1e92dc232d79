"""The exported fp32 LM graph is the model: logits and greedy tokens equal transformers'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lm_helpers import HEAD_IDS, LLASA_TOKENS, GrowingPastLm, SpeechRowsOnly

PROMPT_LEN = 23
DECODE_STEPS = 30
GREEDY_TOKENS = 50


def _prompt(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    text = rng.integers(0, 128000, size=PROMPT_LEN - 3)
    return np.concatenate([[128000, 128006], text, [128260]]).astype(np.int64)[None]


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_fp32_logits_match_transformers_over_prefill_and_decode(name, tiny_bundle, hf_model):
    lm = GrowingPastLm.from_bundle(tiny_bundle(name, "fp32"))
    model = hf_model(name)
    rows = torch.as_tensor(HEAD_IDS)
    ids = _prompt()
    past, worst = None, 0.0
    with torch.no_grad():
        for step in range(DECODE_STEPS + 1):
            ours = lm.step(ids)
            out = model(input_ids=torch.as_tensor(ids), past_key_values=past, use_cache=True)
            past = out.past_key_values
            ref = out.logits[:, -1, :][:, rows].numpy()
            assert ours.shape == (1, LLASA_TOKENS.head_rows)
            worst = max(worst, float(np.abs(ours - ref).max()))
            # Continue both with a sampled (not argmax) row so the 30 steps visit varied tokens.
            row = int(np.random.default_rng(step).integers(0, LLASA_TOKENS.head_rows))
            ids = np.array([[HEAD_IDS[row]]], np.int64)
    print(f"{name}: max |logit diff| over prefill + {DECODE_STEPS} decode steps = {worst:.3g}")
    assert worst <= 1e-4


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_fp32_greedy_tokens_match_transformers_generate(name, tiny_bundle, hf_model):
    from transformers import LogitsProcessorList

    model = hf_model(name)
    prompt = _prompt(seed=11)
    with torch.no_grad():
        ref = model.generate(torch.as_tensor(prompt), attention_mask=torch.ones_like(torch.as_tensor(prompt)),
                             do_sample=False, max_new_tokens=GREEDY_TOKENS, min_new_tokens=GREEDY_TOKENS,
                             eos_token_id=LLASA_TOKENS.end_id, pad_token_id=LLASA_TOKENS.end_id,
                             logits_processor=LogitsProcessorList([SpeechRowsOnly(model.config.vocab_size)]))
    ref_tokens = ref[0, prompt.shape[1]:].tolist()

    lm = GrowingPastLm.from_bundle(tiny_bundle(name, "fp32"))
    ours, ids = [], prompt
    for _ in range(GREEDY_TOKENS):
        logits = lm.step(ids)
        logits[0, LLASA_TOKENS.end_row] = -np.inf  # END masked, as min_new_tokens does above
        tok = int(HEAD_IDS[int(np.argmax(logits[0]))])
        ours.append(tok)
        ids = np.array([[tok]], np.int64)
    assert len(set(ref_tokens)) > 5, "degenerate reference: the test would not discriminate"
    assert ours == ref_tokens


def test_batched_rows_equal_single_rows(tiny_bundle):
    """Batch rows are independent: two different prompts in one batch give each prompt's own logits."""
    lm = GrowingPastLm.from_bundle(tiny_bundle("h64", "fp32"))
    a, b = _prompt(1), _prompt(2)
    singles = []
    for p in (a, b):
        lm.reset()
        singles.append(lm.step(p))
    lm.reset(batch=2)
    both = lm.step(np.concatenate([a, b]))
    np.testing.assert_allclose(both, np.concatenate(singles), atol=1e-5)
