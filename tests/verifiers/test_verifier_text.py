"""The ASR verifiers' text normaliser and error rates: one documented normaliser on both sides, WER equal to jiwer's."""

from __future__ import annotations

import random

import pytest

from llasa_rt.verifiers.text import (
    char_error_rate,
    error_rate,
    mostly_cjk,
    normalise_text,
    word_error_rate,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, World!", "hello world"),
    ("  Don\u2019t   STOP -- believing...  ", "don't stop believing"),
    ("'Quoted' words", "quoted words"),
    ("I have 3 apples and 22 oranges.", "i have three apples and twenty two oranges"),
    ("It costs 1,250 dollars, or 3.75 each.", "it costs one thousand two hundred fifty dollars or three point seven "
                                             "five each"),
    ("The 21st of May, the 2nd, the 100th.", "the twenty first of may the second the one hundredth"),
    ("50% off", "fifty percent off"),
    ("In 1999 and 1905 and 2024.", "in nineteen ninety nine and nineteen oh five and twenty twenty four"),
    ("Dr. Smith paid $5.50 at 3:30 pm.", "doctor smith paid five dollars and fifty cents at three thirty p m"),
    ("我有3个苹果。", "我有3个苹果"),  # not English: digits stay as written (on both sides)
    ("Call 007 now", "call zero zero seven now"),
    ("Tom & Jerry", "tom and jerry"),
    ("Ça va? Naïve café.", "ça va naïve café"),
    ("\uff28\uff45\uff4c\uff4c\uff4f", "hello"),  # full-width letters (NFKC)
    ("", ""),
    ("?!...", ""),
])
def test_normaliser_rules(text, expected):
    assert normalise_text(text) == expected


def test_numbers_spell_the_same_on_both_sides():
    """Digits in the text and words in the transcript meet in the middle: a perfect transcript scores WER 0."""
    rate, metric, ref, hyp = error_rate("Meet me at 10:30 on the 3rd floor.",
                                        "MEET ME AT TEN THIRTY ON THE THIRD FLOOR")
    assert (rate, metric) == (0.0, "wer") and ref == hyp


def test_the_reference_picks_the_speller_for_both_sides():
    """The transcript is spelled with the reference's language decision: an English text's digits match the
    words heard; an all-caps CTC transcript is not mistaken for initialisms."""
    assert error_rate("Pay $5 by 9 am.", "PAY FIVE DOLLARS BY NINE A M")[0] == 0.0
    assert error_rate("The US army.", "THE US ARMY")[0] == 0.0
    assert normalise_text("It is 42.") == normalise_text("IT IS FORTY-TWO") == "it is forty two"


def test_cjk_text_uses_character_error_rate():
    rate, metric, ref, _ = error_rate("今天天气很好。", "今天天气不好")
    assert metric == "cer" and ref == "今天天气很好" and rate == pytest.approx(1 / 6)
    assert mostly_cjk("你好吗 ok") is True and mostly_cjk("hello 你") is False
    assert char_error_rate("ab c", "abc") == 0.0


def test_edge_cases_of_error_rates():
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "extra") == 1.0
    assert word_error_rate("a b", "") == 1.0
    assert word_error_rate("a", "a b c") == 2.0  # insertions may exceed 1; scores clip it


def test_word_error_rate_equals_jiwer():
    """Random sentences with substitutions, deletions and insertions: our WER and CER equal jiwer's."""
    jiwer = pytest.importorskip("jiwer", reason="jiwer is part of the `test` extra")
    rng = random.Random(0)
    words = "the a cat dog sat on mat red blue green fast slow one two".split()
    for _ in range(300):
        ref = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 5)):
            op = rng.choice("sdi")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(words)
            elif op == "d" and hyp:
                del hyp[rng.randrange(len(hyp))]
            else:
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(words))
        r, h = " ".join(ref), " ".join(hyp)
        assert word_error_rate(r, h) == pytest.approx(jiwer.wer(r, h) if h else 1.0)
        if h:
            assert char_error_rate(r, h) == pytest.approx(jiwer.cer(r.replace(" ", ""), h.replace(" ", "")))
