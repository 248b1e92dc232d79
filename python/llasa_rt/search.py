"""Verifier-guided search over sampled candidates (the Llasa paper's inference-time scaling), streamed while it runs.

    search = llasa_rt.Search.parse("beam:2x4:50", prm=["speaker"], orm=["asr", "speaker"])
    audio = engine.speak("Hello there.", search=search, voice="alice")
    audio.candidates[0].scores      # every candidate's verifier scores

Two strategies, both on one prefill and the C++ loop's fork / prune / set_score:

- **best-of-N** (`best-of-8`): N candidates sampled side by side; when all have finished, the outcome verifiers
  (ORM) score each one's whole audio; the highest weighted sum wins (ties: the LM's mean log-prob per token).
- **chunked beam** (`beam:BxK:C`): B beams, each forked into K children (B x K live candidates). Every C tokens
  (default 50 = 1 s) the partial audio of every live child is decoded in ONE codec batch and scored by the
  process verifiers (PRM) in ONE verifier batch; the top B survive, the others are pruned, and the budget is
  forked back from the survivors. A beam that ends waits among the finished ones (at most B are kept); once B
  have finished the search stops, and the ORM picks among them.

Codes that every surviving candidate shares are final (the controller reports them), so `speak_stream` plays
them while the search still chooses the rest; with best-of-N nothing is shared before the choice, so its first
audio comes at the end.

A scorer is a `Scorer`: anything with `name`, `needs_audio` and `score(codes, audios, ctx)`. Bundle verifiers
(`llasa_rt.verifiers`) are wrapped as scorers by name; Python objects can be passed directly (e.g. a content
check of your own). Partial audio for the PRM is decoded from a window of the last `chunk + prm_context` codes
(the streaming decoder's left-context idea) rather than from the start; docs/search.md gives the error this
costs against a full re-decode.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import InputError
from .options import as_int

MAX_SEARCH_CANDIDATES = 64  # live candidates (KV slots) a search may keep
DEFAULT_CHUNK = 50  # tokens between PRM rounds (1 s of speech)
DEFAULT_PRM_CONTEXT = 25  # earlier codes decoded with each PRM chunk (0.5 s)


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may need besides the candidates: the text and the reference voice."""

    text: str  # the text being spoken
    voice: str | None = None  # name of the bundle voice used as the reference speaker


class Scorer(Protocol):
    """Scores candidates; higher is better."""

    name: str  # the key of its scores in CandidateCodes.scores
    needs_audio: bool  # False: score() gets audios=None and judges the codes alone

    def score(self, codes: Sequence[np.ndarray], audios: Sequence[np.ndarray] | None,
              ctx: ScoreContext) -> np.ndarray:
        """One float per candidate."""
        ...


