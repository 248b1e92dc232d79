"""`Engine`: orchestration of one bundle's text-to-speech: prompt budget, pieces of long text, voices, streaming.

    import llasa_rt
    engine = llasa_rt.Engine("llasa-1b-int4")
    engine.speak("Hello there.").save("hello.wav")
    engine.speak("Again, reproducibly.", llasa_rt.GenerationOptions(seed=7, temperature=0.7))
    for chunk in engine.speak_stream("A longer text, spoken while it is generated."):
        player.write(chunk)

What runs the graphs lives elsewhere: `llasa_rt.backends` picks the LM and codec backends from the manifest
and owns sessions and the KV cache; the C++ core (`llasa_rt._core.Generator`) runs the decode loop. Calls are
serialised (an Engine is safe to share between threads, but runs one generation at a time). No torch here.
"""

from __future__ import annotations

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
from .backends import RuntimeOptions, create_codec, create_lm, locate_lm
from .backends.trt_plan import PLAN_GRAPHS
from .bundle import CODEC_GRAPH
from .bundle.voices import read_voice
from .codec import CodecDecoder, StreamingConfig
from .errors import BundleError, InputError
from .options import MAX_CANDIDATES, GenerationOptions, as_float, as_int
from .prompt import PromptBuilder
from .search import (
    ScoreContext,
    Scorer,
    Search,
    SearchReport,
    SearchRun,
    mean_logprob,
    paper_chunks,
    verifier_scorer,
)
from .text import MIN_CHARS, split_text

MAX_VOICE_CODES = 750  # reference codes (15 s) a piece may carry as its voice prompt
MAX_TEXT_CHARS = 1_000_000  # longest text speak() takes (about 20 hours of speech)
MAX_PAUSE_S = 10.0  # longest silence between pieces
CODEC_PLAN_GRAPH = PLAN_GRAPHS[CODEC_GRAPH]  # the codec plan made by `llasa-rt build-engine`


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
    chosen: int = 0  # index of the chosen candidate in `candidates`


@dataclass
class _Voice:
    transcript: str
    codes: np.ndarray
    name: str | None = None  # the bundle voice it came from (None: a piece's own speech)


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


CHUNKINGS = ("sentences", "paper")


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, not {value!r}")
    return value


def _check_text_options(split: Any, max_chars: Any, pause: Any,
                        chunking: Any) -> tuple[bool, int, float, str]:
    _check_flag(split, "split")
    if chunking not in CHUNKINGS:
        raise InputError(f"chunking must be one of {', '.join(CHUNKINGS)}, not {chunking!r}")
    return (split, as_int(max_chars, "max_chars", MIN_CHARS, MAX_TEXT_CHARS),
            as_float(pause, "pause", 0.0, MAX_PAUSE_S), chunking)


