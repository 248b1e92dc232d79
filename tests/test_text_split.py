"""split_text: sentence-first splitting of long text."""

from __future__ import annotations

import pytest

from llasa_rt.text import split_text


def test_short_text_is_one_piece():
    assert split_text("Hello there. How are you?") == ["Hello there. How are you?"]


def test_sentences_are_packed_up_to_the_limit():
    text = " ".join(f"Sentence {i} is short." for i in range(20))
    pieces = split_text(text, max_chars=60)
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces) == text
    assert all(p.endswith(".") for p in pieces)  # cut only at sentence ends


def test_long_sentence_is_cut_at_clauses_then_words():
    clause = "this part has several words in it"
    text = ", ".join([clause] * 12) + "."
    pieces = split_text(text, max_chars=80)
    assert all(len(p) <= 80 for p in pieces) and len(pieces) > 1
    assert " ".join(pieces) == text
    words = " ".join(["word"] * 100)
    assert all(len(p) <= 50 for p in split_text(words, max_chars=50))


def test_paragraphs_and_cjk():
    pieces = split_text("第一句。第二句！\n\nA new paragraph starts here.", max_chars=30)
    assert pieces == ["第一句。第二句！", "A new paragraph starts here."]


def test_blank_and_bad_limit():
    assert split_text("   \n ") == []
    with pytest.raises(ValueError, match="max_chars"):
        split_text("hi", max_chars=5)
