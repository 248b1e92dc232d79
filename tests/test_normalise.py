"""normalise(): English text in its spoken form; other languages unchanged; idempotent, total on str, linear time.

Each table row reads like the spec: written input -> expected spoken form.
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llasa_rt.errors import InputError
from llasa_rt.normalise import Normaliser, cardinal, is_english, normalise, ordinal, year
from llasa_rt.text import _SENTENCE, split_text

MODULE = Path(__file__).resolve().parents[1] / "python" / "llasa_rt" / "normalise.py"

CARDINALS = [
    ("42", "forty-two"),
    ("7", "seven"),
    ("0", "zero"),
    ("100", "one hundred"),
    ("101", "one hundred one"),
    ("1,234", "one thousand two hundred thirty-four"),
    ("12345", "twelve thousand three hundred forty-five"),
    ("1,000,000", "one million"),
    ("3,000,000,000", "three billion"),
    ("1,000,000,000,000", "one trillion"),
    ("1000000000000", "one trillion"),
    ("2,500,000,000,017", "two trillion five hundred billion seventeen"),
    ("-5", "minus five"),
    ("It fell to -12 today.", "It fell to minus twelve today."),
    ("007", "zero zero seven"),
    ("Code 0451", "Code zero four five one"),
    ("1234567890", "one two three four five six seven eight nine zero"),
    ("Room 101", "Room one hundred one"),
    ("MP3", "MP three"),
    ("3D", "three D"),
    ("1, 2, 3", "one, two, three"),
]
DECIMALS = [
    ("3.14", "three point one four"),
    ("0.5", "zero point five"),
    (".5", "point five"),
    ("-3.5", "minus three point five"),
    ("1,234.56", "one thousand two hundred thirty-four point five six"),
    ("Version 3.14.1", "Version three point fourteen point one"),
    ("192.168.0.1", "one hundred ninety-two dot one hundred sixty-eight dot zero dot one"),
]
ORDINALS = [
    ("1st", "first"),
    ("2nd", "second"),
    ("3rd", "third"),
    ("12th", "twelfth"),
    ("22nd", "twenty-second"),
    ("103rd", "one hundred third"),
    ("1,000th", "one thousandth"),
]
FRACTIONS_RANGES = [
    ("1/2", "one half"),
    ("3/4", "three quarters"),
    ("2/3", "two thirds"),
    ("5/8", "five eighths"),
    ("2 1/2 cups", "two and one half cups"),
    ("½", "one half"),
    ("2½", "two and one half"),
    ("24/7", "twenty-four seven"),
    ("3/50", "three over fifty"),
    ("10-20", "ten to twenty"),
    ("pages 5–10", "pages five to ten"),
    ("1990-1995", "nineteen ninety to nineteen ninety-five"),
    ("2020-21", "twenty twenty to twenty-one"),
    ("a 3-2 win", "a three-two win"),
    ("COVID-19", "COVID-nineteen"),
    ("16:9", "sixteen to nine"),
]
YEARS_DATES = [
    ("1999", "nineteen ninety-nine"),
    ("2005", "two thousand five"),
    ("2000", "two thousand"),
    ("2024", "twenty twenty-four"),
    ("1905", "nineteen oh five"),
    ("1900", "nineteen hundred"),
    ("in 1066", "in one thousand sixty-six"),
    ("the 2010s", "the twenty tens"),
    ("the 1990s", "the nineteen nineties"),
    ("the '90s", "the nineties"),
    ("her 20s", "her twenties"),
    ("12/25/2024", "December twenty-fifth, twenty twenty-four"),
    ("2024-12-25", "December twenty-fifth, twenty twenty-four"),
    ("Dec. 25, 2024", "December twenty-fifth, twenty twenty-four"),
    ("December 25th", "December twenty-fifth"),
    ("25 December 2024", "the twenty-fifth of December, twenty twenty-four"),
    ("on the 25th of December", "on the twenty-fifth of December"),
    ("25.12.2024", "the twenty-fifth of December, twenty twenty-four"),
    ("13/12/2024", "the thirteenth of December, twenty twenty-four"),
    ("12/25/99", "December twenty-fifth, ninety-nine"),
    ("in March 2024", "in March twenty twenty-four"),
    ("Jan 1", "January first"),
]
TIMES = [
    ("3:30 pm", "three thirty p m"),
    ("3:30 PM", "three thirty p m"),
    ("14:05", "fourteen oh five"),
    ("9:00", "nine o'clock"),
    ("18:00", "eighteen hundred"),
    ("3pm", "three p m"),
    ("7 a.m. sharp", "seven a m sharp"),
    ("12:00 pm", "twelve noon"),
    ("12 am", "twelve midnight"),
    ("noon", "noon"),
    ("11:59:59 pm", "eleven fifty-nine and fifty-nine seconds p m"),
    ("We leave at 5 p.m. Then we eat.", "We leave at five p m. Then we eat."),
]
MONEY_PERCENT = [
    ("$5", "five dollars"),
    ("$1", "one dollar"),
    ("$5.50", "five dollars and fifty cents"),
    ("$0.99", "ninety-nine cents"),
    ("$1.01", "one dollar and one cent"),
    ("$5.00", "five dollars"),
    ("$1,234.56", "one thousand two hundred thirty-four dollars and fifty-six cents"),
    ("£3", "three pounds"),
    ("£1.50", "one pound and fifty pence"),
    ("€10.99", "ten euros and ninety-nine cents"),
    ("10 €", "ten euros"),
    ("¥500", "five hundred yen"),
    ("$1.2 million", "one point two million dollars"),
    ("$3bn", "three billion dollars"),
    ("$5k", "five thousand dollars"),
    ("50¢", "fifty cents"),
    ("100 USD", "one hundred US dollars"),
    ("-$5", "minus five dollars"),
    ("$10-$20", "ten to twenty dollars"),
    ("$1-2 million", "one to two million dollars"),
    ("50%", "fifty percent"),
    ("3.5%", "three point five percent"),
    ("-2%", "minus two percent"),
    ("10-20%", "ten to twenty percent"),
]
UNITS = [
    ("5 km", "five kilometers"),
    ("1 km", "one kilometer"),
    ("2kg", "two kilograms"),
    ("30 cm", "thirty centimeters"),
    ("5 mm", "five millimeters"),
    ("100 m", "one hundred meters"),
    ("250 g", "two hundred fifty grams"),
    ("60 mph", "sixty miles per hour"),
    ("100 km/h", "one hundred kilometers per hour"),
    ("22°C", "twenty-two degrees Celsius"),
    ("1 °C", "one degree Celsius"),
    ("-5 °C", "minus five degrees Celsius"),
    ("98.6°F", "ninety-eight point six degrees Fahrenheit"),
    ("a 90° turn", "a ninety degrees turn"),
    ("3 kWh", "three kilowatt hours"),
    ("16 GB", "sixteen gigabytes"),
    ("500 MB", "five hundred megabytes"),
    ("250 ml", "two hundred fifty milliliters"),
    ("2 l", "two liters"),
    ("1.5 km", "one point five kilometers"),
    ("5-10 km", "five to ten kilometers"),
    ("6 ft", "six feet"),
    ("45 min", "forty-five minutes"),
]
ABBREVIATIONS = [
    ("Mr. Smith", "Mister Smith"),
    ("Mrs. Jones", "Missus Jones"),
    ("Ms. Lee", "Miz Lee"),
    ("Dr. Smith", "Doctor Smith"),
    ("Prof. Xavier", "Professor Xavier"),
    ("St. Louis", "Saint Louis"),
    ("Main St. is closed.", "Main Street is closed."),
    ("I live on Elm Dr. in town.", "I live on Elm Drive in town."),
    ("Meet at 5th St.", "Meet at fifth Street."),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("apples, etc. Then pears.", "apples, et cetera. Then pears."),
    ("fruit, e.g., apples", "fruit, for example, apples"),
    ("fruit, i.e. apples", "fruit, that is apples"),
    ("cats vs. dogs", "cats versus dogs"),
    ("No. 5", "number five"),
    ("see p. 12", "see page twelve"),
    ("Apple Inc. is big.", "Apple Incorporated is big."),
    ("the U.S. economy", "the U S economy"),
    ("Call the Dr.", "Call the Doctor."),
    ("Call 911", "Call nine one one"),
    ("a 50/50 chance", "a fifty-fifty chance"),
    ("tea w/ milk", "tea with milk"),
    ("on Fri., Mar. 7", "on Friday, March seventh"),
    ("Jane Doe, Ph.D., spoke.", "Jane Doe, P H D, spoke."),
]
SYMBOLS_ADDRESSES = [
    ("Tom & Jerry", "Tom and Jerry"),
    ("R&D", "R and D"),
    ("2+2", "two plus two"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("3 × 4", "three times four"),
    ("2x4", "two by four"),
    ("10x faster", "ten times faster"),
    ("C++", "C plus plus"),
    ("#1", "number one"),
    ("~5 people", "about five people"),
    ("follow @llasa", "follow at llasa"),
    ("john.doe@example.com", "john dot doe at example dot com"),
    ("See https://www.example.com/docs?x=1.", "See example dot com slash docs."),
    ("Visit example.org today", "Visit example dot org today"),
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
    ("Call (555) 123-4567", "Call five five five, one two three, four five six seven"),
    ("Dial 555-1234", "Dial five five five, one two three four"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
]
SENTENCES = [
    ("Dr. Smith paid $5.50 for 2 kg on Dec. 25, 2024.",
     "Doctor Smith paid five dollars and fifty cents for two kilograms on December twenty-fifth, twenty twenty-four."),
    ("It is 3:30 pm and 22°C outside.", "It is three thirty p m and twenty-two degrees Celsius outside."),
    ("Prices rose 3.5% in 2023, to $1.2 million.",
     "Prices rose three point five percent in twenty twenty-three, to one point two million dollars."),
    ("Is it 5?", "Is it five?"),
    ("She scored 99.5 points!", "She scored ninety-nine point five points!"),
]
TABLE = (CARDINALS + DECIMALS + ORDINALS + FRACTIONS_RANGES + YEARS_DATES + TIMES + MONEY_PERCENT + UNITS
         + ABBREVIATIONS + SYMBOLS_ADDRESSES + SENTENCES)


@pytest.mark.parametrize(("written", "spoken"), TABLE, ids=[w for w, _ in TABLE])
def test_english_spoken_form(written, spoken):
    assert normalise(written) == spoken


def test_table_is_big_enough():
    assert len(TABLE) >= 80


@pytest.mark.parametrize(("written", "spoken"), TABLE, ids=[w for w, _ in TABLE])
def test_output_is_a_fixed_point(written, spoken):
    """Normalising the spoken form again changes nothing (and it has no ASCII digits left)."""
    assert normalise(spoken) == spoken
    assert not any(c.isascii() and c.isdigit() for c in spoken)


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety-nine"), (110, "one hundred ten"),
    (1_000_001, "one million one"), (-7, "minus seven"),
    (999_999_999_999_999, "nine hundred ninety-nine trillion nine hundred ninety-nine billion nine hundred "
                          "ninety-nine million nine hundred ninety-nine thousand nine hundred ninety-nine"),
    (10**21, "one zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero "
             "zero zero"),
])
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (1, "first"), (5, "fifth"), (8, "eighth"), (9, "ninth"), (20, "twentieth"), (21, "twenty-first"),
    (100, "one hundredth"), (1_000_000, "one millionth"),
])
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (1066, "ten sixty-six"), (1100, "eleven hundred"), (1984, "nineteen eighty-four"),
    (2001, "two thousand one"), (2010, "twenty ten"), (2099, "twenty ninety-nine"), (3000, "three thousand"),
])
def test_year(n, words):
    assert year(n) == words


# ---- already-spoken and other-language text ------------------------------------------------------------------------

ALREADY_SPOKEN = [
    "Hello there. How are you?",
    "Doctor Smith paid five dollars and fifty cents.",
    "It is three thirty p m and twenty-two degrees Celsius outside.",
    "Saint Louis is on the river; Main Street is closed, et cetera.",
    "She said: \"no, not today!\" — and left…",
    "Line one.\n\nLine two, after a blank line.",
    "We saw the Sun. It was hot. No, it was not; I am sure.",
    "Meet me at noon, or at midnight, in May or in March.",
]


@pytest.mark.parametrize("text", ALREADY_SPOKEN)
def test_spoken_text_is_unchanged(text):
    assert normalise(text) == text


NOT_ENGLISH = [
    "我有3个苹果，价格是5.50元。",
    "2024年12月25日に会いましょう。",
    "서울에서 3시 30분에 만나요.",
    "Привет, мне 25 лет, а тебе 30?",
    "Το τρένο φεύγει στις 10:30.",
    "مرحبا، عمري 25 سنة",
    "שלום, אני בן 25",
    "请访问 https://www.example.com/some/long/path 获取 3 个",
    "Le chat est sur la table à 5 heures, et il dort.",
    "Der Hund ist 5 Jahre alt und sehr groß.",
    "El perro tiene 5 años y es muy grande.",
]


@pytest.mark.parametrize("text", NOT_ENGLISH)
def test_other_languages_pass_through(text):
    assert not is_english(text)
    assert normalise(text) == text
    assert normalise(text, "auto") == text


def test_language_argument():
    assert normalise("It is 5.", "en") == "It is five."
    assert normalise("It is 5.", "en-GB") == "It is five."
    assert normalise("It is 5.", "EN_us") == "It is five."
    assert normalise("It is 5.", "english") == "It is five."
    for code in ("zh", "fr", "de", "ja", "ru", "xx", ""):
        assert normalise("It is 5.", code) == "It is 5."
    assert normalise("Le chat a 5 ans.", "en") == "Le chat a five ans."  # forced English
    assert normalise("我有3个", "en") == "我有 three 个"


def test_detection_counts_letters_not_urls_or_digits():
    assert is_english("42") and is_english("") and is_english("$5, 10%")
    assert is_english("Meet me at Café de la Paix at 5.")  # a few foreign words in English text
    assert is_english("Hello Мир, it is 5")  # mostly Latin
    assert not is_english("Привет мир, hi 5")  # mostly Cyrillic


def test_normaliser_object():
    n = Normaliser()
    assert n("Dr. Smith is 42.") == "Doctor Smith is forty-two."
    assert n.applies_to("hello") and not n.applies_to("你好")
    assert Normaliser("fr")("It is 5.") == "It is 5."
    assert Normaliser("en")("我有3个") == "我有 three 个"
    assert repr(Normaliser("en")) == "Normaliser(language='en')"


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["list"]])
def test_non_str_is_an_input_error(bad):
    with pytest.raises(InputError, match="must be a str"):
        normalise(bad)
    with pytest.raises(InputError, match="must be a str"):
        Normaliser(bad)
    assert isinstance(InputError("x"), ValueError)


# ---- punctuation, splitting, robustness, speed ---------------------------------------------------------------------


def test_sentence_punctuation_survives_for_the_splitter():
    text = ("Dr. Smith arrived at 3 p.m. He paid $5.50, i.e. a lot. Was it 12/25/2024? Yes! "
            "The U.S. team won 3-2. Apples, pears, etc. Then we left.")
    spoken = normalise(text)
    assert spoken == ("Doctor Smith arrived at three p m. He paid five dollars and fifty cents, that is a lot. "
                      "Was it December twenty-fifth, twenty twenty-four? Yes! The U S team won three-two. "
                      "Apples, pears, et cetera. Then we left.")
    sentences = [s for s in _SENTENCE.split(spoken) if s.strip()]  # the splitter's own sentence rule
    assert [s[-1] for s in sentences] == [".", ".", "?", "!", ".", ".", "."]
    assert sentences[0] == "Doctor Smith arrived at three p m."
    pieces = split_text(spoken, max_chars=60)
    assert " ".join(pieces) == spoken and all(len(p) <= 60 for p in pieces)


def test_whitespace_and_newlines_are_kept():
    assert normalise("  5 apples\n\n6 pears  ") == "  five apples\n\nsix pears  "
    assert normalise("a\t&\tb") == "a and b"


TOKENS = ["1", "2", "0", "12", "25", "2024", "1999", "3.5", ".", ",", ":", "/", "-", "–", "$", "£", "€", "¢", "%",
          "&", "@", "+", "=", "x", "#", "~", "'", "s", "st", "th", "km", "m", "h", "pm", "a.m.", "p.m.", "AM", " ",
          " ", "\n", "Mr.", "Dr.", "St.", "etc.", "e.g.", "No.", "Dec", "May", "of", "the", "U.S.", "vs", "w/",
          "www.", "http://", ".com", "A", "b", "Z", "°", "C", "F", "½", "(", ")", "million", "k", "M", "USD", "é",
          "ж", "中", "GB", "×"]


def _random_unicode(rng: random.Random, n: int) -> str:
    # Mostly the Basic Multilingual Plane (surrogates included), sometimes anywhere in Unicode.
    return "".join(chr(rng.randrange(0x110000) if rng.random() < 0.2 else rng.randrange(0x10000)) for _ in range(n))


def test_fuzz_random_unicode_never_raises_and_is_idempotent():
    rng = random.Random(1234)
    for _ in range(1500):
        text = _random_unicode(rng, rng.randint(0, 40))
        once = normalise(text)
        assert isinstance(once, str)
        assert normalise(once) == once, repr(text)
    for _ in range(300):  # Latin letters and digits around random unicode, so the English rules do run
        text = "".join(rng.choice(["5 ", "Dr. ", "$3.50", " km", _random_unicode(rng, 3), "x", " the "])
                       for _ in range(8))
        once = normalise(text)
        assert normalise(once) == once, repr(text)


def test_fuzz_rule_tokens_is_idempotent():
    """Random strings of the characters and words the rules react to: normalise(normalise(x)) == normalise(x)."""
    rng = random.Random(99)
    for _ in range(4000):
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 12)))
        once = normalise(text)
        assert normalise(once) == once, repr(text)
        forced = normalise(text, "en")
        assert normalise(forced, "en") == forced, repr(text)


def test_huge_numbers_and_odd_inputs():
    assert normalise("9" * 5000) == " ".join(["nine"] * 5000)  # past int()'s digit limit: read digit by digit
    assert normalise("1" * 22) == " ".join(["one"] * 22)
    assert normalise("$" + "9" * 30) == " ".join(["nine"] * 30) + " dollars"
    assert normalise("1/0") == "one slash zero"
    assert normalise("\ud800 5 \udfff") == "\ud800 five \udfff"  # lone surrogates pass through
    assert normalise("\x00 5") == "\x00 five"


def _best_time(text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        normalise(text)
        best = min(best, time.perf_counter() - t)
    return best


def _growth(unit: str, small: int = 20_000, factor: int = 4) -> float:
    """How much longer `factor` times more text takes (about `factor` when the front end is linear, `factor`**2
    when some rule backtracks quadratically). A ratio of two runs on the same machine, not a timed assertion: it
    holds on a loaded machine as on an idle one."""
    def text(n: int) -> str:
        return (unit * (n // len(unit) + 1))[:n]

    return _best_time(text(small * factor), runs=2) / max(_best_time(text(small), runs=3), 1e-4)


def test_100kb_of_text_grows_linearly():
    para = ("On Dec. 25, 2024 at 3:30 pm, Dr. Smith paid $5.50 (about 10%) for 2 kg of apples on Baker St. in "
            "London, etc. Call 555-123-4567 or email jo@example.com. In the 1990s, 1,234 people ran 5 km. ")
    assert _growth(para, small=25_000) < 10  # linear: ~4; quadratic: ~16


@pytest.mark.parametrize("unit", ["1", "a", " ", "1-", "1.", "1/", "$1", "1:", "a@", "1,", "& ", "a1", "St. ",
                                  "vs1", "http://a.", "½", "Mr. "])
def test_pathological_inputs_stay_linear(unit):
    assert _growth(unit) < 10  # linear: ~4; quadratic: ~16


# ---- the module stays light -----------------------------------------------------------------------------------------


def test_module_uses_only_the_standard_library():
    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            assert node.module == "errors", f"normalise.py imports .{node.module}"
    assert imported <= {"__future__", "re", "collections"}, imported


def test_import_pulls_in_no_heavy_module():
    code = ("import sys; import llasa_rt.normalise as n; n.normalise('It is 5.'); "
            "print(sorted(m for m in ('torch', 'numpy', 'onnxruntime', 'tokenizers', 'llasa_rt._core') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docstring_examples():
    import doctest

    import llasa_rt.normalise as module

    assert doctest.testmod(module).failed == 0
