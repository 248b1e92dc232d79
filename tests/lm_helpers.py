"""Test helpers for the LM graph: the speech-rows mask for transformers, and the plain ORT driver (from the
package: llasa_rt.backends.ort.GrowingPastLm)."""

from __future__ import annotations

import numpy as np

from llasa_rt.backends.ort import GrowingPastLm
from llasa_rt.layout import LLASA_TOKENS

HEAD_IDS = LLASA_TOKENS.head_token_ids()  # vocabulary id of each row of the exported head


def random_prompt(length: int, seed: int = 3) -> np.ndarray:
    """[1, length] ids: <|begin_of_text|><|start_header_id|>, random text tokens, <|SPEECH_GENERATION_START|>."""
    rng = np.random.default_rng(seed)
    text = rng.integers(0, 128000, size=length - 3)
    return np.concatenate([[128000, 128006], text, [LLASA_TOKENS.start_id]]).astype(np.int64)[None]


class SpeechRowsOnly:
    """transformers LogitsProcessor: only the rows Llasa can emit (what our graph's head keeps)."""

    def __init__(self, vocab: int) -> None:
        import torch

        self.mask = torch.full((vocab,), float("-inf"))
        self.mask[torch.as_tensor(HEAD_IDS)] = 0.0

    def __call__(self, input_ids, scores):
        return scores + self.mask


__all__ = ["HEAD_IDS", "LLASA_TOKENS", "GrowingPastLm", "SpeechRowsOnly", "random_prompt"]
