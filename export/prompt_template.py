"""Renders Llasa's prompt once, at export time, so the runtime needs only `tokenizers`.

Llasa's official prompt (model card) is the checkpoint's chat template applied to

    user:      "Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"
    assistant: "<|SPEECH_GENERATION_START|>" + reference codes      (continue_final_message=True)

The template output around {text} does not depend on the text, so we render it with a sentinel and
store the two halves (`prefix`, `suffix`) in the manifest, with the template's date pinned (the Llama-3.2
template otherwise inserts today's date, which would make prompts differ from day to day).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llasa_rt.bundle import PromptTemplate
from llasa_rt.errors import CheckpointError

DEFAULT_DATE = "26 Jul 2024"  # the Llama-3.1 template's own fixed date; any fixed date keeps prompts stable
INSTRUCTION = "Convert the text to speech:"
_SENTINEL = "\u2063LLASA_RT_TEXT\u2063"


def render_prompt(checkpoint: Path, date: str = DEFAULT_DATE) -> PromptTemplate:
    """Returns the manifest's `prompt` section for a checkpoint folder (uses transformers' renderer)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(checkpoint))
    except Exception as e:
        raise CheckpointError(f"transformers cannot load the tokenizer of {checkpoint} ({e})") from e
    template = getattr(tok, "chat_template", None)
    if not template:
        raise CheckpointError(f"{checkpoint}/tokenizer_config.json has no chat_template (Llasa checkpoints ship "
                              "the Llama-3 chat template)")
    chat = [
        {"role": "user", "content": f"{INSTRUCTION}<|TEXT_UNDERSTANDING_START|>{_SENTINEL}<|TEXT_UNDERSTANDING_END|>"},
        {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>"},
    ]
    text = tok.apply_chat_template(chat, tokenize=False, continue_final_message=True, date_string=date)
    if text.count(_SENTINEL) != 1 or not text.endswith("<|SPEECH_GENERATION_START|>"):
        raise CheckpointError(f"the chat template of {checkpoint} does not render Llasa's prompt as expected")
    prefix, suffix = text.split(_SENTINEL)
    return PromptTemplate(
        prefix=prefix,
        suffix=suffix,
        date=date,
        template_sha256=hashlib.sha256(template.encode("utf-8")).hexdigest(),
        voice_text_separator=" ",  # voice cloning: "<reference transcript> <target text>" in one block
    )
