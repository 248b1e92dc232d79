"""Backends behind one factory: the manifest's `backend` field of a graph picks the code that runs it.

    runner = create_lm(bundle, RuntimeOptions(threads=2))      # the LM + the C++ decode loop over it
    generator = runner.generator(slots=8)                       # KV cache for 8 candidates (grown on demand)
    codec = create_codec(bundle, RuntimeOptions(threads=2))     # the X-Codec2 decoder

| manifest backend   | LM                                                        | codec                 |
|--------------------|-----------------------------------------------------------|-----------------------|
| `onnxruntime`      | `ort.OrtLmBackend` (CPU provider), or for a layered LM    | `codec.CodecDecoder`  |
|                    | (details.flavour) `layered.LayeredLmBackend`              |                       |
| `onnxruntime-cuda` | not in this version (GPU issue)                           | not in this version   |
| `tensorrt`         | not in this version (GPU issue)                           | not in this version   |

A new backend is a `_core.Backend` subclass (Python, or C++ bound through csrc/) plus one entry in
`_LM_BACKENDS`; the loop, the sampler and `Engine` do not change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _core
from ..bundle import CODEC_GRAPH, LM_GRAPH, Bundle, GraphEntry, ModelFacts
from ..errors import BundleError, InputError
from ..options import as_int

MAX_THREADS = 256


@dataclass
class RuntimeOptions:
    """How graphs are run (not what is generated)."""

    threads: int | None = None  # intra-op threads per session; None = ONNX Runtime's default (physical cores)
    providers: list[str] | None = None  # ONNX Runtime execution providers; None = CPU
    sampler_threads: int = 1  # threads sampling the candidates of one step (results do not depend on it)

    def __post_init__(self) -> None:
        if self.threads is not None:
            self.threads = as_int(self.threads, "threads", 1, MAX_THREADS)
            cores = os.cpu_count() or 1
            if self.threads > 4 * cores:
                raise InputError(f"threads={self.threads} is far more than this machine's {cores} cores; use at most "
                                 f"{cores} (or leave it unset)")
        self.sampler_threads = as_int(self.sampler_threads, "sampler_threads", 1, MAX_THREADS)


class LmRunner:
    """A bundle's LM behind the C++ decode loop: owns the session, the KV cache (sized to the slots asked for so
    far, allocated once per size) and the `_core.Generator`."""

    def __init__(self, bundle: Bundle, runtime: RuntimeOptions, make_backend: Callable[..., Any],
                 session: Any) -> None:
        self.bundle = bundle
        self.model, self.tokens, _ = bundle.manifest.lm_parts()
        self.session = session
        self._make_backend = make_backend
        self.config = _core.GeneratorConfig(speech_token_base=self.tokens.speech_base_id,
                                            num_speech_tokens=self.tokens.speech_count,
                                            end_token_id=self.tokens.end_id, sampler_threads=runtime.sampler_threads)
        self.slots = 0
        self.backend: Any = None
        self._generator: Any = None

    def generator(self, slots: int) -> Any:
        """The Generator over a KV cache with at least `slots` slots."""
        if slots > self.slots:
            self.backend = self.new_backend(slots)
            self._generator = _core.Generator(self.backend, self.config)
            self.slots = slots
        return self._generator

    def new_backend(self, slots: int) -> Any:
        """A backend over a new KV cache of `slots` slots (and its step buffers), sharing this LM's session."""
        need = slots * self.model.kv_bytes_per_slot()
        total = _physical_memory()
        if total and need > total:
            raise InputError(f"{slots} candidate slot(s) at a {self.model.max_context}-token context need "
                             f"{need / 2**30:.1f} GiB of KV cache, more than this machine's {total / 2**30:.1f} "
                             "GiB; use fewer candidates or export with a smaller --max-context")
        m = self.model
        cache = _core.KvCache(_core.KvCacheConfig(
            num_layers=m.num_layers, num_kv_heads=m.num_kv_heads, head_dim=m.head_dim, slots=slots,
            max_seq_len=m.max_context, dtype=m.kv_dtype))
        buffers = _core.StepBuffers(cache, rows=self.tokens.head_rows)
        return self._make_backend(self.session, cache, buffers, m)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _ort_lm(bundle: Bundle, runtime: RuntimeOptions) -> LmRunner:
    from .ort import OrtLmBackend, check_lm_graph, create_session

    model, tokens, _ = bundle.manifest.lm_parts()
    entry = bundle.graph(LM_GRAPH)
    if entry.layered:
        from .layered import LayeredLmBackend, open_layered

        graphs = open_layered(bundle.root, entry.segments, model, tokens, runtime.threads, runtime.providers,
                              bundle.root)
        return LmRunner(bundle, runtime, LayeredLmBackend, graphs)
    path = bundle.path(entry.path_name)
    session = create_session(path, runtime.threads, runtime.providers, bundle.root)
    check_lm_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")
    return LmRunner(bundle, runtime, OrtLmBackend, session)


def _not_in_this_version(kind: str) -> Callable[[Bundle, RuntimeOptions], Any]:
    def refuse(bundle: Bundle, runtime: RuntimeOptions) -> Any:
        raise BundleError(f"bundle '{bundle.root}' is built for the {kind!r} backend, which this version of llasa-rt "
                          "does not have; export an ONNX Runtime bundle with `llasa-rt export` (CPU)")

    return refuse


_LM_BACKENDS: dict[str, Callable[[Bundle, RuntimeOptions], LmRunner]] = {
    "onnxruntime": _ort_lm,
    "onnxruntime-cuda": _not_in_this_version("onnxruntime-cuda"),
    "tensorrt": _not_in_this_version("tensorrt"),
}


def create_lm(bundle: Bundle, runtime: RuntimeOptions | None = None) -> LmRunner:
    """The LM of `bundle` on the backend its manifest names."""
    runtime = runtime or RuntimeOptions()
    return _LM_BACKENDS[bundle.graph(LM_GRAPH).backend](bundle, runtime)


def plain_lm(folder: Path, entry: GraphEntry, model: ModelFacts, threads: int | None = None) -> Any:
    """The plainest driver of the LM graph(s) `entry` in `folder` (`step(ids)` -> last logits, `reset(batch)`):
    `ort.GrowingPastLm` for a fused graph, `layered.LayeredLm` for a layered one. For the export check, drift
    measurement, parity tests and benchmarks."""
    from ..layout import LLASA_TOKENS

    if entry.layered:
        from .layered import LayeredLm, open_layered

        return LayeredLm(open_layered(folder, entry.segments, model, LLASA_TOKENS, threads, None), model,
                         LLASA_TOKENS.head_rows)
    from .ort import GrowingPastLm

    return GrowingPastLm(Path(folder) / entry.path_name, model, threads)


def plain_lm_of(bundle: Bundle | str | Path, threads: int | None = None) -> Any:
    """`plain_lm` of a bundle (an opened `Bundle`, or a folder opened with verify="fast")."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle, verify="fast")
    model, _, _ = bundle.manifest.lm_parts()
    return plain_lm(bundle.root, bundle.graph(LM_GRAPH), model, threads)


def create_codec(bundle: Bundle, runtime: RuntimeOptions | None = None) -> Any:
    """The X-Codec2 decoder of `bundle` (a `llasa_rt.codec.CodecDecoder`)."""
    from ..codec import CodecDecoder

    runtime = runtime or RuntimeOptions()
    backend = bundle.graph(CODEC_GRAPH).backend
    if backend != "onnxruntime":
        _not_in_this_version(backend)(bundle, runtime)
    return CodecDecoder(bundle, num_threads=runtime.threads or 0, providers=runtime.providers)
