"""The decode loop (prefill once, fork, batched decode over compacted slots, callbacks) on a toy KV-cache model,
checked against independent per-candidate reference loops (NumPy sampler, own KV, no slots)."""

from __future__ import annotations

import numpy as np
import pytest
import runtime_sampler_reference as ref

from llasa_rt import InputError
from llasa_rt import _core as core

from runtime_toy_model import END_ID, NUM_SPEECH, SPEECH_BASE, ToyModel, make_generator, reference_generate

# A Llasa-like prompt: text tokens, then a few voice-prompt speech codes (they count for the repetition penalty).
PROMPT = [128000, 128006, 882, 128007, 271, 128258, 9906, 1917, 128259, 128009, 128006, 78191, 128007, 271, 128260]
PROMPT += [SPEECH_BASE + r for r in (17, 4242, 60001, 17, 999)]
SMAX = 96

SAMPLED = ref.Options(
    temperature=0.9, top_k=3000, top_p=0.95, repetition_penalty=1.1, min_new_tokens=2, max_new_tokens=24, seed=11
)


def to_core(o: ref.Options) -> core.SamplingOptions:
    return core.SamplingOptions(**o.__dict__)


@pytest.fixture(scope="module")
def model() -> ToyModel:
    return ToyModel(seed=0)


@pytest.fixture(scope="module")
def ending_model() -> ToyModel:
    """END becomes the most likely row after any code divisible by 13: candidates finish at data-dependent steps."""
    return ToyModel(seed=1, end_every=13)


def by_uid(result: core.GenerationResult) -> dict[int, core.Candidate]:
    return {c.uid: c for c in result.candidates}


def test_one_candidate_equals_the_reference_loop(ending_model: ToyModel) -> None:
    generator, backend = make_generator(ending_model, slots=1, max_seq_len=SMAX)
    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=1)
    (c,) = result.candidates
    tokens, logprob, reason = reference_generate(ending_model, PROMPT, SAMPLED, uid=0, max_seq_len=SMAX)
    assert c.tokens.tolist() == tokens
    assert c.logprob == pytest.approx(logprob, abs=1e-5)  # float32 exp in the core.
    assert c.finish_reason == reason and c.finished
    # Prefill once at batch 1, then one decode step per further token.
    assert backend.calls[0] == (1, len(PROMPT), 0)
    assert backend.calls[1:] == [(1, 1, len(PROMPT) + i) for i in range(len(backend.calls) - 1)]


def test_every_candidate_of_eight_equals_its_own_reference_loop(ending_model: ToyModel) -> None:
    """Candidates finish at different steps (END), so live ones are compacted into freed slots as they go; each
    must still continue exactly like a lone candidate with its own KV. uid 0 also equals the N = 1 run."""
    generator, backend = make_generator(ending_model, slots=8, max_seq_len=SMAX)
    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=8)
    candidates = by_uid(result)
    assert sorted(candidates) == list(range(8))
    for uid, c in candidates.items():
        tokens, logprob, reason = reference_generate(ending_model, PROMPT, SAMPLED, uid=uid, max_seq_len=SMAX)
        assert c.tokens.tolist() == tokens, f"uid {uid}"
        assert c.logprob == pytest.approx(logprob, abs=1e-5)  # float32 exp in the core.
        assert c.finish_reason == reason
    # The test is only meaningful if candidates finished early out of slot order, so compaction moved KV.
    reasons = [c.finish_reason for c in result.candidates]
    assert reasons.count("end") >= 3 and "max_new_tokens" in reasons
    sizes = result.timings.batch_sizes.tolist()
    assert sizes[0] == 8 and sizes == sorted(sizes, reverse=True) and sizes[-1] < 8
    assert backend.calls[0] == (1, len(PROMPT), 0)  # The prompt is prefilled once, not per candidate.
    single, _ = make_generator(ending_model, slots=1, max_seq_len=SMAX)
    alone = single.generate(PROMPT, options=to_core(SAMPLED), num_candidates=1).candidates[0]
    assert alone.tokens.tolist() == candidates[0].tokens.tolist()


