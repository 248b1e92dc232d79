"""`Engine`: the Python API over a bundle, the C++ decode loop and the X-Codec2 decoder.

    import llasa_rt
    engine = llasa_rt.Engine("llasa-1b-int4")
    engine.speak("Hello there.").save("hello.wav")
    for chunk in engine.speak_stream("A longer text, spoken while it is generated."):
        player.write(chunk)

One Engine holds one ONNX Runtime session per graph and a KV cache sized for the largest number of
candidates asked so far; calls are serialised (an Engine is safe to share between threads, but runs
one generation at a time). Nothing here imports torch.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .audio import Audio
from .bundle import SPEECH_BASE_ID, SPEECH_COUNT, SPEECH_END_ID, Bundle
from .codec import CodecDecoder, StreamingConfig
from .errors import BundleError, InputError
from .ort_backend import OrtLmBackend
from .prompt import PromptBuilder
from .text import split_text
from .voice_file import read_voice

MAX_VOICE_CODES = 750  # reference codes (15 s) a piece may carry as its voice prompt
MAX_CANDIDATES = 64  # upper bound on num_candidates (KV memory grows linearly with it)
_OPTION_NAMES = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "min_new_tokens", "max_new_tokens")


@dataclass
class CandidateCodes:
    """One candidate of a generation."""

    codes: np.ndarray  # int32 speech codes (END excluded)
    logprob: float  # sum of the model's log-probs of its tokens (END included)
    finish_reason: str  # "end", "max_new_tokens", "context_full" or "stopped"
    scores: dict[str, float] = field(default_factory=dict)  # verifier scores, when a search set them


@dataclass
class Generation:
    """What `Engine.generate_codes` returns."""

    codes: np.ndarray  # the chosen candidate's codes (int32)
    candidates: list[CandidateCodes]  # every surviving candidate, in creation order
    prompt_ids: list[int]  # the prompt that was fed (text + voice codes)
    seed: int  # the sampling seed used (pass it back to reproduce the result)
    timings: dict[str, float]  # prefill_s, decode_s, tokens, steps, decode_tok_s, core_ms_per_step, ...


@dataclass
class _Voice:
    transcript: str
    codes: np.ndarray


class _PieceVoices:
    """The voice prompt of each piece of a text: the voice asked for; without one, the pieces after the first
    continue in the first piece's voice (its own speech, when short enough to serve as a prompt)."""

    def __init__(self, given: _Voice | None, pieces: int) -> None:
        self.given, self.pieces, self.first = given, pieces, None

    def voice(self) -> _Voice | None:
        return self.given or self.first

    def spoken(self, index: int, piece: str, codes: np.ndarray) -> None:
        if index == 0 and self.given is None and self.pieces > 1 and 0 < len(codes) <= MAX_VOICE_CODES:
            self.first = _Voice(transcript=piece, codes=codes)


