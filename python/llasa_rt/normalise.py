"""Text front end for spoken output: English numbers, dates, times, money, units and abbreviations in words.

Llasa reads what it is given; "$5.50 on 12/25/2024 at 3:30 pm" is spoken far more reliably as "five dollars and
fifty cents on December twenty-fifth, twenty twenty-four at three thirty p m". `normalise(text)` does that for
English and returns any other language unchanged:

    >>> normalise("Dr. Smith paid $5.50 for 2 kg on Dec. 25, 2024.")
    'Doctor Smith paid five dollars and fifty cents for two kilograms on December twenty-fifth, twenty twenty-four.'
    >>> normalise("我有3个苹果")
    '我有3个苹果'

Language: "auto" (the default) treats text as English when most of its letters are Latin and it does not read as
German, French, Spanish, Italian, Portuguese or Dutch by a small stop-word count; "en", "en-US", "eng",
"english" force English; any other code ("zh", "fr", ...) passes the text through unchanged.

The rules are plain regular-expression passes run in a fixed order (URLs and emails, abbreviations, dates, times,
phone numbers, money, percentages, units, other number shapes, plain numbers, symbols), each linear in the length
of the text, and repeated until nothing changes (a capped number of rounds), so `normalise` is idempotent. Sentence
punctuation is kept (an abbreviation that ends a sentence keeps its full stop). Spelling is American ("percent",
"kilometers"), without "and" inside numbers ("one hundred three"). docs/normalise.md lists what is covered and the
known gaps.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import InputError

__all__ = ["Normaliser", "cardinal", "is_english", "normalise", "ordinal", "year"]

# ---------------------------------------------------------------------------------------------------------------
# Number words
# ---------------------------------------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion"]
# Integers with more digits than the scale words cover are read digit by digit (this also keeps int() far below
# Python's 4,300-digit conversion limit).
_MAX_DIGITS = 3 * len(_SCALES)
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_MONTH_NUMBER = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)}
_MONTH_NUMBER.update({name.lower()[:3]: i + 1 for i, name in enumerate(_MONTHS)})
_MONTH_NUMBER["sept"] = 9


def _under_thousand(n: int) -> str:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append(f"{_ONES[hundreds]} hundred")
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(_ONES[rest])
    return " ".join(words)


def cardinal(n: int) -> str:
    """Spells an integer in words: 42 -> "forty-two", 1234 -> "one thousand two hundred thirty-four", -5 ->
    "minus five". Integers of more than 21 digits (past the quintillions) are read digit by digit."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n == 0:
        return "zero"
    if n >= 10**_MAX_DIGITS:
        return _digits(str(n))
    parts = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            parts.append(_under_thousand(chunk) + (f" {_SCALES[scale]}" if scale else ""))
        scale += 1
    return " ".join(reversed(parts))


def _last_word(words: str) -> int:
    """Index where the last word of a number (after a space or hyphen) starts."""
    return max(words.rfind(" "), words.rfind("-")) + 1


def ordinal(n: int) -> str:
    """Spells an ordinal: 1 -> "first", 22 -> "twenty-second", 103 -> "one hundred third"."""
    words = cardinal(n)
    i = _last_word(words)
    last = words[i:]
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:i] + last


def _plural(words: str) -> str:
    """"twenty" -> "twenties", "six" -> "sixes", "nineteen ninety" -> "nineteen nineties"."""
    i = _last_word(words)
    last = words[i:]
    if last.endswith("y"):
        return words[:i] + last[:-1] + "ies"
    if last.endswith("x"):
        return words + "es"
    return words + "s"


def _digits(s: str) -> str:
    """Reads ASCII digits one by one: "007" -> "zero zero seven"."""
    return " ".join(_ONES[ord(c) - 48] for c in s)


def _integer(s: str) -> str:
    """Reads an integer as written (digits, optionally grouped with commas); a leading zero means digits."""
    digits = s.replace(",", "")
    if "," not in s and len(digits) > 1 and digits[0] == "0":
        return _digits(digits)
    if len(digits) > _MAX_DIGITS:
        return _digits(digits)
    return cardinal(int(digits))


def _number(int_part: str, frac: str | None) -> str:
    """"3", "14" -> "three point one four"; an empty integer part gives "point five"."""
    words = _integer(int_part) if int_part else ""
    if frac is not None:
        words = (words + " point " if words else "point ") + _digits(frac)
    return words


def _is_one(int_part: str, frac: str | None) -> bool:
    return int_part == "1" and frac is None


def year(n: int) -> str:
    """Reads a year: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand five", 1905 -> "nineteen oh five",
    1900 -> "nineteen hundred", 2024 -> "twenty twenty-four"."""
    if n < 1000 or n >= 10000 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {cardinal(low)}"
    return f"{cardinal(high)} {cardinal(low)}"


def _year_text(s: str) -> str:
    """A written year: four digits read as a year, two digits as "twenty-four" / "oh five"."""
    if len(s) == 2:
        return f"oh {_ONES[int(s[1])]}" if s[0] == "0" else cardinal(int(s))
    return year(int(s))


def _is_year(s: str) -> bool:
    return len(s) == 4 and s[0] != "0" and 1100 <= int(s) <= 2099


# ---------------------------------------------------------------------------------------------------------------
# Pattern pieces and helpers shared by the passes
# ---------------------------------------------------------------------------------------------------------------

