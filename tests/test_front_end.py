"""The text front end is on by default for speak / speak_stream / the CLI, and can be switched off."""

from __future__ import annotations

import pytest

import llasa_rt
from llasa_rt.cli import main
from llasa_rt.errors import InputError


@pytest.fixture(scope="module")
def engine(full_bundle):
    return llasa_rt.Engine(full_bundle, threads=2)


def test_speak_spells_out_numbers_unless_told_not_to(engine):
    kw = dict(seed=11, max_new_tokens=12)
    spelled = engine.speak("It costs three dollars.", normalise=False, **kw)
    default = engine.speak("It costs $3.", **kw)
    raw = engine.speak("It costs $3.", normalise=False, **kw)
    assert default.codes.tolist() == spelled.codes.tolist()  # same prompt after normalising
    assert raw.codes.tolist() != spelled.codes.tolist()
    streamed = [c for c in engine.speak_stream("It costs $3.", **kw)]
    assert sum(map(len, streamed)) == len(default.samples)
    with pytest.raises(InputError, match="normalise must be True or False"):
        engine.speak("hi", normalise="yes")


def test_non_english_passes_through(engine):
    assert engine._pieces("价格是3元。", True, 200, "sentences", True) == ["价格是3元。"]
    assert engine._pieces("Il y a 3 chats et le chien.", True, 200, "sentences", True) == [
        "Il y a 3 chats et le chien."]


def test_cli_no_normalise(full_bundle, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert main(["speak", "-b", str(full_bundle), "Pay $3.", "-o", str(a), "--seed", "1", "--max-new-tokens", "8"]) == 0
    assert main(["speak", "-b", str(full_bundle), "Pay $3.", "-o", str(b), "--seed", "1", "--max-new-tokens", "8",
                 "--no-normalise"]) == 0
    assert a.read_bytes() != b.read_bytes()
