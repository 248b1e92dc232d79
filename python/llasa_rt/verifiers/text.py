"""The one text normaliser of the ASR verifiers, and word / character error rates.

`normalise_text` is applied to BOTH the text to speak and the recogniser's transcript, so that only what is said
counts:

1. Unicode NFKC, then lower case (`str.casefold`); curly apostrophes become "'".
2. Numbers are spelled out in English words the same way on both sides: "42" -> "forty two", "3.5" -> "three point
   five", "1,000" -> "one thousand", "21st" -> "twenty first", "50%" -> "fifty percent"; a four-digit number from
   1100 to 1999 is read as a year ("1999" -> "nineteen ninety nine"). "&" becomes "and".
3. Every other punctuation mark or symbol becomes a space; an apostrophe is kept only inside a word ("don't").
4. Runs of white space become one space; leading and trailing space is removed.

`error_rate` then compares word sequences (WER), or characters with spaces removed (CER) when most of the text's
characters are CJK (Han, kana, Hangul), whose words are not separated by spaces.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}
_MAX_SPELLED = 10**15  # longer digit strings are read digit by digit

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(%)?(?!\w)")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def number_words(n: int) -> str:
    """An integer as English cardinal words without "and": 1234 -> "one thousand two hundred thirty four"."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return number_words(n // value) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)  # unreachable: every n >= 1000 has a scale


def ordinal_words(n: int) -> str:
    """An integer as English ordinal words: 21 -> "twenty first", 100 -> "one hundredth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL:
        words[-1] = _ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s)


def _spell(match: re.Match[str]) -> str:
    whole, fraction, suffix, percent = match.groups()
    digits = whole.replace(",", "")
    value = int(digits)
    if len(digits) > 15 or value >= _MAX_SPELLED or (digits.startswith("0") and len(digits) > 1):
        words = _digits(digits)  # phone numbers, codes, "007": digit by digit
    elif suffix and not fraction:
        words = ordinal_words(value)
    elif "," not in whole and not fraction and 1100 <= value <= 1999:
        hi, lo = divmod(value, 100)  # a year: 1999 -> nineteen ninety nine, 1900 -> nineteen hundred
        words = number_words(hi) + " " + ("hundred" if lo == 0 else ("oh " if lo < 10 else "") + number_words(lo))
    else:
        words = number_words(value)
    if fraction:
        words += " point " + _digits(fraction)
    if percent:
        words += " percent"
    return f" {words} "


def normalise_text(text: str) -> str:
    """The normalised form used for WER / CER (see the module docstring for the rules)."""
    s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    s = s.replace("&", " and ")
    s = _NUMBER.sub(_spell, s)
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if ch == "'" or cat[0] in "LNM":
            out.append(ch)
        else:
            out.append(" ")  # punctuation, symbols, separators, control characters
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
    ref, hyp = normalise_text(text), normalise_text(transcript)
    if mostly_cjk(ref):
        return char_error_rate(ref, hyp), "cer", ref, hyp
    return word_error_rate(ref, hyp), "wer", ref, hyp