Handler = Callable[[re.Match[str]], str]

# A minus sign only at the start of a token (after a space, an opening bracket, "=", ...), so "COVID-19" and
# "10-20" are not negative numbers.
_SIGN = r"(?P<sign>(?<![^\s(\[{=<>~/:;])[-−])?"


def _num(name: str) -> str:
    """An integer (grouped with commas or not) with an optional decimal part, as groups `name` and `name`_f."""
    return rf"(?P<{name}>[0-9]{{1,3}}(?:,[0-9]{{3}})+(?![0-9])|[0-9]+)(?:\.(?P<{name}_f>[0-9]+))?"


_DASH = r"(?:-|\s?–\s?)"  # a range: "10-20" or "10 – 20"
_END_OF_LINE = re.compile(r"[\"'”’)\]]*[ \t]*(?:\n|$)")
_SENTENCE_AFTER = re.compile(r"[\"'”’)\]]*(?:[ \t]*(?:\n|$)|\s+[\"'“‘(\[]*[A-Z])")


def _ends_sentence(s: str, end: int) -> bool:
    """True when the full stop just before `end` also ends the sentence (end of text, line, or a capital next)."""
    return _SENTENCE_AFTER.match(s, end) is not None


def _keep_stop(m: re.Match[str], words: str) -> str:
    """Appends the full stop that a matched abbreviation swallowed when it also ended the sentence."""
    if m.group(0).endswith(".") and _ends_sentence(m.string, m.end()):
        return words + "."
    return words


_DIGIT = re.compile(r"[0-9]")


class _Pass:
    """One rule: a compiled pattern and the function that spells each match. A pass marked `digits` only runs
    while the text still has an ASCII digit (after the number passes none is left, so later rounds skip it)."""

    __slots__ = ("digits", "handler", "regex")

    def __init__(self, pattern: str, handler: Handler, digits: bool) -> None:
        self.regex = re.compile(pattern)
        self.handler = handler
        self.digits = digits

    def __call__(self, text: str) -> str:
        if self.digits and _DIGIT.search(text) is None:
            return text
        return self.regex.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        out = self.handler(m)
        if out == m.group(0) or not out:
            return out
        s, start, end = m.string, m.start(), m.end()
        if out[0] == " " and (start == 0 or s[start - 1].isspace()):
            out = out.lstrip(" ")  # never double a space ("a & b" -> "a and b")
        if out and out[-1] == " " and (end == len(s) or s[end].isspace()):
            out = out.rstrip(" ")
        if out and start and s[start - 1].isalnum() and out[0].isalnum():
            out = " " + out  # "MP3" -> "MP three"
        if out and end < len(s) and s[end].isalnum() and out[-1].isalnum():
            out += " "  # "3D" -> "three D"
        return out


def _end_stop(m: re.Match[str], words: str) -> str:
    """Keeps the full stop of an abbreviation that never ends a sentence ("Dr.", "e.g.") only at the end of a line."""
    if m.group(0).endswith(".") and _END_OF_LINE.match(m.string, m.end()):
        return words + "."
    return words


def _pass(pattern: str, handler: Handler) -> _Pass:
    """A rule that works on words and symbols (runs in every round)."""
    return _Pass(pattern, handler, digits=False)


def _npass(pattern: str, handler: Handler) -> _Pass:
    """A rule that needs an ASCII digit in its match."""
    return _Pass(pattern, handler, digits=True)


# ---------------------------------------------------------------------------------------------------------------
# URLs and email addresses: read out ("example dot com slash docs"); the scheme, query and fragment are dropped
# ---------------------------------------------------------------------------------------------------------------

_URL_SYMBOLS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", "@": "at", "+": "plus", ":": "colon",
                "~": "tilde", "=": "equals", "&": "and", "%": "percent"}
_URL_TOKEN = re.compile(r"[0-9]+|[^\W\d_]+|.", re.S)
_TLDS = "com|org|net|edu|gov|io|dev|ai|app|info|co|uk|us|de|fr|eu|ca|au"


def _spell_address(s: str) -> str:
    words = []
    for tok in _URL_TOKEN.findall(s):
        if tok[0] in "0123456789":
            words.append(_digits(tok))
        elif tok.isalpha():
            words.append(tok)
        elif tok in _URL_SYMBOLS:
            words.append(_URL_SYMBOLS[tok])
    return " ".join(words)


def _url(m: re.Match[str]) -> str:
    raw = m.group(0)
    core = raw.rstrip(".,;:!?)]}'\"”’")
    tail = raw[len(core):]
    core = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", core)
    core = re.split(r"[?#]", core, maxsplit=1)[0].rstrip("/")
    core = re.sub(r"^www\.", "", core, flags=re.I)
    words = _spell_address(core)
    return words + tail if words else raw


def _email(m: re.Match[str]) -> str:
    return _spell_address(m.group(0))


_ADDRESS_PASSES = [
    _pass(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63})+",
          _email),
    _pass(r"(?<![\w@/.])(?:[A-Za-z][A-Za-z0-9+.-]{0,15}://|www\.)[^\s<>\"'`]+", _url),
    _pass(rf"(?<![\w@./-])(?:[A-Za-z0-9-]+\.)+(?:{_TLDS})(?![\w-]|\.\w)(?:/[^\s<>\"'`]*)?", _url),
]

# ---------------------------------------------------------------------------------------------------------------
# Abbreviations
# ---------------------------------------------------------------------------------------------------------------