class Engine:
    """Llasa text-to-speech from an engine bundle.

    Args:
        bundle: bundle folder written by `llasa-rt export`, or an LM graph file inside one ("llasa-1b/lm.onnx",
            "llasa-1b/lm.portable.onnx", "llasa-1b/lm.plan"), which picks that graph (and its backend) from the
            manifest; the folder runs its default LM ("lm" when present).
        threads: ONNX Runtime intra-op threads per session (None: ONNX Runtime's default, the physical cores).
        providers: ONNX Runtime execution providers, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"]
            (default: CPU).
        verify: "full" checks every file's sha256 on load; "fast" only that the files are there.
        sampler_threads: threads the C++ sampler uses for the candidates of one step (results do not depend on it).
        native_decode: layered int4/int8 bundles (`export --lm-flavour layered`): "auto" runs decode steps (up to
            8 rows) on llasa-rt's own matrix kernels on CPUs with AVX-512 VNNI (measured faster there) and on ONNX
            Runtime elsewhere; "off" keeps ONNX Runtime for every step; "avx512vnni" / "avx2" / "scalar" force a
            kernel (an error names the ones this CPU lacks). Other bundles ignore it.
    """

    def __init__(self, bundle: str | Path, threads: int | None = None, providers: list[str] | None = None, *,
                 verify: str = "full", sampler_threads: int = 1, native_decode: str = "auto") -> None:
        self.runtime = RuntimeOptions(threads=threads, providers=providers, sampler_threads=sampler_threads,
                                      native_decode=native_decode)
        self.bundle, self.lm_graph = locate_lm(bundle, verify=verify)
        m = self.bundle.manifest
        _, self.tokens, _ = m.lm_parts()
        self.model = m.lm_model(self.lm_graph)
        self.max_context = self.model.max_context
        self.defaults = m.generation
        self.sample_rate = m.audio.sample_rate
        self.prompt = PromptBuilder.from_bundle(self.bundle)
        self.lm = create_lm(self.bundle, self.runtime, self.lm_graph)
        self._scorer_cache: dict[str, Scorer] = {}
        # A TensorRT LM runs with the bundle's codec plan when build-engine made one, else with the ONNX codec.
        plan = self.bundle.graph(self.lm_graph).backend == "tensorrt" and CODEC_PLAN_GRAPH in m.graphs
        self.codec: CodecDecoder | None = (create_codec(self.bundle, self.runtime, CODEC_PLAN_GRAPH if plan else
                                                        CODEC_GRAPH) if CODEC_GRAPH in m.graphs else None)
        self._lock = threading.Lock()

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
        return _Voice(transcript=transcript, codes=codes, name=voice)

    def sampling_options(self, options: GenerationOptions, room: int) -> tuple[Any, int]:
        """The C++ core's SamplingOptions for `options` (bundle defaults filled in, max_new_tokens within `room`)
        and the seed used (a fresh random one when options.seed is None)."""
        o = options.with_defaults(self.defaults)
        if o.max_new_tokens is not None and o.max_new_tokens > room and options.max_new_tokens is not None:
            raise InputError(f"max_new_tokens={o.max_new_tokens} does not fit: the prompt leaves {room} of the "
                             f"{self.max_context}-token context")
        max_new = min(o.max_new_tokens or room, room)
        seed = o.seeded().seed
        core = _core.SamplingOptions(
            temperature=1.0 if o.temperature is None else o.temperature, top_k=o.top_k or 0,
            top_p=1.0 if o.top_p is None else o.top_p, min_p=o.min_p or 0.0,
            repetition_penalty=1.0 if o.repetition_penalty is None else o.repetition_penalty,
            min_new_tokens=min(o.min_new_tokens or 0, max_new), max_new_tokens=max_new, seed=seed)
        return core, seed

    # ---- codes ------------------------------------------------------------------------------------
    def generate_codes(self, text: str, options: GenerationOptions | None = None, *, voice: str | None = None,
                       callback: Callable[[Any], None] | None = None, callback_every: int = 0,
                       slots: int | None = None, **option_kwargs: Any) -> Generation:
        """Generates X-Codec2 codes for one piece of text (no splitting).

        `options` (a GenerationOptions) and/or its fields as keywords (temperature=..., seed=...,
        num_candidates=...) set how codes are sampled; unset fields default to the bundle's manifest (Llasa's
        model card: temperature 0.8, top_p 1.0). `num_candidates` > 1 samples that many candidates from one
        prefill (candidate i uses the RNG stream i, so with fp32/fp16 graphs candidate 0 equals the
        single-candidate result; int8/int4 graphs run batch 1 through another ONNX Runtime kernel, see README
        Limits) and returns the one with the highest mean log-prob per token. `callback(controller)` runs every
        `callback_every` tokens (see llasa_rt._core.GenerationController: it can stop, prune and fork candidates
        and sees newly final codes). `slots` reserves KV slots beyond `num_candidates` so that a callback can
        fork (default: num_candidates).
        """
        opts = GenerationOptions.build(options, **option_kwargs)
        PromptBuilder.check_text(text)
        return self._generate(text, self._voice(voice), opts, callback, callback_every, slots)

    def _generate(self, text: str, voice: _Voice | None, options: GenerationOptions,
                  callback: Callable[[Any], None] | None, callback_every: int, slots: int | None = None,
                  on_final: Callable[[np.ndarray], None] | None = None,
                  stop: threading.Event | None = None) -> Generation:
        n = options.num_candidates
        slots = n if slots is None else as_int(slots, "slots", n, MAX_CANDIDATES)
        callback_every = as_int(callback_every, "callback_every", 0, 1 << 20)
        run = None
        if options.search is not None:
            if callback is not None:
                raise InputError("a search drives the generation itself: callback= cannot be combined with search=")
            run = self._search_run(options.search, text, voice)
            run.on_final, run.stop = on_final, stop
            callback, callback_every, n, slots = run, run.callback_every(), run.search.slots, run.search.slots
        t0 = time.perf_counter()
        prompt, core_options, seed = self.prepare(text, voice, options)
        prompt_s = time.perf_counter() - t0
        with self._lock:
            generator = self.lm.generator(slots)
            t1 = time.perf_counter()
            result = generator.generate(np.asarray(prompt, np.int64), options=core_options, num_candidates=n,
                                        callback=callback, callback_every=callback_every)
            wall = time.perf_counter() - t1
        cands = [CandidateCodes(codes=c.tokens.copy(), logprob=float(c.logprob), finish_reason=c.finish_reason,
                                scores=dict(c.scores)) for c in result.candidates]
        if run is not None:
            chosen, scores = run.choose(cands)
            for c, sc in zip(cands, scores, strict=True):
                c.scores = sc
        else:
            chosen = max(range(len(cands)), key=lambda i: mean_logprob(cands[i].logprob, len(cands[i].codes)))
        best = cands[chosen]
        t = result.timings
        fwd, core, batches = list(t.forward_seconds), list(t.core_seconds), list(t.batch_sizes)
        decode_s = float(sum(fwd) + sum(core))
        tokens = sum(batches) + len(cands)  # the first token of each candidate comes from the prefill step
        timings = {
            "prompt_s": prompt_s, "prompt_tokens": float(len(prompt)), "prefill_s": t.prefill_forward_seconds +
            t.prefill_core_seconds, "decode_s": decode_s, "steps": float(len(fwd)), "tokens": float(tokens),
            "decode_tok_s": (sum(batches) / decode_s) if decode_s > 0 else 0.0,
            "core_ms_per_step": float(1e3 * sum(core) / max(1, len(core))), "generate_s": wall,
            "callback_s": float(t.callback_seconds),
        }
        if run is not None:
            timings.update(run.stats.as_dict())
        return Generation(codes=best.codes, candidates=cands, prompt_ids=list(prompt), seed=seed, timings=timings,
                          chosen=chosen)

    def prepare(self, text: str, voice: _Voice | None, options: GenerationOptions) -> tuple[list[int], Any, int]:
        """Prompt ids, the core's SamplingOptions and the seed for one piece of text (what a generation needs)."""
        prompt = (self.prompt.build(text) if voice is None
                  else self.prompt.build(text, voice_transcript=voice.transcript, voice_codes=voice.codes))
        room = self.max_context - len(prompt)
        if room < 2:
            what = "text and voice prompt" if voice is not None else "text"
            raise InputError(f"the {what} take {len(prompt)} tokens, too many for the model's {self.max_context}-token "
                             "context, which must also hold the speech; shorten the text (speak() splits long text "
                             "at sentences unless split=False / --no-split), or use a shorter voice")
        core_options, seed = self.sampling_options(options, room)
        return prompt, core_options, seed

    # ---- search -----------------------------------------------------------------------------------------------
    def _scorers(self, items: tuple[Any, ...]) -> list[Scorer]:
        out = []
        for item in items:
            if isinstance(item, str):
                if item not in self._scorer_cache:
                    self._scorer_cache[item] = verifier_scorer(self.bundle, item, self.runtime.threads)
                out.append(self._scorer_cache[item])
            elif all(hasattr(item, a) for a in ("name", "needs_audio", "score")):
                out.append(item)
            else:
                raise InputError(f"a search scorer is a bundle verifier's name or an object with name, needs_audio "
                                 f"and score(codes, audios, ctx); got {type(item).__name__}")
        return out

    def _search_run(self, search: Search, text: str, voice: _Voice | None) -> SearchRun:
        prm, orm = self._scorers(search.prm), self._scorers(search.orm)
        ctx = ScoreContext(text=text, voice=voice.name if voice is not None else None)
        for s in prm + orm:
            if getattr(s, "needs_voice", False) and ctx.voice is None:
                raise InputError(f"verifier {s.name!r} compares the speech with a reference voice, and none is given; "
                                 "pass voice=NAME / --voice NAME (add one with `llasa-rt voice add`), or drop it")
        codec = self._require_codec() if any(s.needs_audio for s in prm + orm) else self.codec

        def window(batch: np.ndarray) -> np.ndarray:
            return codec.decode(batch)

        return SearchRun(search, prm, orm, ctx, window, hop=self.bundle.manifest.audio.hop_length,
                         context_codes=voice.codes if voice is not None else np.zeros(0, np.int32))

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

    def _pieces(self, text: str, split: bool, max_chars: int, chunking: str, normalise: bool = False) -> list[str]:
        PromptBuilder.check_text(text)
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"the text has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} one call "
                             "takes; speak it in parts")
        if normalise:
            from .normalise import normalise as spell_out

            text = spell_out(text)
        if not split:
            return [text]
        if chunking == "paper":
            return [p for chunk in paper_chunks(text) for p in split_text(chunk, max(max_chars, len(chunk)))]
        return split_text(text, max_chars)

    def speak(self, text: str, options: GenerationOptions | None = None, *, voice: str | None = None,
              split: bool = True, max_chars: int = 200, pause: float = 0.15, chunking: str = "sentences",
              normalise: bool = True, **option_kwargs: Any) -> Audio:
        """Speaks `text` and returns the whole utterance as `Audio` (float32 samples at 16 kHz).

        `options` / keyword options as in `generate_codes` (`search=` runs a verifier-guided search per piece; its
        report, with every candidate's scores, is `audio.report`). Long text is split at sentence boundaries (then
        clauses, words, and hard cuts for text without spaces) into pieces of at most `max_chars` characters
        (`chunking="paper"`: the Llasa paper's rule, > 100 characters -> 2 pieces, > 200 -> 3, ...;
        `split=False` refuses text that does not fit the context instead); pieces are joined with `pause` seconds
        of silence. Without `voice`, every piece after the first continues in the first piece's voice, so a long
        text keeps one speaker. `seed` makes the result reproducible (`audio.seed` is the seed used).
        `normalise` spells out numbers, dates, times, currencies, units and abbreviations in English text
        (llasa_rt.normalise; other languages pass through unchanged).
        """
        opts = GenerationOptions.build(options, **option_kwargs)
        split, max_chars, pause, chunking = _check_text_options(split, max_chars, pause, chunking)
        normalise = _check_flag(normalise, "normalise")
        self._require_codec()
        start = time.perf_counter()
        chunks, codes, timings = [], [], {"prefill_s": 0.0, "decode_s": 0.0, "tokens": 0.0, "codec_s": 0.0}
        report = SearchReport(opts.search.describe()) if opts.search is not None else None
        seed_used = None
        for piece, gen, piece_voice in self._run_pieces(text, voice, split, max_chars, chunking, opts, normalise):
            seed_used = gen.seed if seed_used is None else seed_used
            t = time.perf_counter()
            if chunks and pause > 0:
                chunks.append(np.zeros(int(pause * self.sample_rate), np.float32))
            chunks.append(self._decode(gen.codes, piece_voice))
            timings["codec_s"] += time.perf_counter() - t
            codes.append(gen.codes)
            for k, v in gen.timings.items():
                if k in ("prefill_s", "decode_s", "tokens") or k.startswith("search_"):
                    timings[k] = timings.get(k, 0.0) + v
            if report is not None:
                report.add_piece(piece, gen.candidates, gen.chosen, gen.timings)
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        timings["total_s"] = time.perf_counter() - start
        timings["pieces"] = float(len(codes))
        timings["rtf"] = timings["total_s"] / max(1e-9, len(samples) / self.sample_rate)
        return Audio(samples=samples, sample_rate=self.sample_rate, codes=np.concatenate(codes).astype(np.int32),
                     timings=timings, text=text, seed=seed_used, report=report.to_json() if report else None)

    def _run_pieces(self, text: str, voice: str | None, split: bool, max_chars: int, chunking: str,
                    options: GenerationOptions,
                    normalise: bool = False) -> Iterator[tuple[str, Generation, _Voice | None]]:
        """Generates each piece of `text` in turn; yields (piece, generation, voice used for decoding)."""
        pieces = self._pieces(text, split, max_chars, chunking, normalise)
        voices = _PieceVoices(self._voice(voice), len(pieces))
        options = options.seeded()  # every piece (seed + i) and the reported seed reproduce the whole result
        for i, piece in enumerate(pieces):
            piece_voice = voices.voice()
            gen = self._generate(piece, piece_voice, options.for_piece(i), None, 0)
            voices.spoken(i, piece, gen.codes)
            yield piece, gen, piece_voice

    def speak_stream(self, text: str, options: GenerationOptions | None = None, *, voice: str | None = None,
                     split: bool = True, max_chars: int = 200, pause: float = 0.15, chunking: str = "sentences",
                     normalise: bool = True, stream: StreamingConfig | None = None, tokens_per_callback: int = 5,
                     **option_kwargs: Any) -> Iterator[np.ndarray]:
        """Speaks `text`, yielding float32 audio chunks while the codes are still being generated.

        Codes are decoded in chunks with left context and a short cross-fade (see llasa_rt.codec.StreamingConfig;
        defaults: 1 s chunks, 3 s left context, 100 ms look-ahead). Closing the iterator early stops generation.
        Same options as `speak`. With `search=`, the codes that every surviving candidate shares are played while
        the search goes on (a beam search's survivors soon share a prefix; best-of-N shares nothing until it
        chooses, so its audio starts at the end); `num_candidates` > 1 without a search is refused.
        """
        opts = GenerationOptions.build(options, **option_kwargs)
        if opts.num_candidates != 1:
            raise InputError("speak_stream streams one candidate; drop num_candidates (or pass a search)")
        split, max_chars, pause, chunking = _check_text_options(split, max_chars, pause, chunking)
        normalise = _check_flag(normalise, "normalise")
        every = as_int(tokens_per_callback, "tokens_per_callback", 1, 10_000)
        codec = self._require_codec()
        pieces = self._pieces(text, split, max_chars, chunking, normalise)
        voices = _PieceVoices(self._voice(voice), len(pieces))
        if stream is not None:
            stream.validate(codec.hop_length)
        return self._stream_pieces(codec, pieces, voices, opts.seeded(), pause, stream, every)

    def _stream_pieces(self, codec: CodecDecoder, pieces: list[str], voices: _PieceVoices, opts: GenerationOptions,
                       pause: float, stream: StreamingConfig | None, every: int) -> Iterator[np.ndarray]:
        for i, piece in enumerate(pieces):
            piece_voice = voices.voice()
            if i and pause > 0:
                yield np.zeros(int(pause * self.sample_rate), np.float32)
            streamer = codec.streaming(stream)
            if piece_voice is not None:
                streamer.prime(piece_voice.codes)
            codes_of_piece: list[np.ndarray] = []
            for new_codes in self._stream_codes(piece, piece_voice, opts.for_piece(i), every):
                codes_of_piece.append(new_codes)
                yield from streamer.push(new_codes)
            yield from streamer.flush()
            voices.spoken(i, piece, np.concatenate(codes_of_piece) if codes_of_piece else np.zeros(0, np.int32))

    def _stream_codes(self, piece: str, voice: _Voice | None, options: GenerationOptions,
                      every: int) -> Iterator[np.ndarray]:
        """Runs one generation in a worker thread; yields codes as they become final, and at the end the chosen
        candidate's codes that were not final yet (a search). Closing the iterator stops the generation."""
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def on_step(controller: Any) -> None:
            new = controller.new_final_codes
            if new.size:
                out.put(new.copy())
            if stop.is_set() and not controller.done:
                controller.stop()

        def on_final(codes: np.ndarray) -> None:
            out.put(codes)

        def work() -> None:
            try:
                if options.search is None:
                    gen = self._generate(piece, voice, options, on_step, every)
                else:
                    gen = self._generate(piece, voice, options, None, 0, on_final=on_final, stop=stop)
                out.put(gen)
            except BaseException as e:  # handed to the consumer thread
                out.put(e)

        worker = threading.Thread(target=work, name="llasa-rt-generate", daemon=True)
        worker.start()
        emitted = 0
        try:
            while True:
                item = out.get()
                if isinstance(item, Generation):
                    rest = item.codes[emitted:]
                    if rest.size and not stop.is_set():
                        yield rest
                    return
                if isinstance(item, BaseException):
                    raise item
                emitted += len(item)
                yield item
        finally:
            stop.set()
            worker.join()
