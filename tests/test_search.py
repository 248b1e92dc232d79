"""Search mechanics with a scorer of known optimum, streaming while searching, the paper's chunking, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import llasa_rt
from llasa_rt.cli import main
from llasa_rt.errors import InputError
from llasa_rt.search import Search, paper_chunks

SEEDS = range(6)


class Multiples:
    """A scorer with a known optimum: the fraction of codes divisible by `m` (1.0 = every code is)."""

    needs_audio = False

    def __init__(self, m: int = 3, name: str = "multiples") -> None:
        self.m, self.name, self.calls, self.batch_sizes = m, name, 0, []

    def score(self, codes, audios, ctx):
        self.calls += 1
        self.batch_sizes.append(len(codes))
        return np.array([float(np.mean(np.asarray(c) % self.m == 0)) if len(c) else 0.0 for c in codes])


@pytest.fixture(scope="module", params=["fused", "layered"])
def engine(tiny_bundle, request):
    return llasa_rt.Engine(tiny_bundle("h64", "fp32", request.param), threads=2)


KW = dict(temperature=1.0, max_new_tokens=60, min_new_tokens=60)


def chosen_score(gen) -> float:
    return float(np.mean(gen.codes % 3 == 0))


def test_best_of_n_picks_the_argmax_and_returns_every_score(engine):
    scorer = Multiples()
    gen = engine.generate_codes("Pick the best one.", search=Search(strategy="best-of", n=8, orm=(scorer,)), seed=1,
                                **KW)
    assert len(gen.candidates) == 8 and scorer.batch_sizes == [8]  # one scorer batch for all candidates
    values = [c.scores["orm:multiples"] for c in gen.candidates]
    assert gen.chosen == int(np.argmax(values)) and gen.codes.tolist() == gen.candidates[gen.chosen].codes.tolist()
    assert values[gen.chosen] == chosen_score(gen)
    assert all({"orm", "mean_logprob", "chosen"} <= set(c.scores) for c in gen.candidates)


def test_mean_chosen_score_rises_with_the_budget(engine):
    means = {}
    for n in (1, 2, 4, 8, 16):
        search = Search(strategy="best-of", n=n, orm=(Multiples(),))
        means[n] = np.mean([chosen_score(engine.generate_codes("Budget.", search=search, seed=s, **KW))
                            for s in SEEDS])
    print("best-of-N mean chosen score:", {n: round(v, 3) for n, v in means.items()})
    # Candidate i draws from stream (seed, i): best-of-2N sees best-of-N's candidates and more (fp32 graph).
    assert all(means[a] <= means[b] for a, b in ((1, 2), (2, 4), (4, 8), (8, 16)))
    assert means[16] > means[1] + 0.05


def test_beam_beats_best_of_n_at_equal_token_budget_and_is_reproducible(engine):
    scorer = Multiples()
    beam = Search.parse("beam:4x4:10", prm=(scorer,), orm=(scorer,))
    best = Search(strategy="best-of", n=16, orm=(scorer,))
    b = [engine.generate_codes("Equal budgets.", search=beam, seed=s, **KW) for s in SEEDS]
    n = [engine.generate_codes("Equal budgets.", search=best, seed=s, **KW) for s in SEEDS]
    mb, mn = np.mean([chosen_score(g) for g in b]), np.mean([chosen_score(g) for g in n])
    print(f"16 live candidates, 60 tokens: beam 4x4 mean chosen score {mb:.3f}, best-of-16 {mn:.3f}")
    assert mb > mn
    assert all(g.timings["search_rounds"] == 5 for g in b)  # rounds at tokens 10, 20, ..., 50
    assert all(g.timings["search_pruned"] > 0 and g.timings["search_forked"] > 0 for g in b)
    again = engine.generate_codes("Equal budgets.", search=beam, seed=SEEDS[0], **KW)
    assert again.codes.tolist() == b[0].codes.tolist()
    assert engine.generate_codes("Equal budgets.", search=beam, seed=99, **KW).codes.tolist() != b[0].codes.tolist()


def test_beam_batches_its_scorer_calls(engine):
    scorer = Multiples()
    engine.generate_codes("Batches.", search=Search.parse("beam:2x4:20", prm=(scorer,)), seed=3, **KW)
    assert scorer.batch_sizes[:2] == [8, 8]  # every live child in one call per round


@pytest.mark.parametrize("layered", [False, True])
def test_streaming_search_plays_the_shared_prefix_early_and_equals_the_choice(layered, full_bundle, request):
    engine = llasa_rt.Engine(request.getfixturevalue("layered_full_bundle") if layered else full_bundle, threads=2)
    search = Search.parse("beam:2x2:10", prm=(Multiples(),), orm=(Multiples(),))
    kw = dict(search=search, seed=5, temperature=1.0, max_new_tokens=120, min_new_tokens=120)
    gen = engine.generate_codes("Stream while searching.", **kw)
    streamed, first_at = [], None
    it = engine._stream_codes("Stream while searching.", None, llasa_rt.GenerationOptions(**kw), 5)
    codes = []
    for piece in it:
        codes.append(piece)
        if first_at is None:
            first_at = len(piece)
    codes = np.concatenate(codes)
    assert codes.tolist() == gen.codes.tolist()  # the streamed codes are the chosen candidate's
    assert first_at < len(gen.codes)  # some codes were final (shared) before the search ended
    streamed = np.concatenate(list(engine.speak_stream("Stream while searching.", **kw)))
    expected = engine.codec.streaming().decode(gen.codes)
    np.testing.assert_allclose(streamed, expected, atol=1e-5)  # = streamed decoding of the chosen codes


def test_speak_report_and_cli_report(full_bundle, tmp_path):
    engine = llasa_rt.Engine(full_bundle, threads=2)
    audio = engine.speak("Report me. Twice over.", search=Search(strategy="best-of", n=3, orm=(Multiples(),)),
                         seed=2, max_new_tokens=20, max_chars=20)
    assert audio.report["search"] == "best-of-3 orm=multiples" and len(audio.report["pieces"]) == 2
    piece = audio.report["pieces"][0]
    assert len(piece["candidates"]) == 3 and piece["candidates"][piece["chosen"]]["scores"]["chosen"] == 1.0
    out, report = tmp_path / "x.wav", tmp_path / "r.json"
    code = main(["speak", "-b", str(full_bundle), "Hello.", "-o", str(out), "--search", "best-of-3",
                 "--max-new-tokens", "10", "--report", str(report), "--seed", "1"])
    assert code == 0 and out.is_file()
    data = json.loads(report.read_text())
    assert data["search"] == "best-of-3" and len(data["pieces"][0]["candidates"]) == 3


def test_paper_chunking():
    short = "A short sentence."
    assert paper_chunks(short) == [short]
    text = ("The first sentence is here. " * 4 + "Then a second part follows, with a comma. " * 3).strip()
    chunks = paper_chunks(text)
    assert len(text) > 200 and len(chunks) == 3 and " ".join(chunks) == " ".join(text.split())
    assert all(c.endswith(".") for c in chunks)  # cut at sentence ends near the equal-length points
    assert len(paper_chunks("x" * 150)) == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(search="best-of-0"), "search n must be an integer in [1, 64]"),
    (dict(search="beam:9x9"), "search keeps 81 live candidates; at most 64"),
    (dict(search="beam:2x2"), "a beam search prunes by process verifiers"),
    (dict(search="greedy"), "unknown search 'greedy'"),
    (dict(search=Search(strategy="best-of", n=2, orm=("nope",))), "verifier 'nope'"),
    (dict(search=3), "search must be a llasa_rt.Search"),
    (dict(search="best-of-2", num_candidates=2), "either num_candidates or a search"),
])
def test_search_bad_input(engine, kwargs, message):
    with pytest.raises(InputError) as info:
        engine.generate_codes("hi", max_new_tokens=5, **kwargs)
    assert message in str(info.value)


def test_search_prm_on_best_of_is_refused():
    with pytest.raises(InputError, match=r"process verifiers .* need a beam search"):
        Search.parse("best-of-4", prm=("speaker",))


@pytest.mark.parametrize(("args", "message"), [
    (["--search", "best-of-0"], "search n must be an integer"),
    (["--search", "beam:2x2:50"], "a beam search prunes by process verifiers"),
    (["--search", "beam:2x2:50", "--prm", "nope"], "verifier 'nope'"),
    (["--search", "nonsense"], "unknown search 'nonsense'"),
    (["--prm", "speaker"], "--prm and --orm need --search"),
    (["--search", "best-of-2", "--candidates", "2"], "either num_candidates or a search"),
    (["--chunking", "paper", "--no-split"], "--chunking paper splits the text"),
])
def test_cli_search_bad_input(full_bundle, tmp_path, capsys, args, message):
    code = main(["speak", "-b", str(full_bundle), "hi", "-o", str(tmp_path / "x.wav"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "x.wav").exists()