_TITLES = {"Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor", "Capt": "Captain",
           "Lt": "Lieutenant", "Sgt": "Sergeant", "Rev": "Reverend", "Gen": "General", "Gov": "Governor",
           "Sen": "Senator", "Mt": "Mount"}
_ABBREVIATIONS = {"etc": "et cetera", "e.g": "for example", "i.e": "that is", "vs": "versus", "approx": "approximately",
                  "a.k.a": "also known as", "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation",
                  "Co": "Company", "Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard", "Dept": "Department",
                  "Jr": "Junior", "Sr": "Senior", "Bros": "Brothers", "Univ": "University", "Ph.D": "P H D"}
_MID_SENTENCE = {"e.g", "i.e", "vs", "a.k.a", "approx"}
_BEFORE_NUMBER = {"no": "number", "nos": "numbers", "fig": "figure", "vol": "volume", "p": "page", "pp": "pages",
                  "ch": "chapter", "ext": "extension", "ca": "circa"}


def _title(m: re.Match[str]) -> str:
    return _TITLES[m.group(1)]


def _abbreviation(m: re.Match[str]) -> str:
    abbr = m.group(1)
    words = _ABBREVIATIONS.get(abbr) or _ABBREVIATIONS[abbr.lower()]
    if abbr[0].isupper() and words[0].islower():
        words = words[0].upper() + words[1:]
    if abbr.lower() in _MID_SENTENCE:  # "e.g. Paris": the capital after it does not start a sentence
        return _end_stop(m, words)
    return _keep_stop(m, words)


def _before_number(m: re.Match[str]) -> str:
    return _BEFORE_NUMBER[m.group(1).lower()] + " "


_PREV_WORD = re.compile(r"(?:^|[\s\"'“‘(\[])([^\s\"'“‘(\[]+)\s+$")
_NEXT_WORD = re.compile(r"\s+[\"'“‘(\[]*(\S)")


def _street_or_title(m: re.Match[str]) -> str:
    """"St." is Saint before a name and Street after one (or after a number); "Dr." is Doctor, or Drive after a
    name or number. A capitalised word at the start of a sentence counts as a name only when no capitalised word
    follows ("Main St. is closed" but "Visit St. Louis")."""
    s, start = m.string, m.start()
    lo = max(0, start - 40)
    window = s[lo:start]
    nxt = _NEXT_WORD.match(s, m.end())
    next_capital = nxt is not None and nxt.group(1).isupper()
    after_place = False
    prev = _PREV_WORD.search(window)
    if prev:
        word = prev.group(1)
        before = window[:prev.start(1)].rstrip()
        at_sentence_start = (not before and lo == 0) or (bool(before) and before[-1] in ".!?")
        name = word[0].isupper() and word[-1] not in ".!?,;:" and (not at_sentence_start or not next_capital)
        after_place = word[0].isdigit() or name
    if m.group(1) == "St":
        if after_place or not next_capital:
            return _keep_stop(m, "Street")
        return _end_stop(m, "Saint")
    return _keep_stop(m, "Drive") if after_place else _end_stop(m, "Doctor")


_WEEKDAYS = {"Mon": "Monday", "Tue": "Tuesday", "Tues": "Tuesday", "Wed": "Wednesday", "Thu": "Thursday",
             "Thur": "Thursday", "Thurs": "Thursday", "Fri": "Friday", "Sat": "Saturday", "Sun": "Sunday"}


def _weekday(m: re.Match[str]) -> str:
    return _WEEKDAYS[m.group(1)] + ("," if m.group(0).endswith(",") else "")


def _initialism(m: re.Match[str]) -> str:
    """"U.S." -> "U S" (letter by letter, so it is not read as the word "us")."""
    return _keep_stop(m, " ".join(m.group(0).replace(".", "")))


# An abbreviation may follow anything but a letter: "5th St.", "e.g.e.g." and "2etc." expand in one round.
_ABBREVIATION_PASSES = [
    _pass(r"(?<![^\W\d_])(Mr|Mrs|Ms)(?=\s+[\"'“‘(]?[A-Z])|(?<![^\W\d_])(?:" + "|".join(_TITLES) + r")\.(?=\s+\S)",
          lambda m: _TITLES[m.group(1) or m.group(0)[:-1]]),
    _pass(r"(?<![^\W\d_])(St|Dr)(?:\.(?=\s|$)|(?=\s+[\"'“‘(]?[A-Z]))", _street_or_title),
    _pass(r"(?<![^\W\d_])((?i:etc|e\.g|i\.e|vs|approx|a\.k\.a)|Inc|Ltd|Corp|Co|Ave|Rd|Blvd|Dept|Jr|Sr|Bros|Univ|Ph\.D)\.",
          _abbreviation),
    _pass(r"(?<![^\W\d_])vs(?![^\W\d_.])", lambda m: "versus"),
    # "Fri., Mar. 7" / "Sat, 5 May": a weekday only before a date, so "the Sun." stays the sun
    _pass(r"(?<![^\W\d_])(" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")(?:\.,?|,)"
          r"(?=\s+(?:[0-9]|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec))", _weekday),
    _pass(r"(?<![^\W\d_])((?i:no|nos|fig|vol|pp|p|ch|ext|ca))\.\s?(?=[0-9])", _before_number),
    _pass(r"(?<![\w.])(?:[A-Z]\.){2,}(?![\w])", _initialism),  # U.S. -> U S: the sentence splitter keeps it whole
    _pass(r"(?<![^\W\d_/])w/o(?![\w/])", lambda m: "without"),
    _pass(r"(?<![^\W\d_/])w/(?=\s)", lambda m: "with"),
]