def test_results_are_reproducible_and_independent_of_sampler_threads(ending_model: ToyModel) -> None:
    runs = []
    for threads in (1, 1, 2):
        generator, _ = make_generator(ending_model, slots=6, max_seq_len=SMAX, sampler_threads=threads)
        result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=6)
        runs.append([(c.uid, c.tokens.tolist(), c.logprob, c.finish_reason) for c in result.candidates])
    assert runs[0] == runs[1] == runs[2]
    other = ref.Options(**{**SAMPLED.__dict__, "seed": 12})
    generator, _ = make_generator(ending_model, slots=6, max_seq_len=SMAX)
    changed = generator.generate(PROMPT, options=to_core(other), num_candidates=6)
    assert [c.tokens.tolist() for c in changed.candidates] != [r[1] for r in runs[0]]


def test_a_fork_continues_exactly_like_a_fresh_prefill_of_the_same_prefix(model: ToyModel) -> None:
    generator, backend = make_generator(model, slots=4, max_seq_len=SMAX)
    seen = {}

    def callback(controller: core.GenerationController) -> None:
        if controller.step != 6:
            return
        parent = next(c for c in controller.candidates() if c.uid == 1)
        child_uid = controller.fork(1)
        seen.update(child=child_uid, prefix=parent.tokens.tolist(), live=controller.live_uids())
        # The fork's slot holds exactly the parent's used KV prefix, i.e. the prompt plus all but the last token.
        kv_len = len(PROMPT) + 6 - 1
        slot = controller.live_uids().index(child_uid)
        parent_slot = controller.live_uids().index(1)
        for layer in range(model.layers):
            for buffer in (backend.cache.key(layer), backend.cache.value(layer)):
                np.testing.assert_array_equal(buffer[slot, :, :kv_len], buffer[parent_slot, :, :kv_len])

    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2, callback=callback,
                                callback_every=3)
    candidates = by_uid(result)
    child = candidates[seen["child"]]
    assert seen["child"] == 2 and seen["live"] == [0, 1, 2]
    assert child.tokens[:6].tolist() == seen["prefix"]
    # Fresh prefill of prompt + prefix with the fork's uid continues identically (same draws, same logits).
    tokens, _, reason = reference_generate(model, PROMPT, SAMPLED, uid=2, max_seq_len=SMAX, prefix=seen["prefix"])
    assert child.tokens.tolist() == tokens and child.finish_reason == reason
    # The parent is unaffected by the fork.
    parent_tokens, _, _ = reference_generate(model, PROMPT, SAMPLED, uid=1, max_seq_len=SMAX)
    assert candidates[1].tokens.tolist() == parent_tokens
    # Greedy: the fork and the parent continue identically, like a fresh greedy run on the prefix.
    greedy = ref.Options(temperature=0.0, repetition_penalty=1.3, max_new_tokens=20)
    forked = {}
    result = generator.generate(
        PROMPT, options=to_core(greedy), num_candidates=1, callback_every=5,
        callback=lambda c: forked.setdefault("uid", c.fork(0)) if c.step == 5 else None,
    )
    g = by_uid(result)
    fresh = make_generator(model, slots=1, max_seq_len=SMAX)[0].generate(
        PROMPT + [SPEECH_BASE + t for t in g[0].tokens[:5]],
        options=to_core(ref.Options(temperature=0.0, repetition_penalty=1.3, max_new_tokens=15)),
    )
    assert g[forked["uid"]].tokens[5:].tolist() == fresh.candidates[0].tokens.tolist() == g[0].tokens[5:].tolist()


