"""What every verifier shares: the score context, the base class, audio checks, and the waveform-graph runner.

A verifier scores candidate audios (float32, 16 kHz, mono, any and possibly different lengths); higher is better.
Waveform graphs (docs/verifiers.md) take `audio [B, T]` float32 and, when they declare it, `audio_lengths [B]`
int64. `WaveformGraph` batches a call in one of two ways, as the manifest entry's `batching` says:

- "pad_mask": every audio zero-padded to the longest, with its length in `audio_lengths`: ONE run per call. Exact
  for graphs that mask the padding (the exporter writes it for models whose front end normalises per frame).
- "length_buckets": audios of equal length run together, one run per distinct length. Exact for any graph; in a
  beam search every candidate has advanced by the same number of codes, so partial audios share one length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bundle.fields import Fields
from ..errors import BundleError, InputError

VERIFIER_DIR = "verifiers"
BATCHING = ("pad_mask", "length_buckets")
SAMPLE_RATE = 16000  # Llasa's audio rate; every verifier takes it
MAX_MIN_SAMPLES = 10 * SAMPLE_RATE


@dataclass(frozen=True)
class ScoreContext:
    """What the audios are supposed to be: the text spoken and, for speaker verifiers, the reference voice."""

    text: str  # the text being spoken (for asr / alignment: the reference transcript)
    voice: str | None = None  # name of the bundle voice used as reference speaker (for speaker kinds)


class Verifier:
    """Base class: one subclass per kind. `score` returns one float64 per audio, higher is better."""

    name: str  # the verifier's name in the bundle
    kind: str  # "speaker", "asr", "score", "alignment"
    sample_rate: int  # rate of the audios it takes (16000)
    needs_voice: bool = False  # True for speaker kinds: `ctx.voice` must name a bundle voice

    def __init__(self, name: str, kind: str, sample_rate: int = SAMPLE_RATE) -> None:
        self.name, self.kind, self.sample_rate = name, kind, sample_rate

    def score(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> np.ndarray:
        """One float64 score per audio (higher is better). Empty or very short audio gets a defined low score,
        never an exception; every audio of the call goes through the graph in as few runs as the batching allows."""
        raise NotImplementedError

    def details(self, audios: Sequence[np.ndarray], ctx: ScoreContext) -> list[dict[str, Any]]:
        """Per-audio information for reports (transcripts, error rates, ...); at least {"score": ...}."""
        return [{"score": float(s)} for s in self.score(audios, ctx)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"


def check_audios(audios: Sequence[Any]) -> list[np.ndarray]:
    """Returns the audios as float32 1-D arrays; refuses anything else with an InputError naming the item."""
    if isinstance(audios, np.ndarray) and audios.ndim == 1:
        raise InputError("score() takes a sequence of audios (a list of 1-D arrays), not one 1-D array; wrap it in "
                         "a list")
    try:
        items = list(audios)
    except TypeError:
        raise InputError(f"score() takes a sequence of 1-D float arrays, not {type(audios).__name__}") from None
    out = []
    for i, a in enumerate(items):
        arr = np.asarray(a)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"audio {i} must be a 1-D array of float samples in [-1, 1] at 16 kHz, got shape "
                             f"{list(arr.shape)} of {arr.dtype} (convert 16-bit PCM with samples / 32768)")
        arr = arr.astype(np.float32, copy=False)
        if arr.size and not np.all(np.isfinite(arr)):
            raise InputError(f"audio {i} contains NaN or infinite samples")
        out.append(arr)
    return out


def check_context(ctx: Any) -> ScoreContext:
    """Refuses a context that is not a ScoreContext with a text string."""
    if not isinstance(ctx, ScoreContext):
        raise InputError(f"score() takes a ScoreContext(text=..., voice=...), not {type(ctx).__name__}")
    if not isinstance(ctx.text, str):
        raise InputError(f"ScoreContext.text must be a string, not {type(ctx.text).__name__}")
    if ctx.voice is not None and not isinstance(ctx.voice, str):
        raise InputError(f"ScoreContext.voice must be a voice name or None, not {type(ctx.voice).__name__}")
    return ctx


def entry_fields(name: str, details: dict[str, Any]) -> Fields:
    """The entry's details as `Fields`, so that bad values are refused as `manifest.json: verifiers.NAME.x ...`."""
    return Fields(details, f"verifiers.{name}")


def check_sample_rate(name: str, f: Fields) -> int:
    rate = f.integer("sample_rate", 1000, 384000, SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise BundleError(f"verifier '{name}' takes {rate} Hz audio; llasa-rt verifiers take {SAMPLE_RATE} Hz (Llasa's "
                          "rate): export the model at 16 kHz, or put the resampling inside the graph")
    return rate


class WaveformGraph:
    """Runs a waveform graph (inputs `audio`, optionally `audio_lengths`) over a list of audios.

    Args:
        session: the ONNX Runtime session.
        batching: "pad_mask" (one run, needs `audio_lengths`) or "length_buckets" (one run per distinct length).
        min_samples: shorter audios are zero-padded to this many samples first (the graph's shortest input).
        where: names the graph in error messages.
    """

    def __init__(self, session: Any, batching: str, min_samples: int, where: str) -> None:
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        if "audio" not in inputs or len(inputs["audio"].shape) != 2 or inputs["audio"].type != "tensor(float)":
            raise BundleError(f"{where} does not take `audio` float32 [B, T] (see docs/verifiers.md); re-export it")
        extra = set(inputs) - {"audio", "audio_lengths"}
        if extra:
            raise BundleError(f"{where} takes inputs {sorted(extra)} besides audio / audio_lengths; a verifier graph "
                              "takes only those two (see docs/verifiers.md)")
        self.has_lengths = "audio_lengths" in inputs
        if self.has_lengths and inputs["audio_lengths"].type != "tensor(int64)":
            raise BundleError(f"{where}: audio_lengths must be int64 [B]; re-export it")
        # Padding is only exact when the graph knows each item's length.
        self.batching = batching if self.has_lengths else "length_buckets"
        self.min_samples = max(1, min_samples)
        self.output_names = [o.name for o in session.get_outputs()]
        self.runs = 0  # session runs so far (tests and benchmarks read it)

    def run(self, audios: list[np.ndarray], outputs: list[str]) -> list[list[np.ndarray]]:
        """Returns, per requested output, one array per audio (its row of the batch)."""
        padded = [a if a.size >= self.min_samples else np.pad(a, (0, self.min_samples - a.size)) for a in audios]
        results: list[list[Any]] = [[None] * len(audios) for _ in outputs]
        if self.batching == "pad_mask":
            groups = [list(range(len(padded)))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, a in enumerate(padded):
                by_length.setdefault(a.size, []).append(i)
            groups = list(by_length.values())
        for group in groups:
            longest = max(padded[i].size for i in group)
            batch = np.zeros((len(group), longest), dtype=np.float32)
            for row, i in enumerate(group):
                batch[row, : padded[i].size] = padded[i]
            feed = {"audio": batch}
            if self.has_lengths:
                feed["audio_lengths"] = np.array([padded[i].size for i in group], dtype=np.int64)
            values = self.session.run(outputs, feed)
            self.runs += 1
            for k, value in enumerate(values):
                for row, i in enumerate(group):
                    results[k][i] = value[row]
        return results