# ---------------------------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------------------------

_MONTH_RE = ("(?P<month>January|February|March|April|May|June|July|August|September|October|November|December"
             "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)")


def _date_words(month: int, day: int, year_text: str | None, day_first: bool, the: bool) -> str:
    if day_first:
        words = f"{'the ' if the else ''}{ordinal(day)} of {_MONTHS[month - 1]}"
    else:
        words = f"{_MONTHS[month - 1]} {ordinal(day)}"
    return f"{words}, {year_text}" if year_text else words


def _after_the(m: re.Match[str]) -> bool:
    return m.string[max(0, m.start() - 4):m.start()].lower() == "the "


def _month_day(m: re.Match[str]) -> str:
    day = int(m["day"])
    if not 1 <= day <= 31:
        return m.group(0)
    month = _MONTH_NUMBER[m["month"].lower()]
    words = _date_words(month, day, m["year"] and _year_text(m["year"]), False, False)
    return words


def _day_month(m: re.Match[str]) -> str:
    day = int(m["day"])
    if not 1 <= day <= 31:
        return m.group(0)
    month = _MONTH_NUMBER[m["month"].lower()]
    words = _date_words(month, day, m["year"] and _year_text(m["year"]), True, not _after_the(m))
    return _keep_stop(m, words) if m["stop"] else words


def _month_year(m: re.Match[str]) -> str:
    return f"{_MONTHS[_MONTH_NUMBER[m['month'].lower()] - 1]} {_year_text(m['year'])}"


def _month_stop(m: re.Match[str]) -> str:
    return _keep_stop(m, _MONTHS[_MONTH_NUMBER[m["month"].lower()] - 1])


def _iso_date(m: re.Match[str]) -> str:
    month, day = int(m["m"]), int(m["d"])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return _date_words(month, day, _year_text(m["y"]), False, False)


def _numeric_date(m: re.Match[str]) -> str:
    a, b = int(m["a"]), int(m["b"])
    day_first = m["sep"] == "."  # 25.12.2024 is European; 12/25/2024 and 12-25-2024 are read month first
    if day_first and not (1 <= b <= 12 and 1 <= a <= 31) and 1 <= a <= 12 and 1 <= b <= 31:
        day_first = False
    elif not day_first and not (1 <= a <= 12 and 1 <= b <= 31) and 1 <= b <= 12 and 1 <= a <= 31:
        day_first = True
    month, day = (b, a) if day_first else (a, b)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return _date_words(month, day, _year_text(m["y"]), day_first, not _after_the(m))


_DATE_PASSES = [
    _npass(r"(?<![\w.-])(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})(?![\w-]|\.[0-9])", _iso_date),
    _npass(r"(?<![\w./-])(?P<a>[0-9]{1,2})(?P<sep>[/.-])(?P<b>[0-9]{1,2})(?P=sep)(?P<y>[0-9]{4}|[0-9]{2})"
          r"(?![\w/-]|[.][0-9])", _numeric_date),
    _npass(rf"\b{_MONTH_RE}\.?\s+(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?(?![\w:]|[.,][0-9])"
          r"(?:,?\s+(?P<year>[0-9]{4})(?![\w]|[.,][0-9]))?", _month_day),
    _npass(rf"(?<![\w.,])(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_RE}\b(?P<stop>\.)?"
          r"(?:,?\s+(?P<year>[0-9]{4})(?![\w]|[.,][0-9]))?", _day_month),
    _npass(rf"\b{_MONTH_RE}\.?\s+(?P<year>[0-9]{{4}})(?![\w]|[.,][0-9])", _month_year),
    _npass(r"\b(?P<month>Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.(?=\s*[0-9])", _month_stop),
]

# ---------------------------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------------------------

_AMPM = r"(?:\s?(?P<ap>[AaPp])(?:\.\s?[Mm]\.|\.[Mm]\b|\s?[Mm]\b))"


def _clock(hour: int, minute: int, ap: str | None, second: int = 0) -> str:
    words = cardinal(hour)
    if minute:
        words += f" oh {_ONES[minute]}" if minute < 10 else f" {cardinal(minute)}"
    if second:
        words += f" and {cardinal(second)} second{'s' if second != 1 else ''}"
    if ap:
        if hour == 12 and not minute and not second:
            return words + (" noon" if ap in "Pp" else " midnight")
        return words + (" a m" if ap in "Aa" else " p m")
    if not minute and not second:
        return words + (" o'clock" if 1 <= hour <= 12 else " hundred")
    return words


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m["h"]), int(m["m"])
    second = int(m["s"]) if m["s"] else 0
    ap = m["ap"]
    if minute > 59 or second > 59 or hour > (12 if ap else 24) or (ap and hour == 0):
        return m.group(0)
    words = _clock(hour, minute, ap, second)
    return _keep_stop(m, words) if ap else words


def _hour_ampm(m: re.Match[str]) -> str:
    hour = int(m["h"])
    if not 1 <= hour <= 12:
        return m.group(0)
    return _keep_stop(m, _clock(hour, 0, m["ap"]))


