"""The exported fp32 LM graph is the model: logits and greedy tokens equal transformers'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llasa_rt.backends import plain_lm_of

from lm_helpers import HEAD_IDS, LLASA_TOKENS, GrowingPastLm, SpeechRowsOnly, random_prompt

PROMPT_LEN = 23
DECODE_STEPS = 30
GREEDY_TOKENS = 50


def _prompt(seed: int = 3) -> np.ndarray:
    return random_prompt(PROMPT_LEN, seed)


@pytest.mark.parametrize("name", ["h64", "h128"])  # tied (1B layout) and untied (3B layout) heads
@pytest.mark.parametrize(("flavour", "batch"), [("fused", 1), ("layered", 1), ("layered", 3)])
def test_fp32_logits_match_transformers_over_prefill_and_decode(name, flavour, batch, tiny_bundle, hf_model):
    """Both LM flavours (layered: segment graphs + the C++ attention kernel, float32 KV); 3 rows = 3 candidates
    of one prompt that continue with different tokens."""
    lm = plain_lm_of(tiny_bundle(name, "fp32", flavour, "float32" if flavour == "layered" else None))
    lm.reset(batch)
    model = hf_model(name)
    rows = torch.as_tensor(HEAD_IDS)
    ids = np.repeat(_prompt(), batch, axis=0)
    past, worst = None, 0.0
    with torch.no_grad():
        for step in range(DECODE_STEPS + 1):
            ours = lm.step(ids)
            out = model(input_ids=torch.as_tensor(ids), past_key_values=past, use_cache=True)
            past = out.past_key_values
            ref = out.logits[:, -1, :][:, rows].numpy()
            assert ours.shape == (batch, LLASA_TOKENS.head_rows)
            worst = max(worst, float(np.abs(ours - ref).max()))
            # Continue with sampled (not argmax) rows so the 30 steps visit varied tokens.
            row = np.random.default_rng(step).integers(0, LLASA_TOKENS.head_rows, size=batch)
            ids = np.asarray(HEAD_IDS)[row].reshape(batch, 1).astype(np.int64)
    print(f"{name} {flavour} x{batch}: max |logit diff| over prefill + {DECODE_STEPS} decode steps = {worst:.3g}")
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