def test_pruning_keeps_every_survivor_identical_to_an_uncompacted_run(model: ToyModel) -> None:
    generator, _ = make_generator(model, slots=6, max_seq_len=SMAX)
    full = by_uid(generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=6))
    slots_after = {}

    def callback(controller: core.GenerationController) -> None:
        if controller.step == 5:
            controller.prune(1)  # uid 5 moves from slot 5 into slot 1 ...
            controller.prune(3)  # ... and uid 4 from slot 4 into slot 3.
            slots_after["live"] = controller.live_uids()

    pruned = by_uid(generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=6, callback=callback,
                                       callback_every=5))
    assert slots_after["live"] == [0, 5, 2, 4]
    assert sorted(pruned) == [0, 2, 4, 5]
    for uid in (0, 2, 4, 5):
        assert pruned[uid].tokens.tolist() == full[uid].tokens.tolist(), f"uid {uid}"
        tokens, _, _ = reference_generate(model, PROMPT, SAMPLED, uid=uid, max_seq_len=SMAX)
        assert pruned[uid].tokens.tolist() == tokens


def test_stop_from_the_callback(model: ToyModel) -> None:
    generator, _ = make_generator(model, slots=3, max_seq_len=SMAX)
    calls = []

    def callback(controller: core.GenerationController) -> None:
        calls.append((controller.step, controller.done))
        if controller.step == 4:
            controller.stop()

    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=3, callback=callback,
                                callback_every=2)
    assert result.stopped
    assert calls == [(2, False), (4, False), (4, True)]
    assert [(len(c.tokens), c.finish_reason, c.finished) for c in result.candidates] == [(4, "stopped", True)] * 3


def test_streamed_final_codes(model: ToyModel, ending_model: ToyModel) -> None:
    # One candidate: every sampled code is final at once; the stream adds up to the result.
    generator, _ = make_generator(ending_model, slots=2, max_seq_len=SMAX)
    chunks = []
    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=1,
                                callback=lambda c: chunks.append((c.step, c.done, c.new_final_codes.tolist())),
                                callback_every=3)
    assert [c for _, _, chunk in chunks for c in chunk] == result.candidates[0].tokens.tolist()
    assert all(len(chunk) == 3 for step, done, chunk in chunks if not done)
    assert chunks[-1][1] and not any(done for _, done, _ in chunks[:-1])
    # Several candidates: codes are final only where all survivors agree; pruning to one releases its codes.
    generator, _ = make_generator(model, slots=3, max_seq_len=SMAX)
    stream = []

    def callback(controller: core.GenerationController) -> None:
        stream.append((controller.step, controller.final_length, controller.new_final_codes.tolist()))
        if controller.step == 6:
            controller.prune(1)
            controller.prune(2)

    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=3, callback=callback,
                                callback_every=3)
    (winner,) = result.candidates
    assert stream[0] == (3, 0, []) and stream[1] == (6, 0, [])  # uids 0, 1, 2 differ from their first code on.
    assert stream[2][0] == 9 and stream[2][2] == winner.tokens[:9].tolist()
    assert [c for _, _, chunk in stream for c in chunk] == winner.tokens.tolist()


def test_context_full_stops_with_a_clear_reason(model: ToyModel) -> None:
    smax = len(PROMPT) + 10
    generator, backend = make_generator(model, slots=2, max_seq_len=smax)
    no_limit = ref.Options(temperature=0.9, min_new_tokens=10, seed=3)
    result = generator.generate(PROMPT, options=to_core(no_limit), num_candidates=2)
    assert [(len(c.tokens), c.finish_reason) for c in result.candidates] == [(10, "context_full")] * 2
    assert max(past + seq for _, seq, past in backend.calls) <= smax  # Never writes past the cache.
    # max_new_tokens equal to the room left is allowed and reported as that limit.
    exact = ref.Options(temperature=0.9, max_new_tokens=10, min_new_tokens=10, seed=3)
    result = generator.generate(PROMPT, options=to_core(exact), num_candidates=1)
    assert result.candidates[0].finish_reason == "max_new_tokens"