_TIME_PASSES = [
    _npass(rf"(?<![\w:.])(?P<h>[0-9]{{1,2}}):(?P<m>[0-9]{{2}})(?::(?P<s>[0-9]{{2}}))?(?![0-9]|[:.][0-9]){_AMPM}?",
          _time),
    _npass(rf"(?<![\w:.,])(?P<h>[0-9]{{1,2}}){_AMPM}", _hour_ampm),
]

# ---------------------------------------------------------------------------------------------------------------
# Phone numbers: digit by digit in their groups
# ---------------------------------------------------------------------------------------------------------------


def _phone(m: re.Match[str]) -> str:
    text = m.group(0)
    groups = re.findall(r"[0-9]+", text)
    if sum(len(g) for g in groups) < 7:
        return text
    words = ", ".join(_digits(g) for g in groups)
    return ("plus " if text.startswith("+") else "") + words


_PHONE_PASSES = [
    _npass(r"(?<![\w+.,-])(?:\+?1[ .-])?(?:\([0-9]{3}\)\s?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?![\w]|[.,-][0-9])",
          _phone),
    _npass(r"(?<![\w+.,-])\+[0-9]{1,3}(?:[ .-][0-9]{1,4}){2,5}(?![\w]|[.,-][0-9])", _phone),
    _npass(r"(?<![\w+.,/:-])[0-9]{3}-[0-9]{4}(?![\w]|[.,/:-][0-9])", _phone),
]

# ---------------------------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------------------------

# symbol or code -> (one, many, one minor unit, many minor units); no minor unit: decimals are read as decimals
_CURRENCIES: dict[str, tuple[str, str, str | None, str | None]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "US$": ("US dollar", "US dollars", "cent", "cents"),
    "A$": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "C$": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
    "USD": ("US dollar", "US dollars", "cent", "cents"),
    "EUR": ("euro", "euros", "cent", "cents"),
    "GBP": ("pound", "pounds", "penny", "pence"),
    "JPY": ("yen", "yen", None, None),
    "INR": ("rupee", "rupees", "paisa", "paise"),
}
_SCALE_ABBREVIATIONS = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion",
                        "t": "trillion", "tn": "trillion"}
_CUR_SYMBOL = r"(?:US\$|A\$|C\$|[$£€¥₹])"
_CUR_CODE = "USD|EUR|GBP|JPY|INR"


def _scale(word: str | None, abbr: str | None) -> str | None:
    if word:
        return word
    return _SCALE_ABBREVIATIONS[abbr.lower()] if abbr else None


def _money(currency: str, int_part: str, frac: str | None, scale: str | None, unit: bool = True) -> str:
    one, many, minor_one, minor_many = _CURRENCIES[currency]
    if scale:
        return f"{_number(int_part, frac)} {scale}" + (f" {many}" if unit else "")
    digits = int_part.replace(",", "")
    if frac is not None and minor_one and minor_many and len(frac) <= 2 and len(digits) <= _MAX_DIGITS:
        whole, cents = int(digits), int(frac.ljust(2, "0"))
        parts = []
        if whole or not cents:
            parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
        if cents:
            parts.append(f"{cardinal(cents)} {minor_one if cents == 1 else minor_many}")
        return " and ".join(parts)
    words = _number(int_part, frac)
    if not unit:
        return words
    return f"{words} {one if _is_one(int_part, frac) else many}"


def _money_prefix(m: re.Match[str]) -> str:
    """"$5.50" -> "five dollars and fifty cents"; "$10-20" -> "ten to twenty dollars"; "$1.2M" -> "one point two
    million dollars"."""
    currency = m["cur"]
    sign = "minus " if m["sign"] else ""
    scale1 = _scale(m["sc"], m["sca"])
    if m["b"] is None:
        return sign + _money(currency, m["a"], m["a_f"], scale1)
    scale2 = _scale(m["sc2"], m["sca2"])
    if scale1:
        first = f"{_number(m['a'], m['a_f'])} {scale1}"
    elif m["a_f"] is not None and len(m["a_f"]) <= 2 and _CURRENCIES[currency][2]:
        first = _money(currency, m["a"], m["a_f"], None)  # "five dollars and fifty cents to ..."
    else:
        first = _number(m["a"], m["a_f"])  # "ten to twenty dollars", "one to two million dollars"
    return f"{sign}{first} to {_money(currency, m['b'], m['b_f'], scale2)}"


def _money_suffix(m: re.Match[str]) -> str:
    currency = m["cur"]
    sign = "minus " if m["sign"] else ""
    if currency == "¢":
        return f"{sign}{_number(m['a'], m['a_f'])} cent{'' if _is_one(m['a'], m['a_f']) else 's'}"
    return sign + _money(currency, m["a"], m["a_f"], None)


_SCALE_RE = r"(?:\s?(?P<sc{n}>thousand|million|billion|trillion)\b|(?P<sca{n}>[kKmMbBT]|bn|mn|tn)(?![\w]))?"

_MONEY_PASSES = [
    _npass(_SIGN + rf"(?<![\w$£€¥₹])(?P<cur>{_CUR_SYMBOL}|(?:{_CUR_CODE})(?=\s))\s?" + _num("a")
          + _SCALE_RE.format(n="") + rf"(?:{_DASH}(?:{_CUR_SYMBOL})?" + _num("b") + _SCALE_RE.format(n="2") + ")?",
          _money_prefix),
    _npass(_SIGN + r"(?<![\w.,])" + _num("a") + rf"\s?(?P<cur>[$€£¥₹¢](?![0-9])|(?:{_CUR_CODE})\b)", _money_suffix),
]