class Engine:
    """Llasa text-to-speech from an engine bundle.

    Args:
        bundle: bundle folder written by `llasa-rt export`.
        threads: ONNX Runtime intra-op threads per session (None: ONNX Runtime's default, the physical cores).
        providers: ONNX Runtime execution providers, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"]
            (default: CPU).
        verify: "full" checks every file's sha256 on load; "fast" only that the files are there.
        sampler_threads: threads the C++ sampler uses for the candidates of one step (results do not depend on it).
    """

    def __init__(self, bundle: str | Path, threads: int | None = None, providers: list[str] | None = None, *,
                 verify: str = "full", sampler_threads: int = 1) -> None:
        import onnxruntime as ort

        self.bundle = Bundle.open(bundle, verify=verify)
        m = self.bundle.manifest
        lm = self.bundle.graph("lm")
        if lm.backend != "onnxruntime":
            raise BundleError(f"bundle '{self.bundle.root}': its LM is built for {lm.backend!r}; this Engine runs "
                              "ONNX Runtime graphs. Export an ONNX Runtime bundle with `llasa-rt export`.")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer or None, not {threads!r}")
        if sampler_threads < 1:
            raise InputError(f"sampler_threads must be >= 1, not {sampler_threads}")
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise InputError(f"ONNX Runtime provider(s) {', '.join(unknown)} are not available in this onnxruntime; "
                             f"available: {', '.join(available)}")
        self.threads, self.providers = threads, providers
        self.model = dict(m.model)
        self.max_context = int(self.model["max_context"])
        self.defaults = {k: m.generation[k] for k in _OPTION_NAMES if k in m.generation}
        self.sample_rate = int(m.audio.get("sample_rate", 16000))
        self.prompt = PromptBuilder(self.bundle.path("tokenizer.json"), m.prompt)
        self._session = ort.InferenceSession(str(self.bundle.path(lm.path_name)), self._session_options(),
                                             providers=providers)
        self.codec = (CodecDecoder(self.bundle, session_options=self._session_options(), providers=providers)
                      if "codec_decoder" in m.graphs else None)
        self._gen_config = _core.GeneratorConfig(speech_token_base=SPEECH_BASE_ID, num_speech_tokens=SPEECH_COUNT,
                                                 end_token_id=SPEECH_END_ID, sampler_threads=sampler_threads)
        self._slots = 0
        self._generator: Any = None
        self._backend: OrtLmBackend | None = None
        self._lock = threading.Lock()

    # ---- set-up -----------------------------------------------------------------------------------
    def _session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        return so

    def _ensure_slots(self, slots: int) -> Any:
        """The Generator over a KV cache with at least `slots` slots (allocated once, grown on demand)."""
        if slots > self._slots:
            m = self.model
            cache = _core.KvCache(_core.KvCacheConfig(
                num_layers=m["num_layers"], num_kv_heads=m["num_kv_heads"], head_dim=m["head_dim"], slots=slots,
                max_seq_len=self.max_context, dtype=m.get("kv_dtype", "float32")))
            buffers = _core.StepBuffers(cache, rows=SPEECH_COUNT + 1)
            self._backend = OrtLmBackend(self._session, cache, buffers, m)
            self._generator = _core.Generator(self._backend, self._gen_config)
            self._slots = slots
        return self._generator

    @property
    def voices(self) -> list[str]:
        """Names of the bundle's reference voices."""
        return sorted(self.bundle.manifest.voices)

    def _voice(self, voice: str | None) -> _Voice | None:
        if voice is None:
            return None
        if not isinstance(voice, str):
            raise InputError(f"voice must be the name of one of the bundle's voices, not {type(voice).__name__}")
        codes, transcript = read_voice(self.bundle, voice)
        return _Voice(transcript=transcript, codes=codes)

    def _options(self, overrides: dict[str, Any], seed: int | None) -> tuple[Any, int]:
        values = dict(self.defaults)
        for k, v in overrides.items():
            if v is not None:
                values[k] = v
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        if not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, not {seed!r}")
        try:
            opts = _core.SamplingOptions(temperature=float(values.get("temperature", 1.0)),
                                         top_k=int(values.get("top_k", 0)), top_p=float(values.get("top_p", 1.0)),
                                         min_p=float(values.get("min_p", 0.0)),
                                         repetition_penalty=float(values.get("repetition_penalty", 1.0)),
                                         min_new_tokens=int(values.get("min_new_tokens", 0)),
                                         max_new_tokens=int(values.get("max_new_tokens") or 0), seed=seed)
        except (TypeError, ValueError) as e:
            raise InputError(str(e)) from e
        return opts, seed

    # ---- codes ------------------------------------------------------------------------------------
    def generate_codes(self, text: str, *, voice: str | None = None, temperature: float | None = None,
                       top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
                       repetition_penalty: float | None = None, max_new_tokens: int | None = None,
                       min_new_tokens: int | None = None, seed: int | None = None, num_candidates: int = 1,
                       callback: Callable[[Any], None] | None = None, callback_every: int = 0,
                       slots: int | None = None) -> Generation:
        """Generates X-Codec2 codes for one piece of text (no splitting).

        Sampling options default to the bundle's manifest (Llasa's model card: temperature 0.8, top_p 1.0).
        `num_candidates` > 1 samples that many candidates from one prefill (candidate i uses the RNG stream i, so
        with fp32/fp16 graphs candidate 0 equals the single-candidate result; int8/int4 graphs run batch 1 through
        another ONNX Runtime kernel, see README Limits) and returns the one with the highest mean log-prob per
        token. `callback(controller)` runs every `callback_every` tokens (see llasa_rt._core.GenerationController:
        it can stop, prune and fork candidates and sees newly final codes). `slots` reserves KV slots beyond
        `num_candidates` so that a callback can fork (default: num_candidates).
        """
        return self._generate(text, self._voice(voice), dict(
            temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, repetition_penalty=repetition_penalty,
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens), seed, num_candidates, callback,
            callback_every, slots)

    def _generate(self, text: str, voice: _Voice | None, overrides: dict[str, Any], seed: int | None,
                  num_candidates: int, callback: Callable[[Any], None] | None, callback_every: int,
                  slots: int | None = None) -> Generation:
        if not isinstance(num_candidates, int) or not 1 <= num_candidates <= MAX_CANDIDATES:
            raise InputError(f"num_candidates must be an integer in [1, {MAX_CANDIDATES}], not {num_candidates!r}")
        slots = num_candidates if slots is None else slots
        if not isinstance(slots, int) or not num_candidates <= slots <= MAX_CANDIDATES:
            raise InputError(f"slots must be an integer in [num_candidates, {MAX_CANDIDATES}], not {slots!r}")
        t0 = time.perf_counter()
        prompt = (self.prompt.build(text) if voice is None
                  else self.prompt.build(text, voice_transcript=voice.transcript, voice_codes=voice.codes))
        room = self.max_context - len(prompt)
        if room < 2:
            what = "text and voice prompt" if voice is not None else "text"
            raise InputError(f"the {what} take {len(prompt)} tokens, too many for the model's {self.max_context}-token "
                             "context, which must also hold the speech; shorten the text, or let it be split at "
                             "sentences (the default of speak() and `llasa-rt speak`; split=False / --no-split turn "
                             "that off)")
        if overrides.get("max_new_tokens") is not None and overrides["max_new_tokens"] > room:
            raise InputError(f"max_new_tokens={overrides['max_new_tokens']} does not fit: the prompt uses "
                             f"{len(prompt)} of the {self.max_context}-token context, leaving {room}")
        if overrides.get("max_new_tokens") is None:
            overrides = {**overrides, "max_new_tokens": min(int(self.defaults.get("max_new_tokens") or room), room)}
        options, seed = self._options(overrides, seed)
        prompt_s = time.perf_counter() - t0
        with self._lock:
            generator = self._ensure_slots(slots)
            t1 = time.perf_counter()
            result = generator.generate(np.asarray(prompt, np.int64), options=options, num_candidates=num_candidates,
                                        callback=callback, callback_every=callback_every)
            wall = time.perf_counter() - t1
        cands = [CandidateCodes(codes=c.tokens.copy(), logprob=float(c.logprob), finish_reason=c.finish_reason,
                                scores=dict(c.scores)) for c in result.candidates]
        best = max(cands, key=lambda c: c.logprob / (len(c.codes) + 1))
        t = result.timings
        fwd, core, batches = list(t.forward_seconds), list(t.core_seconds), list(t.batch_sizes)
        decode_s = float(sum(fwd) + sum(core))
        tokens = sum(batches) + len(cands)  # the first token of each candidate comes from the prefill step
        timings = {
            "prompt_s": prompt_s, "prompt_tokens": float(len(prompt)), "prefill_s": t.prefill_forward_seconds +
            t.prefill_core_seconds, "decode_s": decode_s, "steps": float(len(fwd)), "tokens": float(tokens),
            "decode_tok_s": (sum(batches) / decode_s) if decode_s > 0 else 0.0,
            "core_ms_per_step": float(1e3 * sum(core) / max(1, len(core))), "generate_s": wall,
        }
        return Generation(codes=best.codes, candidates=cands, prompt_ids=list(prompt), seed=seed, timings=timings)

    # ---- audio ------------------------------------------------------------------------------------
    def _require_codec(self) -> CodecDecoder:
        if self.codec is None:
            raise BundleError(f"bundle '{self.bundle.root}' has no codec_decoder graph, so it cannot make audio; "
                              "re-export it with `llasa-rt export --codec HKUSTAudio/xcodec2 ...` (generate_codes "
                              "works without it)")
        return self.codec

    def decode(self, codes: np.ndarray, voice: str | None = None) -> np.ndarray:
        """X-Codec2 codes -> float32 audio. With `voice`, the voice's codes are decoded in front (as the official
        recipe does, the decoder sees the whole utterance) and their audio is cut off again."""
        return self._decode(np.asarray(codes), self._voice(voice))

    def _decode(self, codes: np.ndarray, voice: _Voice | None) -> np.ndarray:
        codec = self._require_codec()
        if codes.size == 0:
            return np.zeros(0, np.float32)
        if voice is None:
            return codec.decode(codes)
        audio = codec.decode(np.concatenate([voice.codes, codes]))
        return audio[len(voice.codes) * codec.hop_length:]

    def _pieces(self, text: str, split: bool, max_chars: int) -> list[str]:
        PromptBuilder.check_text(text)
        return split_text(text, max_chars) if split else [text]

    def speak(self, text: str, *, voice: str | None = None, temperature: float | None = None,
              top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
              repetition_penalty: float | None = None, max_new_tokens: int | None = None,
              min_new_tokens: int | None = None, seed: int | None = None, num_candidates: int = 1,
              split: bool = True, max_chars: int = 200, pause: float = 0.15) -> Audio:
        """Speaks `text` and returns the whole utterance as `Audio` (float32 samples at 16 kHz).

        Long text is split at sentence boundaries into pieces of at most `max_chars` characters (`split=False`
        refuses text that does not fit the context instead); pieces are joined with `pause` seconds of silence.
        Without `voice`, every piece after the first continues in the first piece's voice (it is used as the voice
        prompt), so a long text keeps one speaker. Sampling options default to the bundle's manifest; `seed` makes
        the result reproducible (the seed used is in `audio.timings["seed"]`).
        """
        self._require_codec()
        start = time.perf_counter()
        chunks, codes, timings = [], [], {"prefill_s": 0.0, "decode_s": 0.0, "tokens": 0.0, "codec_s": 0.0}
        seed_used = None
        for _piece, gen, piece_voice in self._run_pieces(text, voice, split, max_chars, dict(
                temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, repetition_penalty=repetition_penalty,
                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens), seed, num_candidates):
            seed_used = gen.seed if seed_used is None else seed_used
            t = time.perf_counter()
            if chunks and pause > 0:
                chunks.append(np.zeros(int(pause * self.sample_rate), np.float32))
            chunks.append(self._decode(gen.codes, piece_voice))
            timings["codec_s"] += time.perf_counter() - t
            codes.append(gen.codes)
            for k in ("prefill_s", "decode_s", "tokens"):
                timings[k] += gen.timings[k]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        timings["total_s"] = time.perf_counter() - start
        timings["seed"] = float(seed_used or 0)
        timings["pieces"] = float(len(codes))
        timings["rtf"] = timings["total_s"] / max(1e-9, len(samples) / self.sample_rate)
        return Audio(samples=samples, sample_rate=self.sample_rate, codes=np.concatenate(codes).astype(np.int32),
                     timings=timings, text=text)

    def _run_pieces(self, text: str, voice: str | None, split: bool, max_chars: int, overrides: dict[str, Any],
                    seed: int | None, num_candidates: int) -> Iterator[tuple[str, Generation, _Voice | None]]:
        """Generates each piece of `text` in turn; yields (piece, generation, voice used for decoding)."""
        pieces = self._pieces(text, split, max_chars)
        voices = _PieceVoices(self._voice(voice), len(pieces))
        for i, piece in enumerate(pieces):
            piece_voice = voices.voice()
            gen = self._generate(piece, piece_voice, dict(overrides), None if seed is None else seed + i,
                                 num_candidates, None, 0)
            voices.spoken(i, piece, gen.codes)
            yield piece, gen, piece_voice

    def speak_stream(self, text: str, *, voice: str | None = None, temperature: float | None = None,
                     top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
                     repetition_penalty: float | None = None, max_new_tokens: int | None = None,
                     min_new_tokens: int | None = None, seed: int | None = None, split: bool = True,
                     max_chars: int = 200, pause: float = 0.15, stream: StreamingConfig | None = None,
                     tokens_per_callback: int = 5) -> Iterator[np.ndarray]:
        """Speaks `text`, yielding float32 audio chunks while the codes are still being generated.

        Codes are decoded in chunks with left context and a short cross-fade (see llasa_rt.codec.StreamingConfig;
        defaults: 1 s chunks, 3 s left context, 100 ms look-ahead). Closing the iterator early stops generation.
        Same options as `speak` (one candidate).
        """
        codec = self._require_codec()
        overrides = dict(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                         repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
                         min_new_tokens=min_new_tokens)
        pieces = self._pieces(text, split, max_chars)
        voices = _PieceVoices(self._voice(voice), len(pieces))
        for i, piece in enumerate(pieces):
            piece_voice = voices.voice()
            if i and pause > 0:
                yield np.zeros(int(pause * self.sample_rate), np.float32)
            streamer = codec.streaming(stream)
            if piece_voice is not None:
                streamer.prime(piece_voice.codes)
            codes_of_piece: list[np.ndarray] = []
            for new_codes in self._stream_codes(piece, piece_voice, overrides, None if seed is None else seed + i,
                                                tokens_per_callback):
                codes_of_piece.append(new_codes)
                yield from streamer.push(new_codes)
            yield from streamer.flush()
            voices.spoken(i, piece, np.concatenate(codes_of_piece) if codes_of_piece else np.zeros(0, np.int32))

    def _stream_codes(self, piece: str, voice: _Voice | None, overrides: dict[str, Any], seed: int | None,
                      every: int) -> Iterator[np.ndarray]:
        """Runs one generation in a worker thread; yields codes as they become final. Closing stops it."""
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def on_step(controller: Any) -> None:
            new = controller.new_final_codes
            if new.size:
                out.put(new.copy())
            if stop.is_set() and not controller.done:
                controller.stop()

        def work() -> None:
            try:
                self._generate(piece, voice, dict(overrides), seed, 1, on_step, every)
                out.put(None)
            except BaseException as e:  # handed to the consumer thread
                out.put(e)

        worker = threading.Thread(target=work, name="llasa-rt-generate", daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()
