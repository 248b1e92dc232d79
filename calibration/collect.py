"""Calibration data: Llasa prompts plus speech tokens the fp32 graph writes itself, and the linears' input statistics.

(`collect_codec` does the same for the X-Codec2 decoder graph on code sequences.)

For each text of the prompt set the chat-template prompt is fed to the float graph, then `steps` speech tokens
are sampled from the graph's own distribution (temperature 0.8, seeded) and fed back one at a time, so the
statistics cover the prompt positions (prefill) and the speech positions (decode steps, including the head's
input, which only the last position reaches). Every linear's input is exposed as an extra graph output of a
temporary copy of the graph (the same weights file, no copy of the weights) and summarised per tensor:
largest |x|, largest |x| per input channel, mean |x| per input channel, and a uniform sample of rows (for the
AWQ search's output error).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from llasa_rt.bundle import ModelFacts
from llasa_rt.layout import LmIo

from .graph import NP_TYPES, GraphFile


@dataclass
class ActivationStats:
    """What calibration saw at one linear's input x [..., K]."""

    absmax: float = 0.0  # largest |x|
    channel_absmax: np.ndarray | None = None  # [K] largest |x| per input channel
    channel_abssum: np.ndarray | None = None  # [K] sum of |x| per input channel (divide by rows for the mean)
    rows: int = 0  # rows (positions) seen
    sample: np.ndarray | None = None  # [<= sample_rows, K] float32: a uniform sample of the rows seen
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def add(self, x: np.ndarray, sample_rows: int) -> None:
        """Accumulates a batch of activations (any leading shape, channels last)."""
        x = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
        a = np.abs(x)
        if self.channel_absmax is None:
            self.channel_absmax = a.max(axis=0)
            self.channel_abssum = a.sum(axis=0, dtype=np.float64)
            self.sample = np.zeros((0, x.shape[1]), np.float32)
        else:
            self.channel_absmax = np.maximum(self.channel_absmax, a.max(axis=0))
            self.channel_abssum += a.sum(axis=0, dtype=np.float64)
        self.absmax = max(self.absmax, float(a.max()))
        for row in x:  # reservoir sampling: every row seen has the same chance to be kept
            if len(self.sample) < sample_rows:
                self.sample = np.concatenate([self.sample, row[None]])
            else:
                j = int(self.rng.integers(0, self.rows + 1))
                if j < sample_rows:
                    self.sample[j] = row
            self.rows += 1

    @property
    def channel_absmean(self) -> np.ndarray:
        """Mean |x| per input channel."""
        return (self.channel_abssum / max(self.rows, 1)).astype(np.float32)


@dataclass
class Calibration:
    """Statistics per linear input tensor, and what they were computed from."""

    stats: dict[str, ActivationStats]  # activation tensor name -> statistics
    prompts: int  # texts used
    steps: int  # speech tokens generated per text
    positions: int  # positions run through the graph in total


def _speech_token(logits: np.ndarray, head_ids: np.ndarray, speech_count: int, rng: np.random.Generator) -> int:
    """A speech token sampled at temperature 0.8 from the speech rows (never END, so every text gets `steps`)."""
    z = logits[:speech_count].astype(np.float64) / 0.8
    p = np.exp(z - z.max())
    return int(head_ids[rng.choice(speech_count, p=p / p.sum())])


def _probe_graph(graph_path: Path, convs: bool = False) -> tuple[list[Any], list[str], Path]:
    """(the graph's weight products, their input tensors - each once -, a probe copy of the graph that also outputs
    those tensors). The probe is saved next to the original so that its external data reference resolves to the same
    file; the caller deletes it."""
    src = GraphFile(graph_path)
    linears = src.linears(convs=convs)
    tensors = list(dict.fromkeys(lin.input for lin in linears))
    dtypes = {lin.input: lin.dtype for lin in linears}
    proto = src.model
    existing = {o.name for o in proto.graph.output}
    for name in tensors:
        if name not in existing:
            proto.graph.output.append(helper.make_tensor_value_info(name, NP_TYPES[np.dtype(dtypes[name])], None))
    probe = graph_path.parent / f".{graph_path.stem}.calibration-{os.getpid()}.onnx"
    try:
        onnx.save_model(proto, str(probe))
    except BaseException:
        probe.unlink(missing_ok=True)
        raise
    return linears, tensors, probe


def collect(graph_path: Path, model: ModelFacts, portable: bool, token_prompts: list[list[int]],
            head_ids: np.ndarray, speech_count: int, steps: int = 32, sample_rows: int = 256,
            threads: int | None = None, seed: int = 0, log: Callable[[str], None] | None = None) -> Calibration:
    """Runs the prompts (+ `steps` self-generated speech tokens each) through an LM graph (`portable`: the
    standard-operator graph with capacity KV inputs, else lm.onnx's layout); returns the statistics."""
    from llasa_rt.backends.ort import GrowingPastLm
    from llasa_rt.backends.portable import PortableLm

    _, tensors, probe = _probe_graph(graph_path)
    stats = {name: ActivationStats(rng=np.random.default_rng(seed + i)) for i, name in enumerate(tensors)}
    rng = np.random.default_rng(seed)
    positions = 0
    try:
        runner = (PortableLm if portable else GrowingPastLm)(probe, model, threads)
        for n, prompt in enumerate(token_prompts):
            if log:
                log(f"calibration prompt {n + 1}/{len(token_prompts)} ({len(prompt)} tokens + {steps} speech tokens)")
            runner.reset()
            ids = np.asarray([prompt], np.int64)
            for _ in range(steps + 1):
                runner.step(ids)
                out = runner.outputs
                positions += ids.shape[1]
                for name in tensors:
                    stats[name].add(out[name], sample_rows)
                ids = np.array([[_speech_token(out[LmIo.LOGITS][0], head_ids, speech_count, rng)]], np.int64)
    finally:
        probe.unlink(missing_ok=True)
    return Calibration(stats=stats, prompts=len(token_prompts), steps=steps, positions=positions)


def collect_codec(graph_path: Path, code_sets: list[np.ndarray], input_name: str, sample_rows: int = 256,
                  threads: int | None = None, seed: int = 0) -> Calibration:
    """Runs code sequences (each int32 [1, 1, frames]) through a codec decoder graph; statistics of every MatMul and
    Conv input (a Conv's channels are its input's axis 1)."""
    from llasa_rt.backends.ort import create_session

    linears, tensors, probe = _probe_graph(graph_path, convs=True)
    conv_inputs = {lin.input for lin in linears if lin.conv}
    stats = {name: ActivationStats(rng=np.random.default_rng(seed + i)) for i, name in enumerate(tensors)}
    positions = 0
    try:
        session = create_session(probe, threads)
        for codes in code_sets:
            out = dict(zip(tensors, session.run(tensors, {input_name: codes}), strict=True))
            positions += codes.shape[-1]
            for name in tensors:
                x = np.moveaxis(out[name], 1, -1) if name in conv_inputs else out[name]
                stats[name].add(x, sample_rows)
    finally:
        probe.unlink(missing_ok=True)
    return Calibration(stats=stats, prompts=len(code_sets), steps=0, positions=positions)