# ---------------------------------------------------------------------------------------------------------------
# Percentages and units
# ---------------------------------------------------------------------------------------------------------------


def _percent(m: re.Match[str]) -> str:
    sign = "minus " if m["sign"] else ""
    word = "percent" if m["p"] == "%" else "per mille"
    first = sign + _number(m["a"], m["a_f"])
    if m["b"] is not None:
        return f"{first} to {_number(m['b'], m['b_f'])} {word}"
    return f"{first} {word}"


# written form -> (one, many); matched longest first, case-sensitive, only right after a number
_UNITS: dict[str, tuple[str, str]] = {
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"), "m/s": ("meter per second", "meters per second"),
    "km²": ("square kilometer", "square kilometers"), "m²": ("square meter", "square meters"),
    "cm²": ("square centimeter", "square centimeters"), "m³": ("cubic meter", "cubic meters"),
    "sq ft": ("square foot", "square feet"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "° C": ("degree Celsius", "degrees Celsius"), "° F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "kW": ("kilowatt", "kilowatts"), "MW": ("megawatt", "megawatts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "TB": ("terabyte", "terabytes"), "GB": ("gigabyte", "gigabytes"), "MB": ("megabyte", "megabytes"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"),
    "Gbps": ("gigabit per second", "gigabits per second"), "Mbps": ("megabit per second", "megabits per second"),
    "GHz": ("gigahertz", "gigahertz"), "MHz": ("megahertz", "megahertz"), "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "nm": ("nanometer", "nanometers"), "m": ("meter", "meters"),
    "kg": ("kilogram", "kilograms"), "mg": ("milligram", "milligrams"), "g": ("gram", "grams"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"), "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "mi": ("mile", "miles"), "ft": ("foot", "feet"), "lbs": ("pound", "pounds"), "lb": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "hrs": ("hour", "hours"), "hr": ("hour", "hours"), "h": ("hour", "hours"), "mins": ("minute", "minutes"),
    "min": ("minute", "minutes"), "secs": ("second", "seconds"), "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"), "dB": ("decibel", "decibels"),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))


def _unit(m: re.Match[str]) -> str:
    one, many = _UNITS[m["u"]]
    sign = "minus " if m["sign"] else ""
    first = sign + _number(m["a"], m["a_f"])
    if m["b"] is not None:
        return f"{first} to {_number(m['b'], m['b_f'])} {many}"
    return f"{first} {one if _is_one(m['a'], m['a_f']) else many}"


_MEASURE_PASSES = [
    _npass(_SIGN + r"(?<![\w.,])" + _num("a") + rf"(?:\s?%)?(?:{_DASH}" + _num("b") + r")?\s?(?P<p>[%‰])", _percent),
    _npass(_SIGN + r"(?<![\w.,])" + _num("a") + rf"(?:{_DASH}" + _num("b") + rf")?\s?(?P<u>{_UNIT_RE})(?![\w²³/])",
          _unit),
]

# ---------------------------------------------------------------------------------------------------------------
# Other number shapes: versions, decades, ordinals, fractions, ratios, ranges, arithmetic; then plain numbers
# ---------------------------------------------------------------------------------------------------------------

_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5),
           "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8),
           "⅑": (1, 9), "⅒": (1, 10)}
_FRACTION_DENOMINATORS = {*range(2, 11), 12, 16, 32, 64, 100}
_SPOKEN_SLASHES = {("24", "7"): "twenty-four seven", ("9", "11"): "nine eleven", ("50", "50"): "fifty-fifty"}


def _fraction_words(a: int, b: int) -> str:
    if b == 2:
        name = "half" if a == 1 else "halves"
    elif b == 4:
        name = "quarter" if a == 1 else "quarters"
    else:
        name = ordinal(b) if a == 1 else _plural(ordinal(b))
    return f"{cardinal(a)} {name}"


def _slash(m: re.Match[str]) -> str:
    """"1/2" -> "one half", "2 3/4" -> "two and three quarters", "12/25" -> "December twenty-fifth"."""
    a_text, b_text = m["a"], m["b"]
    whole = f"{_integer(m['w'])} and " if m["w"] else ""
    if not whole and (a_text, b_text) in _SPOKEN_SLASHES:
        return _SPOKEN_SLASHES[(a_text, b_text)]
    a, b = int(a_text), int(b_text)
    if b in _FRACTION_DENOMINATORS and a_text[0] != "0":
        return whole + _fraction_words(a, b)
    if not whole and 1 <= a <= 12 and 13 <= b <= 31:
        return f"{_MONTHS[a - 1]} {ordinal(b)}"
    if b > 0 and a_text[0] != "0" and b_text[0] != "0":
        return f"{whole}{cardinal(a)} over {cardinal(b)}"
    return f"{whole}{_integer(a_text)} slash {_integer(b_text)}"


def _vulgar(m: re.Match[str]) -> str:
    a, b = _VULGAR[m["f"]]
    whole = f"{_integer(m['w'])} and " if m["w"] else ""
    return whole + _fraction_words(a, b)