@pytest.mark.parametrize(
    ("prompt", "kwargs", "error", "message"),
    [
        (PROMPT, {"num_candidates": 0}, InputError, r"num_candidates=0 is invalid: must be in \[1, 4\]"),
        (PROMPT, {"num_candidates": 5}, InputError, r"num_candidates=5 is invalid: must be in \[1, 4\]"),
        (PROMPT, {"max_new_tokens": SMAX}, InputError,
         rf"max_new_tokens={SMAX} is invalid: the prompt has {len(PROMPT)} tokens and the context holds {SMAX}, "
         rf"so at most {SMAX - len(PROMPT)} new tokens fit"),
        ([], {}, InputError, "prompt_ids is empty"),
        ([1] * SMAX, {}, InputError, rf"the prompt has {SMAX} tokens but the context .* holds {SMAX}"),
        ([1, -5], {}, InputError, "negative token id -5"),
        (PROMPT, {"callback_every": -1}, InputError, "callback_every=-1 is invalid"),
        (PROMPT, {"callback": 3}, TypeError, "callback must be callable"),
        (PROMPT, {"temperature": -1.0}, InputError, "temperature=-1 is invalid"),
    ],
)
def test_bad_generate_arguments_raise_clear_errors(model: ToyModel, prompt, kwargs, error, message) -> None:
    generator, backend = make_generator(model, slots=4, max_seq_len=SMAX)
    options = core.SamplingOptions()
    call = {"num_candidates": 1}
    for key, value in kwargs.items():
        if hasattr(options, key):
            setattr(options, key, value)
        else:
            call[key] = value
    with pytest.raises(error, match=message):
        generator.generate(prompt, options=options, **call)
    assert backend.calls == []  # Rejected before any model work.


def test_backend_and_callback_errors_propagate_and_the_generator_stays_usable(model: ToyModel) -> None:
    generator, backend = make_generator(model, slots=2, max_seq_len=SMAX)
    original = backend.forward

    def failing(input_ids, past_len, logits):
        if past_len > len(PROMPT) + 2:
            raise ValueError("backend exploded at step 3")
        original(input_ids, past_len, logits)

    backend.forward = failing  # Instance attribute: the trampoline finds it like a method.
    with pytest.raises(ValueError, match="backend exploded at step 3"):
        generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2)
    del backend.forward

    def bad_callback(controller: core.GenerationController) -> None:
        raise KeyError("callback failed")

    with pytest.raises(KeyError, match="callback failed"):
        generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2, callback=bad_callback)
    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2)
    tokens, _, _ = reference_generate(model, PROMPT, SAMPLED, uid=1, max_seq_len=SMAX)
    assert result.candidates[1].tokens.tolist() == tokens


def test_controller_misuse_raises(model: ToyModel) -> None:
    generator, _ = make_generator(model, slots=2, max_seq_len=SMAX)
    kept = []
    errors = []

    def callback(controller: core.GenerationController) -> None:
        kept.append(controller)
        if controller.step == 1:
            for action in (lambda: controller.fork(0), lambda: controller.fork(77), lambda: controller.prune(77),
                           lambda: controller.set_score(77, "wer", 0.1)):
                try:
                    action()
                except InputError as e:
                    errors.append(str(e))
            controller.set_score(0, "wer", 0.25)

    result = generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2, callback=callback)
    assert "all 2 KV slots are live; prune a candidate first" in errors[0]
    assert all("uid=77: no such candidate" in e for e in errors[1:]) and len(errors) == 4
    assert result.candidates[0].scores == {"wer": 0.25}
    with pytest.raises(RuntimeError, match="only valid inside the generation callback"):
        kept[0].fork(0)

    def prune_everything(controller: core.GenerationController) -> None:
        if controller.done:
            controller.prune(0)
            controller.prune(1)

    with pytest.raises(InputError, match=r"uid=1: it is the last surviving candidate; call stop\(\)"):
        generator.generate(PROMPT, options=to_core(SAMPLED), num_candidates=2, callback=prune_everything,
                           callback_every=0)


def test_timings_cover_every_step(model: ToyModel) -> None:
    generator, _ = make_generator(model, slots=2, max_seq_len=SMAX)
    o = ref.Options(temperature=0.9, min_new_tokens=12, max_new_tokens=12, seed=2)
    t = generator.generate(PROMPT, options=to_core(o), num_candidates=2).timings
    assert len(t.forward_seconds) == len(t.core_seconds) == len(t.batch_sizes) == 11
    assert (t.forward_seconds > 0).all() and (t.core_seconds > 0).all() and t.prefill_forward_seconds > 0
    assert t.batch_sizes.tolist() == [2] * 11