@dataclass(frozen=True)
class Search:
    """How many candidates to sample and how to choose among them.

    `strategy` "best-of" keeps `n` candidates; "beam" keeps `beams` x `branch` live candidates and prunes to
    `beams` every `chunk` tokens by the process scorers `prm`. `orm` scorers pick the final candidate; `weights`
    (scorer name -> weight, default 1) combine several scorers into one sum.
    """

    strategy: str = "best-of"  # "best-of" or "beam"
    n: int = 1  # best-of: candidates
    beams: int = 1  # beam: survivors of each round (B)
    branch: int = 1  # beam: children per survivor (K); B x K candidates are live
    chunk: int = DEFAULT_CHUNK  # beam: tokens between PRM rounds
    prm: tuple[Any, ...] = ()  # process scorers: bundle verifier names or Scorer objects
    orm: tuple[Any, ...] = ()  # outcome scorers: bundle verifier names or Scorer objects
    weights: tuple[tuple[str, float], ...] = ()  # scorer name -> weight in the sums (default 1.0)
    prm_context: int = DEFAULT_PRM_CONTEXT  # earlier codes decoded before each PRM chunk

    def __post_init__(self) -> None:
        if self.strategy not in ("best-of", "beam"):
            raise InputError(f"search strategy must be 'best-of' or 'beam', not {self.strategy!r}")
        for name in ("n", "beams", "branch"):
            object.__setattr__(self, name, as_int(getattr(self, name), f"search {name}", 1, MAX_SEARCH_CANDIDATES))
        object.__setattr__(self, "chunk", as_int(self.chunk, "search chunk", 1, 10_000))
        object.__setattr__(self, "prm_context", as_int(self.prm_context, "search prm_context", 0, 1_000))
        for kind in ("prm", "orm"):
            value = getattr(self, kind)
            if isinstance(value, str):
                value = tuple(v for v in value.split(",") if v)
            object.__setattr__(self, kind, tuple(value))
        if isinstance(self.weights, dict):
            object.__setattr__(self, "weights", tuple(self.weights.items()))
        if self.slots > MAX_SEARCH_CANDIDATES:
            raise InputError(f"search keeps {self.slots} live candidates; at most {MAX_SEARCH_CANDIDATES} fit")
        if self.strategy == "best-of" and self.prm:
            raise InputError("best-of-N scores finished candidates only (outcome verifiers, --orm); process "
                             "verifiers (--prm) need a beam search, e.g. --search beam:2x4:50")
        if self.strategy == "beam" and not self.prm:
            raise InputError("a beam search prunes by process verifiers: name at least one with --prm (e.g. "
                             "--prm speaker), or use --search best-of-N")

    @property
    def slots(self) -> int:
        """Live candidates the search keeps (KV slots)."""
        return self.n if self.strategy == "best-of" else self.beams * self.branch

    def weight(self, name: str) -> float:
        return dict(self.weights).get(name, 1.0)

    @classmethod
    def parse(cls, spec: str, prm: Sequence[Any] | str = (), orm: Sequence[Any] | str = (),
              **kwargs: Any) -> Search:
        """`best-of-N`, `beam:BxK` or `beam:BxK:C` (C tokens between PRM rounds), plus the scorers."""
        if not isinstance(spec, str):
            raise InputError(f"a search is written like 'best-of-8' or 'beam:2x4:50', not {spec!r}")
        m = re.fullmatch(r"best-of-(\d+)", spec.strip())
        if m:
            return cls(strategy="best-of", n=int(m[1]), prm=prm, orm=orm, **kwargs)
        m = re.fullmatch(r"beam:(\d+)x(\d+)(?::(\d+))?", spec.strip())
        if m:
            return cls(strategy="beam", beams=int(m[1]), branch=int(m[2]),
                       chunk=int(m[3]) if m[3] else DEFAULT_CHUNK, prm=prm, orm=orm, **kwargs)
        raise InputError(f"unknown search {spec!r}: write best-of-N (e.g. best-of-8) or beam:BxK[:C] (e.g. "
                         "beam:2x4:50: 2 beams x 4 children, pruned every 50 tokens)")

    def describe(self) -> str:
        s = (f"best-of-{self.n}" if self.strategy == "best-of"
             else f"beam:{self.beams}x{self.branch}:{self.chunk}")
        names = lambda xs: ",".join(getattr(x, "name", str(x)) for x in xs)  # noqa: E731
        return s + (f" prm={names(self.prm)}" if self.prm else "") + (f" orm={names(self.orm)}" if self.orm else "")


@dataclass
class SearchStats:
    """Where a search spent its time (seconds) besides the LM."""

    codec_s: float = 0.0  # decoding partial and finished audio for the scorers
    scorer_s: float = 0.0  # running the scorers (verifiers)
    rounds: int = 0  # PRM rounds
    pruned: int = 0  # candidates pruned
    forked: int = 0  # candidates forked

    def as_dict(self) -> dict[str, float]:
        return {"search_codec_s": self.codec_s, "search_scorer_s": self.scorer_s, "search_rounds": float(self.rounds),
                "search_pruned": float(self.pruned), "search_forked": float(self.forked)}