def _dotted(m: re.Match[str]) -> str:
    """Versions and IP addresses: "3.14.1" -> "three point fourteen point one"; "192.168.0.1" uses "dot"."""
    parts = m.group(0).split(".")
    ip = len(parts) == 4 and all(len(p) <= 3 and int(p) <= 255 for p in parts)
    return (" dot " if ip else " point ").join(_integer(p) for p in parts)


def _decade(m: re.Match[str]) -> str:
    """"1990s" -> "nineteen nineties", "'90s" -> "nineties", "2010s" -> "twenty tens", "5s" -> "fives"."""
    n = m["yy"] or m["n"]
    if len(n) == 2 and n[1] == "0" and n[0] != "0":
        return _plural(cardinal(int(n)))
    if m["yy"]:
        return _plural(_year_text(n))
    if n in ("100", "1000"):
        return _plural(cardinal(int(n)))[4:]  # "hundreds", "thousands"
    return _plural(year(int(n)) if _is_year(n) else _integer(n))


def _ordinal(m: re.Match[str]) -> str:
    digits = m["n"].replace(",", "")
    if len(digits) > _MAX_DIGITS:
        return _digits(digits) + "th"
    return ordinal(int(digits))


def _ratio(m: re.Match[str]) -> str:
    return f"{_integer(m['a'])} to {_integer(m['b'])}"


def _range(m: re.Match[str]) -> str:
    a, b = m["a"], m["b"]
    if a[0] == "0" or b[0] == "0" or len(a) > 6 or len(b) > 6:
        return m.group(0)
    if _is_year(a) and ((_is_year(b) and int(b) > int(a)) or (len(b) == 2 and int(b) > int(a) % 100)):
        return f"{year(int(a))} to {year(int(b)) if len(b) == 4 else cardinal(int(b))}"
    if int(a) < int(b):
        return f"{cardinal(int(a))} to {cardinal(int(b))}"
    return m.group(0)


def _times(m: re.Match[str]) -> str:
    return f"{_number(m['n'], m['n_f'])} times"


def _plain(m: re.Match[str]) -> str:
    sign = "minus " if m["sign"] else ""
    if m["dot"] is not None:
        return sign + "point " + _digits(m["dot"])
    int_part, frac = m["a"], m["a_f"]
    digits = int_part.replace(",", "")
    if frac is None and "," not in int_part:
        if not sign and _is_year(digits):
            return year(int(digits))
        if digits == "911":
            return "nine one one"
        if len(digits) > 9 and digits[1:].strip("0"):
            return _digits(digits)  # long codes and unformatted phone numbers
    return sign + _number(int_part, frac)


_NUMBER_PASSES = [
    _npass(r"(?<![0-9.])[0-9]{1,6}(?:\.[0-9]{1,6}){2,}(?![\w]|\.[0-9])", _dotted),
    _npass(r"(?<![\w.,'’])(?:['’](?P<yy>[0-9]{2})|(?P<n>[0-9]{1,4}))['’]?s\b", _decade),
    _npass(r"(?<![\w.,])(?P<n>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:st|nd|rd|th|ST|ND|RD|TH)\b", _ordinal),
    _npass(r"(?<![\w./,])(?:(?P<w>[0-9]+)\s)?(?P<a>[0-9]{1,3})/(?P<b>[0-9]{1,3})(?![\w/]|[.,][0-9])", _slash),
    _pass(r"(?:(?<![0-9.,])(?P<w>[0-9]+)\s?)?(?P<f>[½⅓⅔¼¾⅕⅖⅗⅘⅙⅚⅐⅛⅜⅝⅞⅑⅒])", _vulgar),
    _npass(r"(?<![\w.:])(?P<a>[0-9]{1,6}):(?P<b>[0-9]{1,6})(?![\w:]|[.,][0-9])", _ratio),
    _npass(rf"(?<![\w.,/:-])(?P<a>[0-9]+){_DASH}(?P<b>[0-9]+)(?![\w/:-]|[.,][0-9])", _range),
    _npass(r"(?<=[0-9])\s*\+\s*(?=[0-9])", lambda m: " plus "),
    _npass(r"(?<=[0-9])\s*=\s*(?=[-−]?[0-9])", lambda m: " equals "),
    _npass(r"(?<=[0-9])\s*[×✕]\s*(?=[0-9])|(?<=[0-9]) x (?=[0-9])", lambda m: " times "),
    _npass(r"(?<=[0-9])\s*÷\s*(?=[0-9])", lambda m: " divided by "),
    _npass(r"(?<=[0-9])x(?=[0-9])", lambda m: " by "),
    _npass(r"(?<![\w.,])(?P<n>[0-9]+)(?:\.(?P<n_f>[0-9]+))?x(?![\w])", _times),
    _npass(r"(?<![^\s(\[{=<>/:;])\+(?=[0-9])", lambda m: "plus "),
    _npass(r"(?<![\w#&])#(?=[0-9])", lambda m: "number "),
    _npass(r"(?<![^\s(\[{=<>/:;])~(?=[0-9])", lambda m: "about "),
    _npass(_SIGN + r"(?<![0-9])(?:(?P<a>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.(?P<a_f>[0-9]+))?"
          r"|\.(?P<dot>[0-9]+))", _plain),
]

# ---------------------------------------------------------------------------------------------------------------
# Symbols
# ---------------------------------------------------------------------------------------------------------------

