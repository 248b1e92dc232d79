"""Continuous batching: requests that join and leave between steps get exactly what they get alone."""

from __future__ import annotations

import numpy as np
import pytest

import llasa_rt
from llasa_rt.batching import RequestBatcher
from llasa_rt.errors import InputError

REQUESTS = [
    # (text, options, joins at step)
    ("The first request starts alone.", dict(seed=1, temperature=0.8, max_new_tokens=40), 0),
    ("A second one, greedy, arrives later.", dict(seed=2, temperature=0.0, max_new_tokens=25, min_new_tokens=25), 3),
    ("Third: two candidates with top-k and a penalty.",
     dict(seed=3, temperature=1.0, top_k=50, repetition_penalty=1.2, num_candidates=2, max_new_tokens=30), 3),
    ("The fourth request has a much longer prompt than the others, so that its prefill takes several chunks of "
     "the scheduler and runs while the others keep decoding.", dict(seed=4, top_p=0.9, max_new_tokens=20), 9),
]


@pytest.fixture(scope="module", params=["fused", "layered"])
def engine(tiny_bundle, request):
    return llasa_rt.Engine(tiny_bundle("h64", "fp32", request.param), threads=2)


def test_requests_joining_at_different_steps_equal_their_solo_runs(engine):
    batcher = RequestBatcher(engine, max_batch=6, prefill_chunk=16)
    handles: dict[int, object] = {}
    step = 0
    while len(handles) < len(REQUESTS) or batcher.scheduler.running or batcher.scheduler.queued:
        for i, (text, opts, at) in enumerate(REQUESTS):
            if at == step and i not in handles:
                handles[i] = batcher.submit(text, llasa_rt.GenerationOptions(**opts))
        batcher.step()
        step += 1
        assert step < 500
    max_live = batcher.step_tokens / max(1, batcher.steps)
    print(f"{step} steps, mean live rows per step {max_live:.2f}")
    for i, (text, opts, _) in enumerate(REQUESTS):
        result = handles[i].wait(timeout=0)
        alone = engine.generate_codes(text, llasa_rt.GenerationOptions(**opts))
        assert [c.tokens.tolist() for c in result.candidates] == [c.codes.tolist() for c in alone.candidates], i
        assert result.codes.tolist() == alone.codes.tolist()
        np.testing.assert_allclose([c.logprob for c in result.candidates], [c.logprob for c in alone.candidates],
                                   rtol=1e-6)  # batch shapes change fp32 rounding, never a code
        assert result.timings["decode_steps"] > 0
    # requests really shared steps: some step ran rows of more than one request
    assert any(handles[i].result.timings["shared_rows"] > 0 for i in handles)


def test_streamed_final_codes_add_up_and_the_loop_thread_serves_concurrent_requests(engine):
    batcher = RequestBatcher(engine, max_batch=4).start()
    try:
        handles = [batcher.submit(t, llasa_rt.GenerationOptions(**o)) for t, o, _ in REQUESTS[:2]]
        for h in handles:
            streamed = [c for c in h.codes(timeout=60)]
            assert np.concatenate(streamed).tolist() == h.result.codes.tolist()
    finally:
        batcher.close()


def test_cancel_frees_slots_for_the_next_request(engine):
    batcher = RequestBatcher(engine, max_batch=2)
    long = batcher.submit("Cancel me.", llasa_rt.GenerationOptions(seed=5, num_candidates=2, max_new_tokens=400,
                                                                 min_new_tokens=400))
    waiting = batcher.submit("I wait for slots.", llasa_rt.GenerationOptions(seed=6, max_new_tokens=10))
    for _ in range(5):
        batcher.step()
    assert batcher.scheduler.live_slots == 2 and batcher.queued == 1  # the second request waits: no slot free
    assert long.cancel()
    batcher.step()
    result = long.wait(timeout=0)
    assert result.cancelled and all(len(c.tokens) < 400 for c in result.candidates)
    for _ in range(40):
        batcher.step()
    done = waiting.wait(timeout=0)
    alone = engine.generate_codes("I wait for slots.", llasa_rt.GenerationOptions(seed=6, max_new_tokens=10))
    assert done.codes.tolist() == alone.codes.tolist() and not done.cancelled
    assert batcher.scheduler.idle and batcher.scheduler.live_slots == 0
    assert not long.cancel()  # already ended


def test_bad_requests_are_refused_before_queueing(engine):
    batcher = RequestBatcher(engine, max_batch=2)
    with pytest.raises(InputError, match="does not fit the 2 KV slots"):
        batcher.submit("hi", llasa_rt.GenerationOptions(num_candidates=3))
    with pytest.raises(InputError, match="text is empty"):
        batcher.submit("  ")
    with pytest.raises(InputError, match="search cannot share batched steps"):
        batcher.submit("hi", llasa_rt.GenerationOptions(search="best-of-2"))
    assert batcher.scheduler.idle