def mean_logprob(logprob: float, codes: int) -> float:
    """The LM's log-prob per token of a candidate with `codes` codes (END counts as a token): how "most likely"
    candidates are ranked wherever no verifier decides."""
    return logprob / (codes + 1)


class SearchRun:
    """One search over one piece of text: the generation callback (beam rounds) and the final choice.

    `decode(batch_codes [n, T]) -> audio [n, T * hop]` decodes windows (voice-context handling is the caller's);
    `decode_full(codes) -> audio` decodes one finished candidate as the user will hear it.
    """

    def __init__(self, search: Search, prm: list[Scorer], orm: list[Scorer], ctx: ScoreContext,
                 decode_window: Callable[[np.ndarray], np.ndarray], hop: int, context_codes: np.ndarray) -> None:
        self.search, self.prm, self.orm, self.ctx = search, prm, orm, ctx
        self.decode_window, self.hop = decode_window, hop
        self.context_codes = np.asarray(context_codes, np.int32)  # codes before the generated ones (voice prompt)
        self.stats = SearchStats()
        self.on_final: Callable[[np.ndarray], None] | None = None  # streaming: receives newly final codes
        self.stop: Any = None  # streaming: a threading.Event; once set, the generation stops at the next call

    # ---- scoring ----------------------------------------------------------------------------------------------
    def _weighted(self, scorers: list[Scorer], codes: list[np.ndarray], audios: list[np.ndarray] | None,
                  prefix: str) -> tuple[np.ndarray, list[dict[str, float]]]:
        total = np.zeros(len(codes))
        per: list[dict[str, float]] = [{} for _ in codes]
        for s in scorers:
            t0 = time.perf_counter()
            values = np.asarray(s.score(codes, audios if s.needs_audio else None, self.ctx), dtype=np.float64)
            self.stats.scorer_s += time.perf_counter() - t0
            if values.shape != (len(codes),) or not np.isfinite(values).all():
                raise InputError(f"scorer {s.name!r} returned {values.shape} / non-finite scores for {len(codes)} "
                                 "candidates; a scorer must return one finite number per candidate")
            total += self.search.weight(s.name) * values
            for d, v in zip(per, values, strict=True):
                d[f"{prefix}:{s.name}"] = float(v)
        return total, per

    def _window_audio(self, tokens: list[np.ndarray]) -> list[np.ndarray]:
        """Audio of the last `chunk + prm_context` generated codes of each candidate (all live candidates have the
        same length), decoded in one batch; voice-prompt codes fill the window's left side while the generated
        part is shorter, as context only."""
        span = self.search.chunk + self.search.prm_context
        rows = [np.concatenate([self.context_codes, t])[-span:].astype(np.int32) for t in tokens]
        lead = len(rows[0]) - min(len(tokens[0]), span)
        t0 = time.perf_counter()
        audio = self.decode_window(np.stack(rows))
        self.stats.codec_s += time.perf_counter() - t0
        return [a[lead * self.hop:] for a in audio]

    def _full_audio(self, tokens: list[np.ndarray]) -> list[np.ndarray]:
        """Audio of whole candidates for scoring: candidates of equal length are decoded in one codec batch, each
        after the last `prm_context` codes of the voice prompt (left context only) instead of the whole prompt.
        The audio a user hears is decoded separately, exactly (the whole prompt in front)."""
        out: list[np.ndarray | None] = [None] * len(tokens)
        ctx = self.context_codes[len(self.context_codes) - min(len(self.context_codes), self.search.prm_context):]
        by_length: dict[int, list[int]] = {}
        for i, t in enumerate(tokens):
            by_length.setdefault(len(t), []).append(i)
        t0 = time.perf_counter()
        for length, idx in by_length.items():
            if length == 0:
                for i in idx:
                    out[i] = np.zeros(0, np.float32)
                continue
            rows = np.stack([np.concatenate([ctx, tokens[i]]).astype(np.int32) for i in idx])
            audio = self.decode_window(rows)
            for i, a in zip(idx, audio, strict=True):
                out[i] = a[len(ctx) * self.hop:]
        self.stats.codec_s += time.perf_counter() - t0
        return out  # type: ignore[return-value]

    # ---- the generation callback -------------------------------------------------------------------------------
    def callback_every(self) -> int:
        return self.search.chunk if self.search.strategy == "beam" else 0

    def __call__(self, ctl: Any) -> None:
        if self.on_final is not None:
            new = ctl.new_final_codes
            if new.size:
                self.on_final(new.copy())
        if ctl.done:
            return
        if self.stop is not None and self.stop.is_set():
            ctl.stop()
            return
        if self.search.strategy == "beam":
            self._beam_round(ctl)

    def _beam_round(self, ctl: Any) -> None:
        s = self.search
        cands = ctl.candidates()
        live = [c for c in cands if not c.finished]
        finished = [c for c in cands if c.finished]
        if not live:
            return
        self.stats.rounds += 1
        # Score the live candidates (one codec batch, one batch per scorer) and the newly finished ones.
        fresh = [c for c in finished if not any(k.startswith("prm:") for k in c.scores)]
        group = live + fresh
        tokens = [c.tokens for c in group]
        audios = None
        if any(p.needs_audio for p in self.prm):
            audios = self._window_audio([c.tokens for c in live]) if live else []
            if fresh:
                audios += self._full_audio([c.tokens for c in fresh])
        total, per = self._weighted(self.prm, tokens, audios, "prm")
        prm_total = {}
        for c, t, d in zip(group, total, per, strict=True):
            prm_total[c.uid] = float(t)
            for k, v in {**d, "prm": float(t)}.items():
                ctl.set_score(c.uid, k, v)
        key = lambda c: (prm_total.get(c.uid, c.scores.get("prm", -math.inf)),  # noqa: E731
                         mean_logprob(c.logprob, len(c.tokens)))
        # Finished beams wait; at most B are kept (the best by their PRM score).
        finished.sort(key=key, reverse=True)
        for c in finished[s.beams:]:
            ctl.prune(c.uid)
            self.stats.pruned += 1
        if len(finished) >= s.beams:
            ctl.stop()  # B complete candidates: the ORM chooses among them
            return
        live.sort(key=key, reverse=True)
        survivors, dropped = live[:s.beams], live[s.beams:]
        for c in dropped:
            ctl.prune(c.uid)
            self.stats.pruned += 1
        # Fork the budget back from the survivors, best first, round robin.
        i = 0
        while len(survivors) + i < s.beams * s.branch:
            ctl.fork(survivors[i % len(survivors)].uid)
            self.stats.forked += 1
            i += 1

    # ---- the final choice --------------------------------------------------------------------------------------
    def choose(self, candidates: list[Any]) -> tuple[int, list[dict[str, float]]]:
        """Index of the chosen candidate among `candidates` (CandidateCodes-like: codes, logprob, finish_reason,
        scores) and every candidate's scores (ORM scores added)."""
        eligible = [i for i, c in enumerate(candidates) if c.finish_reason == "end"] or list(range(len(candidates)))
        scores = [dict(c.scores) for c in candidates]
        if self.orm:
            codes = [candidates[i].codes for i in eligible]
            audios = self._full_audio(codes) if any(o.needs_audio for o in self.orm) else None
            total, per = self._weighted(self.orm, codes, audios, "orm")
            for i, t, d in zip(eligible, total, per, strict=True):
                scores[i].update(d)
                scores[i]["orm"] = float(t)
            rank = lambda i: (scores[i]["orm"], mean_logprob(candidates[i].logprob, len(candidates[i].codes)))  # noqa: E731
        elif self.prm:
            rank = lambda i: (scores[i].get("prm", -math.inf),  # noqa: E731
                              mean_logprob(candidates[i].logprob, len(candidates[i].codes)))
        else:
            rank = lambda i: mean_logprob(candidates[i].logprob, len(candidates[i].codes))  # noqa: E731
        best = max(eligible, key=rank)
        for i, d in enumerate(scores):
            d["mean_logprob"] = mean_logprob(candidates[i].logprob, len(candidates[i].codes))
            d["chosen"] = 1.0 if i == best else 0.0
        return best, scores


