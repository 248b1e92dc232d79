"""Options of a generation, as one object: `GenerationOptions`.

    opts = llasa_rt.GenerationOptions(temperature=0.7, seed=42, num_candidates=4)
    engine.speak("Hello.", opts)
    engine.speak("Hello.", temperature=0.7, seed=42)     # the same, built from keywords

Every field left at None takes the bundle's default (its manifest's `generation` section: Llasa's model card,
temperature 0.8, top_p 1.0). Values are checked for type and range when the object is made, so a bad value is
refused at the API boundary with an `InputError` that names the option and its valid range.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import InputError

MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit integers end to end
MAX_CANDIDATES = 64  # KV memory grows linearly with the number of candidates
MAX_TEMPERATURE = 100.0
MAX_REPETITION_PENALTY = 100.0
MAX_NEW_TOKENS = 1 << 20  # a bound far beyond any context; the context itself is the real limit


def as_int(value: Any, name: str, lo: int, hi: int) -> int:
    """`value` as a Python int in [lo, hi] (numpy integers accepted; bools, floats and strings refused)."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], not the boolean {value}")
    try:
        v = operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], not {type(value).__name__} {value!r}") from None
    if not lo <= v <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], not {v}")
    return int(v)


def as_float(value: Any, name: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """`value` as a finite float in [lo, hi] ((lo, hi] with lo_open); bools and strings refused."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise InputError(f"{name} must be a number in {span}, not {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in {span}, not {type(value).__name__} {value!r}") from None
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise InputError(f"{name} must be a number in {span}, not {value!r}")
    return v


def fresh_seed() -> int:
    """A random seed in [0, 2^64-1]."""
    return int.from_bytes(os.urandom(8), "little")


@dataclass(frozen=True)
class GenerationOptions:
    """How codes are sampled. None = the bundle's default for that field."""

    temperature: float | None = None  # softmax temperature; 0 = greedy
    top_p: float | None = None  # nucleus mass in (0, 1]; 1 = off
    top_k: int | None = None  # keep the k most likely codes; 0 = off
    min_p: float | None = None  # drop codes below min_p x the top probability; 0 = off
    repetition_penalty: float | None = None  # > 1 discourages codes already in the prompt or output; 1 = off
    min_new_tokens: int | None = None  # END is masked until this many codes exist
    max_new_tokens: int | None = None  # most codes per piece of text (50 per second); None = the context's room
    seed: int | None = None  # sampling seed in [0, 2^64-1]; None = a fresh random seed (reported back)
    num_candidates: int = 1  # candidates sampled from one prefill; the most likely (per token) is kept
    search: Any = None  # a llasa_rt.Search (or its spec, e.g. "best-of-8"): verifier-guided choice of candidates

    def __post_init__(self) -> None:
        checks = {
            "temperature": lambda v: as_float(v, "temperature", 0.0, MAX_TEMPERATURE),
            "top_p": lambda v: as_float(v, "top_p", 0.0, 1.0, lo_open=True),
            "top_k": lambda v: as_int(v, "top_k", 0, 1 << 31),
            "min_p": lambda v: as_float(v, "min_p", 0.0, 1.0),
            "repetition_penalty": lambda v: as_float(v, "repetition_penalty", 0.0, MAX_REPETITION_PENALTY,
                                                     lo_open=True),
            "min_new_tokens": lambda v: as_int(v, "min_new_tokens", 0, MAX_NEW_TOKENS),
            "max_new_tokens": lambda v: as_int(v, "max_new_tokens", 1, MAX_NEW_TOKENS),
            "seed": lambda v: as_int(v, "seed", 0, MAX_SEED),
            "num_candidates": lambda v: as_int(v, "num_candidates", 1, MAX_CANDIDATES),
        }
        for name, check in checks.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check(value))
        if self.num_candidates is None:
            raise InputError(f"num_candidates must be an integer in [1, {MAX_CANDIDATES}], not None")
        if self.search is not None:
            from .search import Search

            if isinstance(self.search, str):
                object.__setattr__(self, "search", Search.parse(self.search))
            elif not isinstance(self.search, Search):
                raise InputError(f"search must be a llasa_rt.Search or a spec such as 'best-of-8', not "
                                 f"{type(self.search).__name__}")
            if self.num_candidates != 1:
                raise InputError("pass either num_candidates or a search (best-of-N keeps N candidates), not both")
        if (self.min_new_tokens is not None and self.max_new_tokens is not None
                and self.min_new_tokens > self.max_new_tokens):
            raise InputError(f"min_new_tokens ({self.min_new_tokens}) is larger than max_new_tokens "
                             f"({self.max_new_tokens})")

    @classmethod
    def build(cls, options: GenerationOptions | None = None, **overrides: Any) -> GenerationOptions:
        """`options` (or the defaults) with the given keyword overrides applied; None overrides are ignored.

        This is the one place where keyword arguments of `speak`, `speak_stream` and `generate_codes` become
        options; unknown keywords are refused with the list of known ones.
        """
        if options is not None and not isinstance(options, GenerationOptions):
            raise InputError(f"options must be a llasa_rt.GenerationOptions, not {type(options).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        base = options or cls()
        return replace(base, **given) if given else base

    def with_defaults(self, defaults: GenerationOptions) -> GenerationOptions:
        """These options with every None field taken from `defaults` (the bundle's)."""
        filled = {f.name: getattr(defaults, f.name) for f in fields(self)
                  if getattr(self, f.name) is None and getattr(defaults, f.name) is not None}
        return replace(self, **filled) if filled else self

    def seeded(self) -> GenerationOptions:
        """These options with a seed: a fresh random one when none was given (reported back, reproducible)."""
        return self if self.seed is not None else replace(self, seed=fresh_seed())

    def for_piece(self, index: int) -> GenerationOptions:
        """Options of piece `index` of a split text: the seed advances by the piece index (mod 2^64)."""
        if self.seed is None or index == 0:
            return self
        return replace(self, seed=(self.seed + index) & MAX_SEED)