def test_kv_cache_and_buffers_are_zero_copy_views(model: ToyModel) -> None:
    cache = core.KvCache(core.KvCacheConfig(num_layers=2, num_kv_heads=2, head_dim=8, slots=3, max_seq_len=16,
                                            dtype="float16"))
    k = cache.key(1)
    assert k.shape == (3, 2, 16, 8) and k.dtype == np.float16 and k.base is cache
    assert k.ctypes.data % 64 == 0 and cache.value(0).ctypes.data % 64 == 0
    k[2, 1, 3] = 7.0
    assert cache.key(1)[2, 1, 3, 0] == 7.0  # Same memory.
    buffers = core.StepBuffers(cache, rows=11)
    assert buffers.logits.shape == (3, 11) and buffers.input_ids.shape == (48,)
    assert buffers.attention_mask.sum() == 48
    with pytest.raises(InputError, match="StepBuffers were made for 3 slots x 16 positions but the KvCache has"):
        other = core.KvCache(core.KvCacheConfig(num_layers=1, num_kv_heads=1, head_dim=2, slots=2, max_seq_len=16))
        core.Backend(other, buffers)
    with pytest.raises(InputError, match="StepBuffers have 11 logits rows but the generator expects"):
        core.Generator(core.Backend(cache, buffers), core.GeneratorConfig(
            speech_token_base=SPEECH_BASE, num_speech_tokens=NUM_SPEECH, end_token_id=END_ID))
    with pytest.raises(TypeError):
        core.GeneratorConfig(sampler_threads=1)  # the token layout has no default: it comes from the manifest


def test_copy_slot_copies_only_the_prefix() -> None:
    cache = core.KvCache(core.KvCacheConfig(num_layers=2, num_kv_heads=3, head_dim=4, slots=3, max_seq_len=10))
    rng = np.random.default_rng(0)
    for layer in range(2):
        for buf in (cache.key(layer), cache.value(layer)):
            buf[...] = rng.standard_normal(buf.shape)
    before = [(cache.key(i).copy(), cache.value(i).copy()) for i in range(2)]
    cache.copy_slot(0, 2, 6)
    for layer in range(2):
        for buf, old in zip((cache.key(layer), cache.value(layer)), before[layer], strict=True):
            np.testing.assert_array_equal(buf[2, :, :6], old[0, :, :6])
            np.testing.assert_array_equal(buf[2, :, 6:], old[2, :, 6:])
            np.testing.assert_array_equal(buf[:2], old[:2])
    with pytest.raises(IndexError, match="slots are"):
        cache.copy_slot(0, 3, 1)


def test_candidate_set_compacts_on_prune_and_finish() -> None:
    cache = core.KvCache(core.KvCacheConfig(num_layers=1, num_kv_heads=1, head_dim=2, slots=4, max_seq_len=8))
    key = cache.key(0)
    s = core.testing.CandidateSet(cache)
    s.reset(8)
    root = s.add_root()
    key[0, 0, :5] = 1.0
    s.kv_length = 5
    uids = [root] + [s.fork(root) for _ in range(3)]
    assert s.live_uids() == uids == [0, 1, 2, 3]
    for slot in range(4):
        key[slot, 0, :5] = slot + 10  # Mark each slot's prefix.
    s.prune(1)  # uid 3 (slot 3) moves into slot 1 with its prefix.
    assert s.live_uids() == [0, 3, 2]
    np.testing.assert_array_equal(key[1, 0, :5], 13.0)
    s.finish(0, "end")  # uid 2 (slot 2) moves into slot 0.
    assert s.live_uids() == [2, 3]
    np.testing.assert_array_equal(key[0, 0, :5], 12.0)
    assert [(c.uid, c.finished, c.finish_reason, c.slot) for c in s.candidates()] == [
        (0, True, "end", -1), (2, False, "none", 0), (3, False, "none", 1)]
    with pytest.raises(InputError, match="uid=0: it has finished"):
        s.fork(0)