class VerifierScorer:
    """A bundle verifier (`llasa_rt.verifiers`) as a search scorer: it scores audio."""

    needs_audio = True

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier
        self.name = verifier.name
        self.needs_voice = bool(getattr(verifier, "needs_voice", False))

    def score(self, codes: Sequence[np.ndarray], audios: Sequence[np.ndarray] | None,
              ctx: ScoreContext) -> np.ndarray:
        from .verifiers import ScoreContext as VerifierContext

        return self.verifier.score(list(audios or []), VerifierContext(text=ctx.text, voice=ctx.voice))


def verifier_scorer(bundle: Any, name: str, threads: int | None = None) -> VerifierScorer:
    """The bundle's verifier `name` as a scorer; a kind ("speaker", "asr", ...) names the bundle's only verifier
    of that kind. Unknown names are refused with the bundle's list."""
    try:
        from .verifiers import load_verifier
    except ImportError:
        have = ", ".join(sorted(bundle.manifest.verifiers)) or "none"
        raise InputError(f"verifier {name!r}: this llasa-rt has no verifier runtime; bundle verifiers: "
                         f"{have}") from None
    verifiers = bundle.manifest.verifiers
    if name not in verifiers:  # a kind ("speaker", "asr") stands for the bundle's only verifier of that kind
        of_kind = sorted(n for n, v in verifiers.items() if v.kind == name)
        if len(of_kind) == 1:
            name = of_kind[0]
        elif len(of_kind) > 1:
            raise InputError(f"the bundle has {len(of_kind)} {name} verifiers ({', '.join(of_kind)}); name one")
    return VerifierScorer(load_verifier(bundle, name, threads))


