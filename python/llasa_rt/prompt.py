"""Llasa prompts from text (and an optional reference voice), with `tokenizers` only.

The export renders the checkpoint's chat template around a placeholder and stores the two halves in the
manifest (see llasa_rt.export.prompt_template). A prompt is then

    encode(prefix + text + suffix)  +  [speech_base_id + c for c in reference codes]

which equals transformers' `apply_chat_template(chat, tokenize=True, continue_final_message=True)` with
the same date: the template is rendered the same way, and speech codes are single added tokens, so
appending their ids is the same as tokenizing "<|s_c|>" strings.

Voice cloning follows the official recipe: the reference transcript comes first, then the target text,
in one TEXT_UNDERSTANDING block; the reference codes follow <|SPEECH_GENERATION_START|>.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bundle import Bundle, PromptTemplate
from .errors import BundleError, InputError
from .layout import TokenLayout

# Text that the tokenizer would turn into control tokens (<|eot_id|>, <|s_5|>, ...) is refused.
_CONTROL = re.compile(r"<\|[A-Za-z0-9_]+\|>")
_INVALID = re.compile("[\x00\ud800-\udfff]")


class PromptBuilder:
    """Turns text (+ reference voice) into Llasa prompt token ids."""

    def __init__(self, tokenizer_path: str | Path, prompt: PromptTemplate, tokens: TokenLayout) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as e:
            raise BundleError(f"cannot load {tokenizer_path} ({e}); re-export the bundle") from e
        self.prefix, self.suffix = prompt.prefix, prompt.suffix
        self.separator = prompt.voice_text_separator
        self.date = prompt.date
        self.tokens = tokens

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> PromptBuilder:
        """The prompt builder of an opened bundle with an LM."""
        _, tokens, prompt = bundle.manifest.lm_parts()
        return cls(bundle.path("tokenizer.json"), prompt, tokens)

    @staticmethod
    def check_text(text: str, what: str = "text") -> str:
        """Returns the text if it can be spoken; raises InputError naming the problem otherwise."""
        if not isinstance(text, str):
            raise InputError(f"{what} must be a string, not {type(text).__name__}")
        if not text.strip():
            raise InputError(f"{what} is empty; give the words to speak")
        bad = _INVALID.search(text)
        if bad:
            raise InputError(f"{what} holds the invalid character U+{ord(bad.group(0)):04X} at position {bad.start()} "
                             "(a lone surrogate or NUL, e.g. from badly decoded bytes); pass valid Unicode text")
        found = _CONTROL.search(text)
        if found:
            raise InputError(f"{what} contains the control token {found.group(0)!r}, which would be read as a model "
                             "instruction, not as text; remove it")
        return text

    def text_ids(self, text: str) -> list[int]:
        """Token ids of the rendered prompt text (without reference codes)."""
        return self.tokenizer.encode(self.prefix + text + self.suffix, add_special_tokens=False).ids

    def build(self, text: str, voice_transcript: str | None = None,
              voice_codes: Sequence[int] | np.ndarray | None = None) -> list[int]:
        """Prompt ids for `text`, optionally cloning a voice (its transcript and X-Codec2 codes)."""
        self.check_text(text)
        if (voice_transcript is None) != (voice_codes is None):
            raise InputError("a reference voice needs both its transcript and its codes")
        if voice_transcript is None:
            return self.text_ids(text)
        self.check_text(voice_transcript, "the reference transcript")
        codes = np.asarray(voice_codes, dtype=np.int64).reshape(-1)
        count = self.tokens.speech_count
        if codes.size and (codes.min() < 0 or codes.max() >= count):
            raise InputError(f"reference codes must be in [0, {count}); got [{codes.min()}, {codes.max()}]")
        ids = self.text_ids(voice_transcript + self.separator + text)
        return ids + self.tokens.code_to_token(codes).tolist()
