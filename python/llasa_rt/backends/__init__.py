"""Backends behind one factory: the manifest's `backend` field of a graph picks the code that runs it.

    runner = create_lm(bundle, RuntimeOptions(threads=2))      # the LM + the C++ decode loop over it
    generator = runner.generator(slots=8)                       # KV cache for 8 candidates (grown on demand)
    codec = create_codec(bundle, RuntimeOptions(threads=2))     # the X-Codec2 decoder

| manifest backend   | LM                                                 | codec                            |
|--------------------|----------------------------------------------------|----------------------------------|
| `onnxruntime`      | `ort.OrtLmBackend` (CPU provider)                  | `codec.CodecDecoder`             |
| `onnxruntime-cuda` | `ort_cuda.DeviceLmBackend` (CUDA, KV on the GPU)   | `codec.CodecDecoder` on CUDA     |
| `tensorrt`         | `_core.TensorRtBackend` (C++, when compiled in)    | `trt_codec.TensorRtCodecDecoder` |

`create_lm(bundle, runtime, graph=...)` / `create_codec(...)` run one graph entry of the manifest (default "lm" /
"codec_decoder"; the plans built by `llasa-rt build-engine` are the entries "lm_plan" / "codec_decoder_plan").
The GPU backends have never run (no GPU on the development machines); without their runtime or a device they
refuse in one line (what to install, or the ONNX graph to use).

A new backend is a `_core.Backend` subclass (Python, or C++ bound through csrc/) plus one entry in
`_LM_BACKENDS`; the loop, the sampler and `Engine` do not change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _core
from ..bundle import CODEC_GRAPH, LM_GRAPH, Bundle
from ..errors import BundleError, InputError
from ..options import as_int

MAX_THREADS = 256


@dataclass
class RuntimeOptions:
    """How graphs are run (not what is generated)."""

    threads: int | None = None  # intra-op threads per session; None = ONNX Runtime's default (physical cores)
    providers: list[str] | None = None  # ONNX Runtime execution providers; None = CPU
    sampler_threads: int = 1  # threads sampling the candidates of one step (results do not depend on it)
    cuda_graphs: bool = False  # TensorRT backend: replay decode steps as CUDA graphs (docs/gpu.md; never run)

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


def _ort_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str = LM_GRAPH) -> LmRunner:
    from .ort import OrtLmBackend, check_lm_graph, create_session

    model, tokens, _ = bundle.manifest.lm_parts()
    path = bundle.path(bundle.graph(graph).path_name)
    session = create_session(path, runtime.threads, runtime.providers, bundle.root)
    check_lm_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")
    return LmRunner(bundle, runtime, OrtLmBackend, session)


def _ort_cuda_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str) -> LmRunner:
    from .ort import create_session
    from .ort_cuda import CUDA_PROVIDER, CudaMemory, DeviceLmBackend, check_cuda_model, check_cuda_provider

    model, tokens, _ = bundle.manifest.lm_parts()
    check_cuda_model(model, bundle.root)
    check_cuda_provider()
    memory = CudaMemory(0)
    path = bundle.path(bundle.graph(graph).path_name)
    session = create_session(path, runtime.threads, [CUDA_PROVIDER, "CPUExecutionProvider"], bundle.root)
    from .ort import check_lm_graph

    check_lm_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")

    def make(session: Any, cache: Any, buffers: Any, m: Any) -> Any:
        return DeviceLmBackend(session, cache, buffers, m, memory)

    return LmRunner(bundle, runtime, make, session)


def _tensorrt_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str) -> LmRunner:
    from .trt_plan import read_plan, require_tensorrt_backend, running_facts

    require_tensorrt_backend()
    plan, facts = read_plan(bundle, graph, running_facts())
    engine = _core.TensorRtEngine(plan)
    options = _core.TensorRtOptions(max_batch=facts.max_batch, cuda_graphs=bool(runtime.cuda_graphs))

    def make(engine: Any, cache: Any, buffers: Any, m: Any) -> Any:
        return _core.TensorRtBackend(cache, buffers, engine, options)

    return LmRunner(bundle, runtime, make, engine)


_LM_BACKENDS: dict[str, Callable[[Bundle, RuntimeOptions, str], LmRunner]] = {
    "onnxruntime": _ort_lm,
    "onnxruntime-cuda": _ort_cuda_lm,
    "tensorrt": _tensorrt_lm,
}


def create_lm(bundle: Bundle, runtime: RuntimeOptions | None = None, graph: str = LM_GRAPH) -> LmRunner:
    """The LM of `bundle` (graph entry `graph`, default "lm") on the backend its manifest entry names."""
    runtime = runtime or RuntimeOptions()
    return _LM_BACKENDS[bundle.graph(graph).backend](bundle, runtime, graph)


def create_codec(bundle: Bundle, runtime: RuntimeOptions | None = None, graph: str = CODEC_GRAPH) -> Any:
    """The X-Codec2 decoder of `bundle` (graph entry `graph`, default "codec_decoder"): a `codec.CodecDecoder` on
    ONNX Runtime (backend onnxruntime-cuda: on the CUDA provider), or a `trt_codec.TensorRtCodecDecoder` for a plan
    ("codec_decoder_plan")."""
    from ..codec import CodecDecoder

    runtime = runtime or RuntimeOptions()
    backend = bundle.graph(graph).backend
    if backend == "tensorrt":
        from .trt_codec import TensorRtCodecDecoder

        return TensorRtCodecDecoder(bundle, graph)
    if graph != CODEC_GRAPH:
        raise BundleError(f"bundle '{bundle.root}': graph '{graph}' is not a codec plan; the ONNX codec decoder is "
                          f"the entry '{CODEC_GRAPH}'")
    providers = runtime.providers
    if backend == "onnxruntime-cuda":
        from .ort_cuda import CUDA_PROVIDER, check_cuda_provider

        check_cuda_provider()
        providers = [CUDA_PROVIDER, "CPUExecutionProvider"]
    return CodecDecoder(bundle, num_threads=runtime.threads or 0, providers=providers)