def paper_chunks(text: str) -> list[str]:
    """The Llasa paper's rule for long inputs: more than 100 characters -> 2 chunks, more than 200 -> 3, ...

    Chunks are of about equal length, cut at the sentence end (else clause mark, else space) nearest to each
    equal-length point; text of at most 100 characters is one chunk.
    """
    text = " ".join(text.split())
    n = max(1, math.ceil(len(text) / 100))
    if n == 1:
        return [text] if text else []
    cuts: list[int] = []
    for k in range(1, n):
        target = round(k * len(text) / n)
        best = None
        for pattern in (r"[.!?…。！？]\s", r"[,;:，；：、]\s?", r"\s"):
            spots = [m.end() for m in re.finditer(pattern, text)]
            spots = [p for p in spots if (not cuts or p > cuts[-1]) and 0 < p < len(text)]
            if spots:
                near = min(spots, key=lambda p: abs(p - target))
                if abs(near - target) <= len(text) / (2 * n):
                    best = near
                    break
        cuts.append(best if best is not None else target)
    bounds = [0, *cuts, len(text)]
    return [text[a:b].strip() for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


@dataclass
class SearchReport:
    """What `--report` writes: the search, every candidate's scores, which one won, and the time split."""

    search: str
    pieces: list[dict[str, Any]] = field(default_factory=list)

    def add_piece(self, text: str, candidates: list[Any], chosen: int, timings: dict[str, float]) -> None:
        self.pieces.append({
            "text": text, "chosen": chosen, "timings": timings,
            "candidates": [{"codes": len(c.codes), "finish_reason": c.finish_reason, "logprob": c.logprob,
                            "scores": c.scores} for c in candidates],
        })

    def to_json(self) -> dict[str, Any]:
        return {"search": self.search, "pieces": self.pieces}
