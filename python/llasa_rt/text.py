"""Splitting long text into pieces Llasa speaks well, at sentence (then clause, then word) boundaries.

Llasa was trained on utterances that fit a 2,048-token context (about 30-40 s of speech), and its paper
reports lower error rates when long inputs are spoken in chunks. Each piece is at most `max_chars`
characters: a sentence too long is cut at clause marks, then between words, and a single "word" longer
than that (CJK text has no spaces; or a very long token) is cut hard at `max_chars`.
"""

from __future__ import annotations

import re

from .errors import InputError

MIN_CHARS = 20

# Sentence ends (. ! ? … and CJK full stops) followed by space or end; clause marks for a second pass.
_SENTENCE = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|(?<=[。！？])")
_CLAUSE = re.compile(r"(?<=[,;:—–])\s+|(?<=[、，；：])\s*")


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uff00-\uffef]")


def _join(a: str, b: str) -> str:
    """Joins two pieces with a space, except between CJK text (which has none)."""
    return a + b if _CJK.match(a[-1]) or _CJK.match(b[0]) else a + " " + b


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily joins consecutive parts while the result stays within max_chars."""
    out: list[str] = []
    for part in parts:
        if out and len(_join(out[-1], part)) <= max_chars:
            out[-1] = _join(out[-1], part)
        else:
            out.append(part)
    return out


def _split_long(piece: str, max_chars: int) -> list[str]:
    if len(piece) <= max_chars:
        return [piece]
    clauses = [c for c in _CLAUSE.split(piece) if c]
    if len(clauses) > 1:
        return [p for c in _pack(clauses, max_chars) for p in _split_long(c, max_chars)]
    words = [w[i : i + max_chars] for w in piece.split() for i in range(0, len(w), max_chars)]
    return _pack(words, max_chars)


def split_text(text: str, max_chars: int = 200) -> list[str]:
    """Splits text into pieces of at most `max_chars` characters (whitespace normalised within lines).

    Sentences are kept whole when they fit; short sentences are packed together; a long sentence is cut at
    clause marks (Latin or CJK), then between words, and a longer word is cut hard. Returns [] for blank text.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < MIN_CHARS:
        raise InputError(f"max_chars must be an integer >= {MIN_CHARS}, not {max_chars!r}")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    pieces: list[str] = []
    for para in paragraphs:
        if not para:
            continue
        sentences = [s.strip() for s in _SENTENCE.split(para) if s and s.strip()]
        fitted = [p for s in sentences for p in _split_long(s, max_chars)]
        pieces.extend(_pack(fitted, max_chars))
    return pieces
