"""X-Codec2 decoding at run time: speech codes -> float32 16 kHz audio with ONNX Runtime (no torch).

`CodecDecoder` decodes a whole utterance at once. `StreamingDecoder` decodes codes as they arrive, chunk by chunk:
the decoder's attention spans the whole utterance, so each chunk is decoded together with `left_context_frames`
earlier frames (and, optionally, `lookahead_frames` later ones) and only its own samples are kept; consecutive
chunks are joined with a short linear cross-fade. Use it incrementally (`push` codes as the LM writes them, get
audio back as soon as a chunk and its look-ahead are there, `flush` at the end), as an iterator (`stream`), or
with a sherpa-onnx style callback that may return False to stop (`decode`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import CODEC_GRAPH, Bundle
from .errors import BundleError, InputError


def check_codes(codes: Any, codebook_size: int) -> np.ndarray:
    """Returns `codes` as an int32 array after checking dtype, emptiness and range (InputError otherwise)."""
    arr = np.asarray(codes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"codec codes must be integers (X-Codec2 indices 0..{codebook_size - 1}), got dtype "
                         f"{arr.dtype}; pass speech token ids minus the speech base id as an int array")
    if arr.ndim not in (1, 2, 3) or (arr.ndim == 3 and arr.shape[1] != 1):
        raise InputError(f"codec codes must have shape [T], [B, T] or [B, 1, T], got {list(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"codec codes are empty (shape {list(arr.shape)}); there is nothing to decode")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= codebook_size:
        bad = lo if lo < 0 else hi
        raise InputError(f"codec code {bad} is out of range 0..{codebook_size - 1}; codes are speech token ids minus "
                         "the speech base id (did you pass raw token ids?)")
    return arr.astype(np.int32, copy=False)


class CodecDecoder:
    """Whole-utterance X-Codec2 decoding with the bundle's `codec_decoder.onnx`.

    Args:
        bundle: an opened Bundle or the path of a bundle folder.
        num_threads: ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(self, bundle: Bundle | str | Path, *, num_threads: int = 0,
                 providers: list[str] | None = None) -> None:
        from .backends.ort import create_session

        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(bundle, verify="fast")
        entry = self._read_facts(bundle)
        if entry.backend not in ("onnxruntime", "onnxruntime-cuda"):
            raise BundleError(f"bundle '{bundle.root}': the codec graph is built for {entry.backend!r}; this decoder "
                              "runs ONNX Runtime graphs (re-export with `llasa-rt export --codec ...`)")
        self._session = create_session(bundle.path(entry.path_name), num_threads or None, providers, bundle.root)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def _read_facts(self, bundle: Bundle) -> Any:
        """Reads sample rate, hop, codebook size and precision from the codec graph's entry; returns the entry."""
        entry = bundle.graph(CODEC_GRAPH)
        details = entry.details
        self.sample_rate = int(details.get("sample_rate", 16000))
        self.hop_length = int(details.get("hop_length", 320))
        self.codebook_size = int(details.get("codebook_size", 0))
        if self.codebook_size < 1:
            raise BundleError(f"bundle '{bundle.root}': graphs.codec_decoder.details.codebook_size is missing; "
                              "re-export the bundle")
        self.precision = entry.precision
        return entry

    def decode(self, codes: Any) -> np.ndarray:
        """Decodes codes [T], [B, T] or [B, 1, T] to float32 audio [T*hop], [B, T*hop] or [B, 1, T*hop]."""
        arr = check_codes(codes, self.codebook_size)
        batched = arr.reshape(-1, 1, arr.shape[-1]) if arr.ndim < 3 else arr
        audio = self._run(np.ascontiguousarray(batched)).astype(np.float32, copy=False)
        if arr.ndim == 1:
            return audio[0, 0]
        return audio[:, 0] if arr.ndim == 2 else audio

    def _run(self, codes: np.ndarray) -> np.ndarray:
        """One run of the graph: int32 codes [B, 1, T] -> audio [B, 1, T * hop]."""
        return self._session.run([self._output], {self._input: codes})[0]

    def streaming(self, config: StreamingConfig | None = None) -> StreamingDecoder:
        """A new StreamingDecoder over this decoder."""
        return StreamingDecoder(self, config)


@dataclass
class StreamingConfig:
    """How streamed decoding cuts the code sequence. Defaults come from the error table in docs/codec.md."""

    chunk_frames: int = 50  # new frames per decoder run (50 frames = 1 s of audio)
    left_context_frames: int = 150  # earlier frames decoded with each chunk, then dropped (3 s)
    lookahead_frames: int = 5  # later frames decoded with each chunk and dropped (adds latency: 20 ms each)
    crossfade_samples: int = 320  # linear cross-fade between consecutive chunks (one frame = 20 ms)
    first_chunk_frames: int | None = None  # size of the first chunk (None = chunk_frames); smaller leaves sooner

    def validate(self, hop: int) -> None:
        """Raises InputError naming the field that is out of range."""
        if self.chunk_frames < 1:
            raise InputError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.first_chunk_frames is not None and self.first_chunk_frames < 1:
            raise InputError(f"first_chunk_frames must be >= 1 (or None), got {self.first_chunk_frames}")
        if self.left_context_frames < 0 or self.lookahead_frames < 0 or self.crossfade_samples < 0:
            raise InputError("left_context_frames, lookahead_frames and crossfade_samples must be >= 0")
        shortest = min(self.chunk_frames, self.first_chunk_frames or self.chunk_frames)
        if self.crossfade_samples > shortest * hop:
            raise InputError(f"crossfade_samples ({self.crossfade_samples}) must not exceed one chunk "
                             f"({shortest} frames = {shortest * hop} samples)")
        if self.crossfade_samples > self.left_context_frames * hop:
            raise InputError(f"crossfade_samples ({self.crossfade_samples}) needs at least "
                             f"{-(-self.crossfade_samples // hop)} frames of left context "
                             f"(left_context_frames is {self.left_context_frames})")


