"""The one text normaliser of the ASR verifiers, and word / character error rates.

`normalise_text` is applied to BOTH the text to speak and the recogniser's transcript, so that only what is said
counts:

1. Numbers, dates, times, money, percentages, units, abbreviations and symbols are spelled out by the speech
   front end's own English normaliser (`llasa_rt.normalise`, the one `speak` applies to the text), chosen once from
   the text to speak and applied to both sides: "42" -> "forty-two", "3:30 pm" -> "three thirty p m", "$5.50" ->
   "five dollars and fifty cents", "1999" -> "nineteen ninety-nine". Text that does not read as English (CJK, other
   languages) keeps its digits as written, on both sides.
2. Unicode NFKC, then lower case (`str.casefold`); curly apostrophes become "'"; "&" becomes "and".
3. Every other punctuation mark or symbol (hyphens too) becomes a space; an apostrophe is kept only inside a word.
4. Runs of white space become one space; leading and trailing space is removed.

`error_rate` then compares word sequences (WER), or characters with spaces removed (CER) when most of the text's
characters are CJK (Han, kana, Hangul), whose words are not separated by spaces.
"""

from __future__ import annotations

import unicodedata

from ..normalise import Normaliser

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_ENGLISH = Normaliser("en")
_AS_WRITTEN = Normaliser("none")  # any non-English code: text passes through unchanged


def spoken_form(reference: str) -> Normaliser:
    """The speech front end's normaliser for `reference`: English rules when the text reads as English (as
    `llasa_rt.normalise` decides it), else none. Both sides of a comparison use the one chosen for the reference."""
    return _ENGLISH if Normaliser("auto").applies_to(reference) else _AS_WRITTEN


def normalise_text(text: str, spoken: Normaliser | None = None) -> str:
    """The normalised form used for WER / CER (see the module docstring for the rules).

    `spoken` is the number / abbreviation speller (default: the one `spoken_form` picks for `text` itself)."""
    s = (spoken or spoken_form(text))(text)
    s = unicodedata.normalize("NFKC", s).translate(_APOSTROPHES).casefold().replace("&", " and ")
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        out.append(ch if ch == "'" or cat[0] in "LNM" else " ")  # punctuation, symbols, separators, controls
    words = []
    for word in "".join(out).split():
        word = word.strip("'")
        if word:
            words.append(word)
    return " ".join(words)


def is_cjk_char(ch: str) -> bool:
    """Han ideographs, Hiragana, Katakana, Hangul (incl. their extension and compatibility blocks)."""
    o = ord(ch)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2FA1F or 0xF900 <= o <= 0xFAFF
            or 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF
            or 0x3130 <= o <= 0x318F or 0xFF66 <= o <= 0xFF9F)


def mostly_cjk(text: str) -> bool:
    """True when more than half of the text's non-space characters are CJK: then CER is the measure."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(is_cjk_char(c) for c in chars) * 2 > len(chars)


def edit_distance(ref: list[str] | str, hyp: list[str] | str) -> int:
    """Levenshtein distance (substitutions, deletions, insertions, each costing 1) between two sequences."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits / reference words over already normalised strings (1.0 for an empty reference with words
    hypothesised, 0.0 when both are empty). May exceed 1 when the hypothesis has extra words."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def char_error_rate(reference: str, hypothesis: str) -> float:
    """Character edits / reference characters, spaces removed, over already normalised strings."""
    ref, hyp = "".join(reference.split()), "".join(hypothesis.split())
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def error_rate(text: str, transcript: str) -> tuple[float, str, str, str]:
    """Normalises both sides and returns (error rate, "wer" or "cer", normalised text, normalised transcript)."""
    spoken = spoken_form(text)
    ref, hyp = normalise_text(text, spoken), normalise_text(transcript, spoken)
    if mostly_cjk(ref):
        return char_error_rate(ref, hyp), "cer", ref, hyp
    return word_error_rate(ref, hyp), "wer", ref, hyp
