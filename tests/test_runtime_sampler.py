"""The C++ sampler against a NumPy reference of Hugging Face semantics (and that reference against transformers)."""

from __future__ import annotations

import numpy as np
import pytest
import runtime_sampler_reference as ref

from llasa_rt import InputError
from llasa_rt import _core as core
from llasa_rt.layout import LLASA_TOKENS

ROWS = LLASA_TOKENS.head_rows
END = ROWS - 1
# The core computes exp in float32 (like torch's float32 softmax in transformers), the reference in float64: the
# probabilities agree to ~1e-7 relative (more for rows ~70 nats below the top, where the float32 argument of exp
# loses digits; hence an absolute floor), the raw log-probs to ~1e-7 absolute. Supports and choices agree exactly.
PROB_RTOL = 2e-6
PROB_ATOL = 1e-15
LOGPROB_ABS = 1e-6

OPTION_SETS = {
    "plain": ref.Options(),
    "greedy": ref.Options(temperature=0.0),
    "greedy+penalty": ref.Options(temperature=0.0, repetition_penalty=1.3),
    "temperature": ref.Options(temperature=0.7),
    "hot": ref.Options(temperature=1.6),
    "top_k": ref.Options(top_k=50),
    "top_k_large": ref.Options(top_k=5000),
    "top_p": ref.Options(top_p=0.9),
    "top_p_flat_tail": ref.Options(top_p=0.999),
    "min_p": ref.Options(min_p=0.05),
    "penalty": ref.Options(repetition_penalty=1.2),
    "penalty_reward": ref.Options(repetition_penalty=0.8),
    "min_new_tokens": ref.Options(min_new_tokens=5),
    "llasa_card": ref.Options(temperature=0.8, top_p=1.0),
    "everything": ref.Options(
        temperature=0.9, top_k=400, top_p=0.95, min_p=0.02, repetition_penalty=1.1, min_new_tokens=3
    ),
}


def to_core(o: ref.Options) -> core.SamplingOptions:
    return core.SamplingOptions(
        temperature=o.temperature,
        top_k=o.top_k,
        top_p=o.top_p,
        min_p=o.min_p,
        repetition_penalty=o.repetition_penalty,
        min_new_tokens=o.min_new_tokens,
        max_new_tokens=o.max_new_tokens,
        seed=o.seed,
    )


