"""Prompt ids from our tokenizers-only builder equal transformers' apply_chat_template."""

from __future__ import annotations

import numpy as np
import pytest

from llasa_rt.bundle import Bundle
from llasa_rt.errors import InputError
from llasa_rt.prompt import PromptBuilder

TEXTS = [
    "Hello world.",
    "  Leading and trailing spaces  ",
    "Numbers 1,234.56 and 2026; quotes \"like this\" and 'this'.",
    "Ünïcödé: naïve café, 東京, Привет, emoji 🙂 — dashes…",
    "Line one.\nLine two.\n\nLine four.",
]


@pytest.fixture(scope="module")
def setup(tiny_bundle, tiny_checkpoint):
    from transformers import AutoTokenizer

    bundle = tiny_bundle("h64", "fp32")
    builder = PromptBuilder.from_bundle(Bundle.open(bundle))
    hf = AutoTokenizer.from_pretrained(str(tiny_checkpoint("h64")))
    return builder, hf, builder.date


def _hf_ids(hf, text: str, codes: list[int], date: str) -> list[int]:
    chat = [
        {"role": "user",
         "content": f"Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"},
        {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>" + "".join(f"<|s_{c}|>" for c in codes)},
    ]
    out = hf.apply_chat_template(chat, tokenize=True, continue_final_message=True, date_string=date)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


@pytest.mark.parametrize("text", TEXTS)
def test_plain_prompt_equals_apply_chat_template(setup, text):
    builder, hf, date = setup
    assert builder.build(text) == _hf_ids(hf, text, [], date)


@pytest.mark.parametrize("text", TEXTS[:3])
def test_voice_cloning_prompt_equals_official_recipe(setup, text):
    """Official recipe: input_text = prompt_text + ' ' + target_text; prefix codes after SPEECH_GENERATION_START."""
    builder, hf, date = setup
    transcript = "This is the reference speaker talking."
    codes = [0, 17, 65535, 4096, 123]
    ours = builder.build(text, voice_transcript=transcript, voice_codes=np.array(codes, np.int32))
    assert ours == _hf_ids(hf, transcript + " " + text, codes, date)
    assert ours[-len(codes):] == [128264 + c for c in codes]


def test_date_is_pinned_and_recorded(setup):
    builder, _, date = setup
    assert date == "26 Jul 2024"
    assert f"Today Date: {date}" in builder.prefix
    assert builder.suffix.endswith("<|SPEECH_GENERATION_START|>")


@pytest.mark.parametrize(("text", "message"), [
    ("", "text is empty"),
    ("   \n\t ", "text is empty"),
    ("say <|eot_id|> now", "control token '<|eot_id|>'"),
    ("hi <|s_42|>", "control token '<|s_42|>'"),
])
def test_bad_text_is_refused_with_a_clear_message(setup, text, message):
    builder, _, _ = setup
    with pytest.raises(InputError, match=message.replace("|", r"\|")):
        builder.build(text)


def test_bad_voice_codes_are_refused(setup):
    builder, _, _ = setup
    with pytest.raises(InputError, match="reference codes must be in"):
        builder.build("hi", voice_transcript="ref", voice_codes=[1, 65536])
    with pytest.raises(InputError, match="needs both"):
        builder.build("hi", voice_transcript="ref")