def test_end_token_in_the_prompt_counts_as_history() -> None:
    """Repetition-penalty history of a prompt includes its speech codes and END (transformers penalises every
    prompt token; other tokens are not rows)."""
    model = ToyModel(seed=4)
    generator, _ = make_generator(model, slots=1, max_seq_len=SMAX)
    prompt = [*PROMPT, END_ID]
    o = ref.Options(temperature=0.0, repetition_penalty=50.0, max_new_tokens=8)
    got = generator.generate(prompt, options=to_core(o)).candidates[0].tokens.tolist()
    assert got == reference_generate(model, prompt, o, uid=0, max_seq_len=SMAX)[0]


def test_generate_releases_the_gil_outside_python_calls() -> None:
    """A Python thread woken during generation runs while the core works. The switch interval is raised so that the
    interpreter never forces a GIL hand-over: if generate held the GIL in C++, the woken thread could only run
    after generate returned."""
    import sys
    import threading

    model = ToyModel(seed=2)
    generator, backend = make_generator(model, slots=8, max_seq_len=len(PROMPT) + 200)
    state = {"steps": 0, "helper_saw": None}
    wake = threading.Event()

    def helper() -> None:
        wake.wait()
        state["helper_saw"] = state["steps"]

    original = backend.forward

    def forward(input_ids, past_len, logits):
        if past_len == 0:
            original(input_ids, past_len, logits)
            logits[:, -1] = -np.inf
        state["steps"] += 1  # Decode steps do nothing that could release the GIL from Python.

    backend.forward = forward

    def callback(controller: core.GenerationController) -> None:
        if controller.step == 5:
            wake.set()

    thread = threading.Thread(target=helper)
    thread.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        o = core.SamplingOptions(temperature=0.9, top_p=0.95, max_new_tokens=150, seed=1)
        generator.generate(PROMPT, options=o, num_candidates=8, callback=callback, callback_every=5)
    finally:
        sys.setswitchinterval(interval)
    thread.join()
    assert state["steps"] >= 100
    assert state["helper_saw"] is not None and state["helper_saw"] < 80, state


def test_generate_cannot_be_reentered_from_its_callback(model: ToyModel) -> None:
    generator, _ = make_generator(model, slots=2, max_seq_len=SMAX)

    def callback(controller: core.GenerationController) -> None:
        generator.generate(PROMPT, options=to_core(SAMPLED))

    with pytest.raises(RuntimeError, match="Generate is already running on this Generator"):
        generator.generate(PROMPT, options=to_core(SAMPLED), callback=callback)
    assert len(generator.generate(PROMPT, options=to_core(SAMPLED)).candidates) == 1  # Usable afterwards.


def test_kv_cache_allocation_failure_names_the_shape_and_what_to_reduce() -> None:
    huge = core.KvCacheConfig(num_layers=1 << 30, num_kv_heads=1 << 20, head_dim=1 << 20, slots=8,
                              max_seq_len=1 << 30)
    with pytest.raises(MemoryError, match=r"KV cache size overflows: .*\[slots 8, kv_heads 1048576, max_seq_len "
                                          r"1073741824, head_dim 1048576\] float32; reduce slots or max_seq_len"):
        core.KvCache(huge)
    from pathlib import Path

    overcommit = Path("/proc/sys/vm/overcommit_memory")
    if not overcommit.exists() or overcommit.read_text().strip() == "1":
        pytest.skip("the kernel may overcommit every mapping: a too-large cache cannot be made to fail here")
    too_big = core.KvCacheConfig(num_layers=64, num_kv_heads=64, head_dim=256, slots=256, max_seq_len=1 << 20)
    with pytest.raises(MemoryError, match=r"cannot allocate the KV cache: 64 layers x \(K, V\) x \[slots 256, .*GiB"
                                          r".*; reduce slots \(candidates\) or max_seq_len"):
        core.KvCache(too_big)