def random_logits(seed: int, scale: float = 3.0, rows: int = ROWS) -> np.ndarray:
    """Peaked enough that top-p/min-p cut somewhere interesting; END gets a competitive logit."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(rows) * scale).astype(np.float32)
    x[-1] = np.float32(x.max() - 1.0)
    return x


def history_for(seed: int, logits: np.ndarray) -> np.ndarray:
    """Rows already in the sequence, with duplicates and some of the most likely rows (so the penalty matters)."""
    rng = np.random.default_rng(seed + 1000)
    top = np.argsort(logits)[-20:]
    return np.concatenate([rng.integers(0, ROWS - 1, 30), top[::2], top[::2]]).astype(np.int32)


@pytest.fixture(scope="module")
def sampler() -> core.testing.Sampler:
    return core.testing.Sampler(rows=ROWS)


# ---- the reference against transformers' own processors ------------------------------------------------------


def hf_distribution(logits: np.ndarray, history: np.ndarray, step: int, o: ref.Options) -> np.ndarray:
    """transformers' processors in generate()'s order, on float64 scores, then softmax (or argmax for greedy)."""
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    processors = lp.LogitsProcessorList()
    if o.repetition_penalty != 1.0:
        processors.append(lp.RepetitionPenaltyLogitsProcessor(penalty=float(o.repetition_penalty)))
    if o.min_new_tokens > 0:
        # generate() counts new tokens as input_ids length minus the prompt length.
        processors.append(lp.MinNewTokensLengthLogitsProcessor(len(history) - step, o.min_new_tokens, END))
    if o.temperature != 0:
        if o.temperature != 1.0:
            processors.append(lp.TemperatureLogitsWarper(float(o.temperature)))
        if o.top_k:
            processors.append(lp.TopKLogitsWarper(top_k=o.top_k))
        if o.top_p < 1.0:
            processors.append(lp.TopPLogitsWarper(top_p=o.top_p))
        if o.min_p > 0:
            processors.append(lp.MinPLogitsWarper(min_p=o.min_p))
    input_ids = torch.tensor(np.asarray(history, dtype=np.int64))[None, :]
    scores = processors(input_ids, torch.tensor(logits.astype(np.float64))[None, :])[0]
    if o.temperature == 0:
        p = np.zeros(len(logits))
        p[int(torch.argmax(scores))] = 1.0
        return p
    return torch.softmax(scores, dim=-1).numpy()


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_matches_transformers_processors(name: str, seed: int) -> None:
    o = OPTION_SETS[name]
    logits = random_logits(seed).astype(np.float64)
    history = history_for(seed, logits)
    step = 2  # Below min_new_tokens where it is set: END must be masked.
    expected = hf_distribution(logits, history, step, o)
    got = ref.distribution(logits, history, step, o, dtype=np.float64)
    np.testing.assert_array_equal(got > 0, expected > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


# ---- the C++ sampler against the reference ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distribution_matches_reference(sampler: core.testing.Sampler, name: str, seed: int) -> None:
    o = OPTION_SETS[name]
    logits = random_logits(seed, scale=[3.0, 1.0, 6.0][seed])
    history = history_for(seed, logits)
    expected = ref.distribution(logits, history, 2, o)
    got = sampler.distribution(logits[None, :], [history], np.array([2]), to_core(o))[0]
    np.testing.assert_array_equal(got > 0, expected > 0)
    np.testing.assert_allclose(got, expected, rtol=PROB_RTOL, atol=PROB_ATOL)


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_choices_and_logprobs_match_reference(sampler: core.testing.Sampler, name: str) -> None:
    o = OPTION_SETS[name]
    o = ref.Options(**{**o.__dict__, "seed": 1234})
    batch = 12
    logits = np.stack([random_logits(100 + b, scale=2.0) for b in range(batch)])
    histories = [history_for(b, logits[b]) for b in range(batch)]
    uids = np.arange(batch, dtype=np.uint64) * 7 + 3
    steps = np.arange(batch, dtype=np.int64)
    rows, logprobs = sampler.sample(logits, histories, uids, steps, to_core(o))
    for b in range(batch):
        row, logprob = ref.sample(logits[b], histories[b], int(uids[b]), int(steps[b]), o)
        assert rows[b] == row, f"batch row {b}"
        assert logprobs[b] == pytest.approx(logprob, abs=LOGPROB_ABS)


def test_draws_follow_the_distribution(sampler: core.testing.Sampler) -> None:
    """Over many uids, the empirical frequencies of a small distribution match its probabilities."""
    logits = np.full(ROWS, -np.inf, dtype=np.float32)
    logits[[10, 20, 30, END]] = np.log(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    n = 20000
    rows, _ = sampler.sample(
        np.repeat(logits[None], n, axis=0), [[]] * n, np.arange(n, dtype=np.uint64), np.zeros(n, np.int64),
        core.SamplingOptions(seed=5),
    )
    freq = np.array([(rows == r).mean() for r in (10, 20, 30, END)])
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)


def test_uniform_draw_matches_reference_rng() -> None:
    for seed, uid, step in [(0, 0, 0), (1, 2, 3), (2**63 + 5, 17, 1999), (42, 2**40, 7)]:
        assert core.testing.uniform_draw(seed, uid, step) == ref.uniform_draw(seed, uid, step)


# ---- ties and degenerate inputs ---------------------------------------------------------------------------------


def support(p: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(p)]


def dist(sampler: core.testing.Sampler, logits: np.ndarray, o: ref.Options, history=(), step: int = 0) -> np.ndarray:
    got = sampler.distribution(logits[None, :], [np.asarray(history, np.int32)], np.array([step]), to_core(o))[0]
    expected = ref.distribution(logits, np.asarray(history, np.int64), step, o)
    np.testing.assert_array_equal(got > 0, expected > 0)
    np.testing.assert_allclose(got, expected, rtol=PROB_RTOL, atol=PROB_ATOL)
    return got


def test_top_k_keeps_every_tie_at_the_kth_value(sampler: core.testing.Sampler) -> None:
    logits = np.full(ROWS, -5.0, dtype=np.float32)
    logits[[3, 9]] = 4.0
    logits[[100, 200, 300, 400]] = 2.0  # The 3rd..6th largest are tied: top_k=3 keeps all four.
    p = dist(sampler, logits, ref.Options(top_k=3))
    assert support(p) == [3, 9, 100, 200, 300, 400]


def test_top_p_boundary_inside_a_tie_group_follows_the_stable_sort(sampler: core.testing.Sampler) -> None:
    # Four equal rows (probability 1/4 each). Ascending stable order is 10, 20, 30, 40 with cumulative 1/4, 1/2, ...
    # top_p = 0.5 removes rows whose cumulative <= 0.5: 10 and 20 (exactly at the boundary), keeping 30 and 40.
    logits = np.full(ROWS, -np.inf, dtype=np.float32)
    logits[[10, 20, 30, 40]] = 1.5
    assert support(dist(sampler, logits, ref.Options(top_p=0.5))) == [30, 40]
    assert support(dist(sampler, logits, ref.Options(top_p=0.75))) == [20, 30, 40]
    assert support(dist(sampler, logits, ref.Options(top_p=0.5000001))) == [20, 30, 40]


def test_tiny_top_p_keeps_only_the_largest_and_on_ties_the_last_in_sorted_order(sampler: core.testing.Sampler) -> None:
    logits = random_logits(3)
    assert support(dist(sampler, logits, ref.Options(top_p=1e-9))) == [int(np.argmax(logits))]
    logits[[5, 50, 500]] = logits.max() + 1.0
    assert support(dist(sampler, logits, ref.Options(top_p=1e-9))) == [500]


def test_all_logits_equal(sampler: core.testing.Sampler) -> None:
    logits = np.zeros(ROWS, dtype=np.float32)
    p = dist(sampler, logits, ref.Options())
    np.testing.assert_allclose(p, 1.0 / ROWS, rtol=PROB_RTOL)
    assert support(dist(sampler, logits, ref.Options(top_k=7))) == list(range(ROWS))  # All tied: all kept.
    assert len(support(dist(sampler, logits, ref.Options(top_p=0.5)))) == ROWS - int(ROWS * 0.5)
    assert support(dist(sampler, logits, ref.Options(temperature=0))) == [0]  # argmax: first index.


def test_minus_inf_rows_are_never_chosen(sampler: core.testing.Sampler) -> None:
    logits = random_logits(4)
    logits[::2] = -np.inf
    p = dist(sampler, logits, ref.Options(temperature=1.3, top_k=100, top_p=0.9, min_p=0.01, repetition_penalty=1.2),
             history=[0, 2, 4, 1])
    assert not p[::2].any()
    n = 64
    rows, logprobs = sampler.sample(
        np.repeat(logits[None], n, 0), [[]] * n, np.arange(n, dtype=np.uint64), np.zeros(n, np.int64),
        core.SamplingOptions(seed=9),
    )
    assert (rows % 2 == 1).all() and np.isfinite(logprobs).all()


def test_min_new_tokens_masks_end_until_reached(sampler: core.testing.Sampler) -> None:
    logits = np.full(ROWS, -3.0, dtype=np.float32)
    logits[END] = 30.0  # END would be certain.
    o = ref.Options(min_new_tokens=4)
    for step in range(4):
        assert dist(sampler, logits, o, step=step)[END] == 0.0
    assert dist(sampler, logits, o, step=4)[END] == pytest.approx(1.0)
    assert dist(sampler, logits, ref.Options(temperature=0, min_new_tokens=4), step=3)[END] == 0.0


def test_repetition_penalty_divides_positive_multiplies_negative_once_per_row(sampler: core.testing.Sampler) -> None:
    logits = np.full(ROWS, -np.inf, dtype=np.float32)
    logits[[1, 2, 3]] = [2.0, -1.0, 0.5]
    # Row 1 three times, row 2 twice: still penalised once. Greedy with penalty 5: 2/5=0.4 < 0.5, so row 3 wins.
    p = dist(sampler, logits, ref.Options(temperature=0, repetition_penalty=5.0), history=[1, 1, 1, 2, 2])
    assert support(p) == [3]
    p = dist(sampler, logits, ref.Options(repetition_penalty=2.0), history=[1, 1, 2])
    expected = np.exp([1.0, -2.0, 0.5]) / np.exp([1.0, -2.0, 0.5]).sum()
    np.testing.assert_allclose(p[[1, 2, 3]], expected, rtol=PROB_RTOL)


def test_greedy_picks_the_first_of_tied_maxima_and_reports_raw_logprob(sampler: core.testing.Sampler) -> None:
    logits = random_logits(6)
    logits[[7, 70]] = logits.max() + 2.0
    rows, logprobs = sampler.sample(logits[None], [[]], np.array([0], np.uint64), np.array([0]),
                                    core.SamplingOptions(temperature=0))
    assert rows[0] == 7
    assert logprobs[0] == pytest.approx(ref.raw_logprobs(logits)[7], abs=LOGPROB_ABS)


@pytest.mark.parametrize(
    ("logits_fn", "options", "message"),
    [
        (lambda x: np.full_like(x, -np.inf), ref.Options(), "every logit is -inf"),
        (lambda x: np.where(np.arange(len(x)) == 5, np.nan, x).astype(np.float32), ref.Options(), "row 5 is NaN"),
        (lambda x: np.where(np.arange(len(x)) == 9, np.inf, x).astype(np.float32), ref.Options(), r"row 9 is \+inf"),
        (
            lambda x: np.where(np.arange(len(x)) == END, 1.0, -np.inf).astype(np.float32),
            ref.Options(min_new_tokens=3),
            "no row is left",
        ),
        (
            lambda x: np.where(np.arange(len(x)) == END, 1.0, -np.inf).astype(np.float32),
            ref.Options(temperature=0, min_new_tokens=3),
            "no row is left",
        ),
    ],
)
def test_degenerate_logits_raise_clear_errors(sampler: core.testing.Sampler, logits_fn, options, message: str) -> None:
    logits = logits_fn(random_logits(7))
    with pytest.raises(InputError, match=message):
        sampler.sample(logits[None], [[]], np.array([0], np.uint64), np.array([0]), to_core(options))


def test_only_end_left_after_min_new_tokens_is_chosen(sampler: core.testing.Sampler) -> None:
    logits = np.where(np.arange(ROWS) == END, 1.0, -np.inf).astype(np.float32)
    rows, logprobs = sampler.sample(logits[None], [[]], np.array([0], np.uint64), np.array([3]),
                                    core.SamplingOptions(min_new_tokens=3, top_p=0.5, top_k=2))
    assert rows[0] == END and logprobs[0] == 0.0


def test_history_rows_out_of_range_are_rejected(sampler: core.testing.Sampler) -> None:
    with pytest.raises(InputError, match="history row 65537 outside"):
        sampler.sample(random_logits(0)[None], [[65537]], np.array([0], np.uint64), np.array([0]),
                       core.SamplingOptions(repetition_penalty=1.1))


def test_logits_shape_is_checked(sampler: core.testing.Sampler) -> None:
    with pytest.raises(InputError, match=r"shape \[batch, 65537\], got \[1, 100\]"):
        sampler.sample(np.zeros((1, 100), np.float32), [[]], np.array([0], np.uint64), np.array([0]),
                       core.SamplingOptions())


# ---- determinism: batch size, order, threads ---------------------------------------------------------------------


def test_draws_depend_only_on_seed_uid_and_step() -> None:
    o = core.SamplingOptions(temperature=0.9, top_p=0.95, top_k=200, seed=77)
    batch = 8
    logits = np.stack([random_logits(200 + b, scale=1.5) for b in range(batch)])
    histories = [history_for(b, logits[b]) for b in range(batch)]
    uids = np.arange(batch, dtype=np.uint64) + 11
    steps = np.arange(batch, dtype=np.int64) * 3
    one = core.testing.Sampler(rows=ROWS, threads=1)
    rows, logprobs = one.sample(logits, histories, uids, steps, o)
    # Run to run.
    again, _ = one.sample(logits, histories, uids, steps, o)
    np.testing.assert_array_equal(rows, again)
    # One at a time (batch 1).
    for b in range(batch):
        single, _ = one.sample(logits[b : b + 1], [histories[b]], uids[b : b + 1], steps[b : b + 1], o)
        assert single[0] == rows[b]
    # Reversed order, and with 2 or 3 threads.
    perm = np.arange(batch)[::-1]
    for threads in (1, 2, 3):
        s = core.testing.Sampler(rows=ROWS, threads=threads)
        got, got_lp = s.sample(logits[perm], [histories[i] for i in perm], uids[perm], steps[perm], o)
        np.testing.assert_array_equal(got, rows[perm])
        np.testing.assert_array_equal(got_lp, logprobs[perm])
    # Another seed changes the draws.
    o.seed = 78
    other, _ = one.sample(logits, histories, uids, steps, o)
    assert (other != rows).any()


# ---- option validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, r"temperature=-0.1 is invalid: must be a finite number >= 0"),
        ({"temperature": float("nan")}, r"temperature=nan is invalid"),
        ({"top_p": 0.0}, r"top_p=0 is invalid: must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p=1.5 is invalid: must be in \(0, 1\]"),
        ({"top_k": -1}, r"top_k=-1 is invalid: must be >= 0"),
        ({"min_p": 1.1}, r"min_p=1.1 is invalid: must be in \[0, 1\]"),
        ({"repetition_penalty": 0.0}, r"repetition_penalty=0 is invalid: must be a finite number > 0"),
        ({"repetition_penalty": -1.0}, r"repetition_penalty=-1 is invalid"),
        ({"min_new_tokens": -2}, r"min_new_tokens=-2 is invalid: must be >= 0"),
        ({"max_new_tokens": -1}, r"max_new_tokens=-1 is invalid: must be >= 0"),
        ({"min_new_tokens": 10, "max_new_tokens": 5}, r"min_new_tokens=10 is invalid: must be <= max_new_tokens=5"),
    ],
)
def test_bad_options_raise_value_errors_naming_option_and_range(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        core.SamplingOptions(**kwargs)
    assert isinstance(info.value, InputError)
    # Options mutated after construction are checked again when used.
    o = core.SamplingOptions()
    for key, value in kwargs.items():
        setattr(o, key, value)
    with pytest.raises(InputError, match=message):
        core.testing.Sampler(rows=ROWS).sample(random_logits(0)[None], [[]], np.array([0], np.uint64), np.array([0]), o)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        core.SamplingOptions(0.5)  # type: ignore[misc]


def test_a_temperature_so_small_that_logits_overflow_is_rejected(sampler: core.testing.Sampler) -> None:
    with pytest.raises(InputError, match="overflows the float32 logits; use a larger temperature, or 0 for greedy"):
        sampler.sample(random_logits(0)[None], [[]], np.array([0], np.uint64), np.array([0]),
                       core.SamplingOptions(temperature=1e-40))