_SYMBOL_PASSES = [
    _pass(r"(?<!\s)\s*&(?:amp;)?\s*", lambda m: " and "),
    _pass(r"(?<=[A-Za-z])\+\+(?![\w+])", lambda m: " plus plus"),
    _pass(r"(?<![\w@])@(?=[A-Za-z_])", lambda m: "at "),
    _pass(r"(?<=\s)@(?=\s)", lambda m: "at"),
    _pass(r"(?<!\s)\s*±\s*", lambda m: " plus or minus "),
    _pass(r"(?<!\s)\s*≈\s*", lambda m: " approximately "),
]

_PASSES = (_ADDRESS_PASSES + _ABBREVIATION_PASSES + _DATE_PASSES + _TIME_PASSES + _PHONE_PASSES + _MONEY_PASSES
           + _MEASURE_PASSES + _NUMBER_PASSES + _SYMBOL_PASSES)
# Rules see each other's output ("x.com" glued to "etc." is an address only once "etc." is words), so the passes
# are repeated until nothing changes: for real text the second round finds nothing; only glued-together
# abbreviations and addresses need a third or fourth. Each round is linear, and the number of rounds is capped.
_MAX_ROUNDS = 6


def _english(text: str) -> str:
    for _ in range(_MAX_ROUNDS):
        out = text
        for rule in _PASSES:
            out = rule(out)
        if out == text:
            break
        text = out
    return text


# ---------------------------------------------------------------------------------------------------------------
# Language choice
# ---------------------------------------------------------------------------------------------------------------

_NON_LETTERS = re.compile(r"[\W\d_]+")
_NON_LATIN = re.compile(r"[^A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ]+")
_ADDRESSES = re.compile(r"(?<!\S)\S*(?:://|@|www\.)\S*")
_WORDS = re.compile(r"[^\W\d_]{2,}")
_ENGLISH_WORDS = frozenset(
    "the and of to is that it with for this was are you have be not on at by from they we he she his her will would "
    "what which there their an or as my your has had but if can do does did been were our about into than when where "
    "who how just so all also here please".split())
# Function words of other Latin-script languages that are not English words (no "die", "in", "son", "as", ...).
_OTHER_WORDS = frozenset(
    "der das und ist nicht ein eine mit auf sich dem den ich wir für auch oder wie sind bei nach noch über wird "
    "le les et est une des du que pas pour dans avec sur qui je nous vous ce cette sont mais au aux il elle ne "
    "el los las es una del por para con se lo como pero más está su "
    "di che per della sono non gli "
    "het een niet zijn voor ook ik "
    "os não um uma são da dos das".split())
_ENGLISH_CODES = re.compile(r"(?i)en(?:[-_][a-z0-9-]*)?|eng|english")


def is_english(text: str) -> bool:
    """True when `text` would be normalised as English under language="auto".

    Text is English when at least half of its letters (outside URLs and email addresses) are Latin, and it does
    not read as German, French, Spanish, Italian, Portuguese or Dutch (at least two of their common function
    words and more than twice as many as English ones). Text without letters counts as English.
    """
    if not isinstance(text, str):
        raise InputError(f"text must be a str, not {type(text).__name__}")
    bare = _ADDRESSES.sub(" ", text)
    letters = sum(map(str.isalpha, _NON_LETTERS.sub("", bare)))  # "½" and "²" are \w but not letters
    if not letters:
        return True
    if 2 * len(_NON_LATIN.sub("", bare)) < letters:
        return False
    english = other = 0
    for word in _WORDS.findall(bare.lower()):
        if word in _ENGLISH_WORDS:
            english += 1
        elif word in _OTHER_WORDS:
            other += 1
    return not (other >= 2 and other > 2 * english)


class Normaliser:
    """Turns written English into its spoken form; text in other languages is returned unchanged.

    `Normaliser(language)` fixes the language once ("auto", an English code such as "en" or "en-GB", or any
    other code to pass text through); calling it on a str returns the normalised str. It never raises on a str,
    keeps sentence punctuation, is idempotent, and runs in time linear in the length of the text.
    """

    def __init__(self, language: str = "auto") -> None:
        if not isinstance(language, str):
            raise InputError(f"language must be a str such as 'auto' or 'en', not {type(language).__name__}")
        self.language = language

    def applies_to(self, text: str) -> bool:
        """True when the English rules run on `text` (language forced to English, or "auto" detects English)."""
        code = self.language.strip()
        if code.lower() == "auto":
            return is_english(text)
        return _ENGLISH_CODES.fullmatch(code) is not None

    def __call__(self, text: str) -> str:
        """Returns `text` with numbers, dates, times, money, units, abbreviations and symbols spelled out."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, not {type(text).__name__}")
        if not text or not self.applies_to(text):
            return text
        return _english(text)

    def __repr__(self) -> str:
        return f"Normaliser(language={self.language!r})"


def normalise(text: str, language: str = "auto") -> str:
    """Spells out numbers, dates, times, currencies, percentages, units, abbreviations and symbols in English text.

    `language` is "auto" (English if the text is mostly Latin-script and not recognisably another European
    language), an English code ("en", "en-US", "eng", "english") to force the English rules, or any other code to
    return the text unchanged. Text in other scripts (CJK, Cyrillic, Arabic, ...) is never changed, including
    the numbers in it.

        >>> normalise("It is 3:30 pm and 22°C.")
        'It is three thirty p m and twenty-two degrees Celsius.'
    """
    return Normaliser(language)(text)
