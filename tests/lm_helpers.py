"""A plain ONNX Runtime loop over an exported LM graph (growing past), used as the graph's test driver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from llasa_rt.bundle import SPEECH_BASE_ID, SPEECH_COUNT, SPEECH_END_ID

# Vocabulary id of each row of the exported head.
HEAD_IDS = np.concatenate([np.arange(SPEECH_BASE_ID, SPEECH_BASE_ID + SPEECH_COUNT), [SPEECH_END_ID]])


class SpeechRowsOnly:
    """transformers LogitsProcessor: only the 65,537 rows Llasa can emit (what our graph's head keeps)."""

    def __init__(self, vocab: int) -> None:
        import torch

        self.mask = torch.full((vocab,), float("-inf"))
        self.mask[torch.as_tensor(HEAD_IDS)] = 0.0

    def __call__(self, input_ids, scores):
        return scores + self.mask


class GrowingPastLm:
    """Runs lm.onnx of a bundle one call at a time, feeding each call's present K/V back as the next past."""

    def __init__(self, bundle: Path, threads: int = 2) -> None:
        manifest = json.loads((Path(bundle) / "manifest.json").read_text())
        self.model = manifest["model"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(Path(bundle) / "lm.onnx"), so, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self, batch: int = 1) -> None:
        m = self.model
        kv = np.float16 if m["kv_dtype"] == "float16" else np.float32
        shape = (batch, m["num_kv_heads"], 0, m["head_dim"])
        self.past = {f"past_key_values.{i}.{n}": np.zeros(shape, kv) for i in range(m["num_layers"])
                     for n in ("key", "value")}
        self.length = 0

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feeds ids [B, S] after what was fed so far; returns last-position logits [B, 65537]."""
        ids = np.asarray(ids, dtype=np.int64)
        b, s = ids.shape
        feed = {"input_ids": ids, "attention_mask": np.ones((b, self.length + s), np.int64),
                "position_ids": np.broadcast_to(np.arange(self.length, self.length + s, dtype=np.int64), (b, s)).copy(),
                **self.past}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        self.past = {k.replace("present", "past_key_values"): v for k, v in out.items() if k.startswith("present")}
        self.length += s
        return out["logits"]
