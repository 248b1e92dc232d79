"""The facts every part of llasa-rt agrees on, defined once: Llasa's token layout and the LM graph's I/O names.

The token ids are fixed by how the Llasa checkpoints were trained (shared/research/llasa-spec.md §1.2): the
65,536 X-Codec2 codes are the added tokens <|s_0|>..<|s_65535|> at 128264.., END is
<|SPEECH_GENERATION_END|>. The exporter writes `LLASA_TOKENS` into each bundle's manifest; the runtime
reads the layout back from the manifest (`Bundle.manifest.tokens`) and builds the C++ core's
configuration, the logits buffers and the codec's code range from it. Nothing else spells these numbers.

The LM graph's input/output names follow onnxruntime-genai (`LmIo`); the exporter names the graph's
tensors with it and the backends bind them with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TokenLayout:
    """Where Llasa's speech tokens live in the vocabulary, and which rows the exported LM head keeps."""

    speech_base_id: int  # token id of <|s_0|>; code c is token speech_base_id + c
    speech_count: int  # number of X-Codec2 codes (= codebook size)
    start_id: int  # <|SPEECH_GENERATION_START|>
    end_id: int  # <|SPEECH_GENERATION_END|>: ends an utterance (the head's last row)
    vocab_size: int  # rows of the checkpoint's embedding table
    markers: dict[str, int] = field(default_factory=dict)  # Llasa's marker tokens -> ids

    @property
    def head_rows(self) -> int:
        """Rows of the exported LM head: every speech code, then END."""
        return self.speech_count + 1

    @property
    def end_row(self) -> int:
        """The head row of END (the last one)."""
        return self.speech_count

    def head_token_ids(self) -> np.ndarray:
        """Vocabulary id of each head row: <|s_0|>..<|s_N-1|>, then END (int64)."""
        return np.concatenate([np.arange(self.speech_base_id, self.speech_base_id + self.speech_count),
                               [self.end_id]]).astype(np.int64)

    def code_to_token(self, codes: np.ndarray) -> np.ndarray:
        """Speech codes -> token ids (int64)."""
        return np.asarray(codes, dtype=np.int64) + self.speech_base_id

    def token_to_code(self, ids: np.ndarray) -> np.ndarray:
        """Speech token ids -> codes (int32); ids outside the speech range are not checked here."""
        return (np.asarray(ids, dtype=np.int64) - self.speech_base_id).astype(np.int32)

    def head_rows_json(self) -> list[dict[str, int]]:
        """The manifest's description of the head: row -> token id runs."""
        return [{"row": 0, "token": self.speech_base_id, "count": self.speech_count},
                {"row": self.end_row, "token": self.end_id, "count": 1}]


# Llasa's layout (all of Llasa-1B/3B/8B share it).
LLASA_TOKENS = TokenLayout(
    speech_base_id=128264,
    speech_count=65536,
    start_id=128260,
    end_id=128261,
    vocab_size=193800,
    markers={
        "<|TEXT_GENERATION_START|>": 128256,
        "<|TEXT_GENERATION_END|>": 128257,
        "<|TEXT_UNDERSTANDING_START|>": 128258,
        "<|TEXT_UNDERSTANDING_END|>": 128259,
        "<|SPEECH_GENERATION_START|>": 128260,
        "<|SPEECH_GENERATION_END|>": 128261,
        "<|SPEECH_UNDERSTANDING_START|>": 128262,
        "<|SPEECH_UNDERSTANDING_END|>": 128263,
    },
)


class LmIo:
    """Tensor names of the LM graph (onnxruntime-genai's convention)."""

    INPUT_IDS = "input_ids"  # int64 [batch, sequence]
    ATTENTION_MASK = "attention_mask"  # int64 [batch, past + sequence], all ones
    POSITION_IDS = "position_ids"  # int64 [batch, sequence]
    LOGITS = "logits"  # float32 [batch, head_rows], last position only

    @staticmethod
    def past(layer: int, kind: str) -> str:
        """Input K or V cache of a layer (`kind` "key" or "value")."""
        return f"past_key_values.{layer}.{kind}"

    @staticmethod
    def present(layer: int, kind: str) -> str:
        """Output K or V cache of a layer (`kind` "key" or "value")."""
        return f"present.{layer}.{kind}"

    @staticmethod
    def present_to_past(name: str) -> str:
        """The input name that takes an output's cache back (growing-past loops)."""
        return name.replace("present.", "past_key_values.", 1)

    # Layered flavour: the decoder as segment graphs with attention between them (run by the C++ kernel).
    QUERY = "query"  # float32 [batch, sequence, heads * head_dim], rotary applied (segments 0 .. L-1)
    KEY = "key"  # float32 [batch, sequence, kv_heads * head_dim], rotary applied
    VALUE = "value"  # float32 [batch, sequence, kv_heads * head_dim]
    RESIDUAL = "residual"  # activation dtype [batch, sequence, hidden]: the residual stream out (segments 0 .. L-1)
    RESIDUAL_IN = "residual_in"  # the previous segment's residual (segments 1 .. L)
    ATTENTION = "attention"  # float32 [batch, sequence, heads * head_dim]: attention output (segments 1 .. L)

    @staticmethod
    def segment_file(index: int) -> str:
        """File name of segment `index` of a layered LM (0: embedding + layer 0's qkv, L: the head)."""
        return f"lm.{index}.onnx"

    LAYERED_DATA = "lm.layered.data"  # the one external data file of all segments
