"""How far a quantised (or otherwise different) LM graph drifts from a reference graph.

Both bundles' LMs are fed the same token sequences (teacher forcing): a Llasa prompt for each text of a
prompt set, then the reference's own greedy speech tokens. At every step we compare the two distributions
over the 65,537 speech rows: top-1 agreement, KL(reference || candidate) at temperature 1, and the largest
logit difference. On trained weights this says how much int8 / int4 / fp16 change the model; on random
weights (the tests) it only orders the precisions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llasa_rt.bundle import SPEECH_COUNT, Bundle, head_token_ids
from llasa_rt.prompt import PromptBuilder

DATA = Path(__file__).resolve().parent / "data"


def default_prompts() -> list[str]:
    """The packaged prompt set (16 English sentences of different kinds)."""
    return [line.strip() for line in (DATA / "prompts.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


class GrowingPastLm:
    """The plainest driver of a bundle's lm.onnx: one session run per call, present K/V fed back as past."""

    def __init__(self, bundle: str | Path, threads: int | None = None) -> None:
        root = Path(bundle)
        self._load(root / "lm.onnx", json.loads((root / "manifest.json").read_text())["model"], threads)

    @classmethod
    def from_graph(cls, onnx_path: Path, model: dict, threads: int | None = None) -> GrowingPastLm:
        """For a graph outside a bundle (e.g. while an export is still staged); `model` = the manifest's facts."""
        lm = cls.__new__(cls)
        lm._load(onnx_path, model, threads)
        return lm

    def _load(self, onnx_path: Path, model: dict, threads: int | None) -> None:
        import onnxruntime as ort

        self.model = model
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self, batch: int = 1) -> None:
        """Forgets the sequence (the next call starts at position 0)."""
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
        pos = np.broadcast_to(np.arange(self.length, self.length + s, dtype=np.int64), (b, s)).copy()
        feed = {"input_ids": ids, "attention_mask": np.ones((b, self.length + s), np.int64), "position_ids": pos,
                **self.past}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        self.past = {k.replace("present", "past_key_values"): v for k, v in out.items() if k.startswith("present")}
        self.length += s
        return out["logits"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class DriftReport:
    """Teacher-forced comparison of a candidate LM with a reference LM."""

    prompts: int  # texts used
    steps: int  # compared positions (prefill + decode steps over all texts)
    top1_agreement: float  # fraction of positions where both pick the same most likely row
    mean_kl: float  # mean KL(reference || candidate) in nats over the 65,537 rows
    max_kl: float  # largest per-position KL
    max_abs_logit_diff: float  # largest |logit difference| anywhere

    def __str__(self) -> str:
        return (f"{self.steps} positions over {self.prompts} prompts: top-1 agreement "
                f"{100 * self.top1_agreement:.1f}%, KL mean {self.mean_kl:.4g} / max {self.max_kl:.4g} nats, "
                f"max |logit diff| {self.max_abs_logit_diff:.4g}")


def measure_drift(reference: str | Path, candidate: str | Path, texts: list[str] | None = None,
                  steps: int = 32, threads: int | None = None) -> DriftReport:
    """Compares `candidate`'s LM with `reference`'s on the same tokens (see the module docstring)."""
    ref_b, cand_b = Bundle.open(reference, verify="fast"), Bundle.open(candidate, verify="fast")
    if ref_b.manifest.prompt != cand_b.manifest.prompt:
        raise ValueError("the two bundles render prompts differently; export both from the same checkpoint")
    builder = PromptBuilder(ref_b.path("tokenizer.json"), ref_b.manifest.prompt)
    ref, cand = GrowingPastLm(ref_b.root, threads), GrowingPastLm(cand_b.root, threads)
    texts = texts or default_prompts()
    head_ids = head_token_ids()
    agree, kls, worst = [], [], 0.0
    for text in texts:
        ref.reset()
        cand.reset()
        ids = np.asarray([builder.build(text)], np.int64)
        for _ in range(steps + 1):
            a, b = ref.step(ids), cand.step(ids)
            la, lb = _log_softmax(a[0]), _log_softmax(b[0])
            kls.append(float((np.exp(la) * (la - lb)).sum()))
            agree.append(int(np.argmax(a[0])) == int(np.argmax(b[0])))
            worst = max(worst, float(np.abs(a - b).max()))
            row = int(np.argmax(a[0, :SPEECH_COUNT]))  # continue with the reference's greedy speech token
            ids = np.array([[head_ids[row]]], np.int64)
    return DriftReport(prompts=len(texts), steps=len(kls), top1_agreement=float(np.mean(agree)),
                       mean_kl=float(np.mean(kls)), max_kl=float(np.max(kls)), max_abs_logit_diff=worst)
