"""The search (llasa_rt.search) runs with bundle verifiers by name: the interface it calls is the one built here."""

from __future__ import annotations

import numpy as np

import llasa_rt
from llasa_rt.bundle import Bundle
from llasa_rt.search import Search
from llasa_rt.verifiers import ScoreContext, load_verifier

KW = dict(temperature=1.0, max_new_tokens=60, min_new_tokens=60)


def test_best_of_n_picks_by_the_asr_and_speaker_verifiers(verifier_bundle):
    engine = llasa_rt.Engine(verifier_bundle, threads=2)
    search = Search(strategy="best-of", n=3, orm=("hubert", "ge2e"))
    gen = engine.generate_codes("Pick one.", search=search, seed=4, voice="alice", **KW)
    scored = [c.scores for c in gen.candidates]
    assert all({"orm:hubert", "orm:ge2e"} <= set(s) for s in scored)
    chosen = next(s for s in scored if s["chosen"] == 1.0)
    # the score the search stored is the verifier's own score of the chosen candidate's audio, up to the cost of
    # decoding it for scoring after 25 voice codes (left context) instead of the whole voice prompt
    audio = engine.speak("Pick one.", search=search, seed=4, voice="alice", **KW)
    verifier = load_verifier(Bundle.open(verifier_bundle, verify="fast"), "ge2e")
    ge2e = verifier.score([audio.samples], ScoreContext(text="Pick one.", voice="alice"))[0]
    assert np.isfinite(ge2e) and abs(ge2e - chosen["orm:ge2e"]) < 1e-2


def test_beam_search_prunes_by_a_speaker_verifier(verifier_bundle):
    engine = llasa_rt.Engine(verifier_bundle, threads=2)
    search = Search.parse("beam:2x2:20", prm=("wavlm",), orm=("wav2vec2",))
    gen = engine.generate_codes("Beam.", search=search, seed=2, voice="alice", **KW)
    assert gen.timings["search_rounds"] >= 2
    assert all("orm:wav2vec2" in c.scores for c in gen.candidates)