class StreamingDecoder:
    """Incremental X-Codec2 decoding: push codes, receive float32 audio chunks.

    The audio of frames [s, e) is taken from a decoder run over [s - left_context, e + lookahead), so a chunk is
    ready once e + lookahead frames have arrived (or at `flush`). The last `crossfade_samples` of each chunk are
    held back and cross-faded with the same span of the next decoder run. All chunks put together have exactly
    `hop_length` samples per code.
    """

    def __init__(self, decoder: CodecDecoder, config: StreamingConfig | None = None) -> None:
        self.decoder = decoder
        self.config = config or StreamingConfig()
        self.config.validate(decoder.hop_length)
        self.reset()

    def reset(self) -> None:
        """Forgets all codes and held audio; the decoder can start a new utterance."""
        self._codes = np.zeros(0, dtype=np.int32)
        self._next = 0  # first frame whose audio has not been emitted
        self._tail = np.zeros(0, dtype=np.float32)  # held-back samples awaiting the cross-fade
        self._finished = False

    def prime(self, context: Any) -> None:
        """Starts a new utterance that follows `context` codes (e.g. a voice prompt's): they serve as left
        context of the first chunks, but their own audio is never emitted."""
        self.reset()
        arr = np.atleast_1d(np.asarray(context))
        if arr.size:
            if arr.ndim != 1:
                raise InputError(f"prime() takes a 1-D array of codes, got shape {list(arr.shape)}")
            self._codes = check_codes(arr, self.decoder.codebook_size).copy()
            self._next = len(self._codes)

    def push(self, codes: Any) -> list[np.ndarray]:
        """Adds codes (an int or a 1-D int array) and returns the audio chunks that became ready (maybe none)."""
        if self._finished:
            raise InputError("this stream was flushed; call reset() before pushing codes of a new utterance")
        arr = np.atleast_1d(np.asarray(codes))
        if arr.size == 0:
            return []
        if arr.ndim != 1:
            raise InputError(f"push() takes one code or a 1-D array of codes, got shape {list(arr.shape)}")
        self._codes = np.concatenate([self._codes, check_codes(arr, self.decoder.codebook_size)])
        out = []
        while self._next + self._chunk() + self.config.lookahead_frames <= len(self._codes):
            out.append(self._emit(self._next + self._chunk(), final=False))
        return out

    def _chunk(self) -> int:
        """Frames in the next chunk: the first one may be shorter so that audio starts sooner."""
        first = self.config.first_chunk_frames
        return first if (self._next == 0 and first) else self.config.chunk_frames

    def flush(self) -> list[np.ndarray]:
        """Decodes whatever is left and releases the held-back samples. The stream is then finished."""
        if self._finished:
            return []
        self._finished = True
        if self._next >= len(self._codes):
            return [self._tail] if self._tail.size else []
        return [self._emit(len(self._codes), final=True)]

    def _emit(self, end: int, final: bool) -> np.ndarray:
        cfg, hop = self.config, self.decoder.hop_length
        start = self._next
        lo = max(0, start - cfg.left_context_frames)
        hi = len(self._codes) if final else min(len(self._codes), end + cfg.lookahead_frames)
        audio = self.decoder.decode(self._codes[lo:hi])
        seg_start, seg_end = (start - lo) * hop, (end - lo) * hop
        pieces = []
        if self._tail.size:
            n = self._tail.size
            ramp = (np.arange(n, dtype=np.float32) + 0.5) / n
            pieces.append(self._tail * (1.0 - ramp) + audio[seg_start - n : seg_start] * ramp)
        hold = 0 if final else min(cfg.crossfade_samples, seg_end - seg_start)
        pieces.append(audio[seg_start : seg_end - hold])
        self._tail = audio[seg_end - hold : seg_end].copy()
        self._next = end
        return np.concatenate(pieces).astype(np.float32, copy=False)

    def stream(self, codes: Iterable[Any]) -> Iterator[np.ndarray]:
        """Iterator form: consumes an iterable of codes (ints or 1-D arrays), yields audio chunks, flushes at end."""
        for piece in codes:
            yield from self.push(piece)
        yield from self.flush()

    def decode(self, codes: Any, callback: Callable[[np.ndarray], bool | None] | None = None) -> np.ndarray:
        """Decodes a whole code sequence in streamed chunks.

        Args:
            codes: 1-D int codes.
            callback: called with each float32 chunk as soon as it is decoded; returning False stops decoding.

        Returns:
            The concatenated audio of the chunks that were produced (all of it unless the callback stopped early).
        """
        arr = check_codes(codes, self.decoder.codebook_size)
        if arr.ndim != 1:
            raise InputError(f"streamed decoding takes 1-D codes [T], got shape {list(arr.shape)}")
        self.reset()
        step = self.config.chunk_frames
        chunks = []
        for chunk in self.stream(arr[i : i + step] for i in range(0, len(arr), step)):
            chunks.append(chunk)
            if callback is not None and callback(chunk) is False:
                break
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
