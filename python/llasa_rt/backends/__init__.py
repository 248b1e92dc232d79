"""Backends behind one factory: the manifest's `backend` field of a graph picks the code that runs it.

    runner = create_lm(bundle, RuntimeOptions(threads=2))      # the LM + the C++ decode loop over it
    generator = runner.generator(slots=8)                       # KV cache for 8 candidates (grown on demand)
    codec = create_codec(bundle, RuntimeOptions(threads=2))     # the X-Codec2 decoder

| manifest backend   | LM                                                 | codec                            |
|--------------------|----------------------------------------------------|----------------------------------|
| `onnxruntime`      | `ort.OrtLmBackend` (CPU provider);                 | `codec.CodecDecoder`             |
|                    | flavour "portable": `portable.PortableLmBackend`;  |                                  |
|                    | flavour "ort-cpu-layered": `layered.LayeredLmBackend` |                               |
| `onnxruntime-cuda` | `ort_cuda.DeviceLmBackend` (CUDA, KV on the GPU)   | `codec.CodecDecoder` on CUDA     |
| `tensorrt`         | `_core.TensorRtBackend` (C++, when compiled in)    | `trt_codec.TensorRtCodecDecoder` |

A bundle may hold several LM entries ("lm", "lm.portable", "lm.plan", ...): `create_lm(bundle, runtime, graph)` runs
the one named (default: `Manifest.default_lm()`); `Engine("BUNDLE/lm.portable.onnx")` picks it by its file.
`create_codec(bundle, runtime, graph)` likewise ("codec_decoder", or the plan "codec_decoder.plan"). The GPU
backends have never run (no GPU on the development machines); without their runtime or a device they refuse in one
line (what to install, or the ONNX graph to use).

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
from ..bundle import CODEC_GRAPH, MANIFEST_NAME, PORTABLE_FLAVOUR, Bundle, GraphEntry, ModelFacts
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
    native_decode: str = "auto"  # layered int4/int8 LMs: decode steps on llasa-rt's kernels (native.AUTO_KERNELS)

    def __post_init__(self) -> None:
        if self.threads is not None:
            self.threads = as_int(self.threads, "threads", 1, MAX_THREADS)
            cores = os.cpu_count() or 1
            if self.threads > 4 * cores:
                raise InputError(f"threads={self.threads} is far more than this machine's {cores} cores; use at most "
                                 f"{cores} (or leave it unset)")
        self.sampler_threads = as_int(self.sampler_threads, "sampler_threads", 1, MAX_THREADS)
        from .native import NATIVE_MODES

        if self.native_decode not in NATIVE_MODES:
            raise InputError(f"native_decode must be one of {', '.join(NATIVE_MODES)}, not {self.native_decode!r}")


class LmRunner:
    """A bundle's LM behind the C++ decode loop: owns the session, the KV cache (sized to the slots asked for so
    far, allocated once per size) and the `_core.Generator`."""

    def __init__(self, bundle: Bundle, runtime: RuntimeOptions, make_backend: Callable[..., Any],
                 session: Any, graph: str | None = None) -> None:
        self.bundle = bundle
        self.graph = graph or bundle.manifest.default_lm()
        self.model = bundle.manifest.lm_model(self.graph)
        _, self.tokens, _ = bundle.manifest.lm_parts()
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


def _ort_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str) -> LmRunner:
    from .ort import OrtLmBackend, check_lm_graph, create_session
    from .portable import PortableLmBackend, check_portable_graph

    model, (_, tokens, _) = bundle.manifest.lm_model(graph), bundle.manifest.lm_parts()
    entry = bundle.graph(graph)
    if entry.layered:
        from .layered import LayeredLmBackend, open_layered

        graphs = open_layered(bundle.root, entry.segments, model, tokens, runtime.threads, runtime.providers,
                              bundle.root, runtime.native_decode)
        return LmRunner(bundle, runtime, LayeredLmBackend, graphs, graph)
    path = bundle.path(entry.path_name)
    session = create_session(path, runtime.threads, runtime.providers, bundle.root)
    if entry.details.get("flavour") == PORTABLE_FLAVOUR:
        check_portable_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")
        return LmRunner(bundle, runtime, PortableLmBackend, session, graph)
    check_lm_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")
    prefill_name = entry.details.get("prefill")
    if not prefill_name:
        return LmRunner(bundle, runtime, OrtLmBackend, session, graph)
    prefill_path = bundle.path(prefill_name)
    prefill = create_session(prefill_path, runtime.threads, runtime.providers, bundle.root)
    check_lm_graph(prefill, model, tokens, f"{prefill_path.name} of bundle '{bundle.root}'")

    def make(session: Any, cache: Any, buffers: Any, m: Any) -> Any:
        return OrtLmBackend(session, cache, buffers, m, prefill=prefill)

    return LmRunner(bundle, runtime, make, session, graph)


def require_tensorrt(bundle: Bundle | None = None) -> Any:
    """The `tensorrt` module, or one BundleError saying what to install or which ONNX graph to run instead."""
    try:
        import tensorrt
    except ImportError:
        onnx = [bundle.graph(name).path_name for name in bundle.manifest.lm_graphs()
                if bundle.graph(name).backend != "tensorrt"] if bundle is not None else []
        where = f"{bundle.root}/" if bundle is not None else "BUNDLE/"
        instead = " or ".join(f"{where}{name}" for name in onnx) or f"{where}lm.onnx or {where}lm.portable.onnx"
        raise BundleError("a TensorRT plan needs TensorRT, which this Python cannot import: install TensorRT on an "
                          "NVIDIA GPU machine and run `llasa-rt build-engine` there (`pip install tensorrt` on x86_64; "
                          f"on Jetson JetPack's python3-libnvinfer), or use {instead} instead") from None
    return tensorrt


PLAN_SUFFIX = ".plan"  # TensorRT engine files


def locate_lm(path: str | Path, verify: str = "full") -> tuple[Bundle, str]:
    """What a user has in hand -> (the opened bundle, the LM entry to run).

    `path` is a bundle folder (its default LM, `Manifest.default_lm()`), or a graph file inside one
    ("BUNDLE/lm.onnx", "BUNDLE/lm.portable.onnx", "BUNDLE/lm.plan"), which picks the LM entry listing that file, and
    so its backend. A `.plan` where `tensorrt` cannot be imported is refused (`require_tensorrt`).
    """
    p = Path(path)
    if p.is_dir() or (not p.exists() and not p.suffix):
        bundle = Bundle.open(p, verify=verify)
        return bundle, bundle.manifest.default_lm()
    root = p.parent
    if not (root / MANIFEST_NAME).is_file():
        if not p.exists():
            raise BundleError(f"'{p}' does not exist; pass a bundle folder made by `llasa-rt export` (or a graph file "
                              "inside one, e.g. BUNDLE/lm.onnx)")
        raise BundleError(f"'{p}' is a file, not a bundle folder, and no {MANIFEST_NAME} is next to it; pass the "
                          "bundle folder made by `llasa-rt export`, or a graph file inside it (e.g. BUNDLE/lm.onnx)")
    if p.name == MANIFEST_NAME:
        bundle = Bundle.open(root, verify=verify)
        return bundle, bundle.manifest.default_lm()
    plan = p.suffix == PLAN_SUFFIX
    bundle = Bundle.open(root, verify="fast" if plan else verify)
    manifest = bundle.manifest
    choices = ", ".join(f"{root}/{manifest.graphs[name].path_name}" for name in manifest.lm_graphs())
    if not p.exists():
        build = " (build it with `llasa-rt build-engine` on the GPU machine)" if plan else ""
        raise BundleError(f"'{p}' does not exist{build}; bundle '{root}' has these LM graphs: {choices}")
    if plan:
        require_tensorrt(bundle)
    graph = manifest.lm_for_file(p.name)
    if graph is None:
        what = "is not an LM graph" if p.name in manifest.all_files() else f"is not listed in {MANIFEST_NAME}"
        raise BundleError(f"'{p}' {what} of bundle '{root}'; pass the bundle folder or one of its LM graphs: "
                          f"{choices}")
    if verify == "full" and plan:
        bundle.check_files("full")
    return bundle, graph


def lm_driver(path: str | Path, threads: int | None = None) -> tuple[Bundle, Any]:
    """(bundle, the plain driver of its LM, `plain_lm`) for a bundle folder or LM graph file (`locate_lm`)."""
    bundle, graph = locate_lm(path, verify="fast")
    entry = bundle.graph(graph)
    if entry.backend != "onnxruntime":
        raise BundleError(f"{entry.path_name} of bundle '{bundle.root}' is a {entry.backend} graph; this runs ONNX "
                          f"graphs on ONNX Runtime: pass the bundle's lm.onnx or lm.portable.onnx")
    return bundle, plain_lm(bundle.root, entry, bundle.manifest.lm_model(graph), threads)


def _ort_cuda_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str) -> LmRunner:
    from .ort import check_lm_graph, create_session
    from .ort_cuda import CUDA_PROVIDER, CudaMemory, DeviceLmBackend, check_cuda_model, check_cuda_provider

    entry = bundle.graph(graph)
    if entry.details.get("flavour") == PORTABLE_FLAVOUR:
        raise BundleError(f"bundle '{bundle.root}': graph '{graph}' is the portable graph, which runs on a GPU through "
                          "TensorRT (`llasa-rt build-engine`); the onnxruntime-cuda backend runs the ORT graph lm.onnx")
    model, (_, tokens, _) = bundle.manifest.lm_model(graph), bundle.manifest.lm_parts()
    check_cuda_model(model, bundle.root)
    check_cuda_provider()
    memory = CudaMemory(0)
    path = bundle.path(entry.path_name)
    session = create_session(path, runtime.threads, [CUDA_PROVIDER, "CPUExecutionProvider"], bundle.root)
    check_lm_graph(session, model, tokens, f"{path.name} of bundle '{bundle.root}'")

    def make(session: Any, cache: Any, buffers: Any, m: Any) -> Any:
        return DeviceLmBackend(session, cache, buffers, m, memory)

    return LmRunner(bundle, runtime, make, session, graph)


def _tensorrt_lm(bundle: Bundle, runtime: RuntimeOptions, graph: str) -> LmRunner:
    from .trt_plan import read_plan, require_tensorrt_backend, running_facts

    require_tensorrt(bundle)
    require_tensorrt_backend()
    plan, facts = read_plan(bundle, graph, running_facts(bundle))
    engine = _core.TensorRtEngine(plan)
    options = _core.TensorRtOptions(max_batch=facts.max_batch, cuda_graphs=bool(runtime.cuda_graphs))

    def make(engine: Any, cache: Any, buffers: Any, m: Any) -> Any:
        return _core.TensorRtBackend(cache, buffers, engine, options)

    return LmRunner(bundle, runtime, make, engine, graph)


_LM_BACKENDS: dict[str, Callable[[Bundle, RuntimeOptions, str], LmRunner]] = {
    "onnxruntime": _ort_lm,
    "onnxruntime-cuda": _ort_cuda_lm,
    "tensorrt": _tensorrt_lm,
}


def create_lm(bundle: Bundle, runtime: RuntimeOptions | None = None, graph: str | None = None) -> LmRunner:
    """The LM entry `graph` of `bundle` (default: `Manifest.default_lm()`) on the backend its manifest names."""
    runtime = runtime or RuntimeOptions()
    graph = graph or bundle.manifest.default_lm()
    return _LM_BACKENDS[bundle.graph(graph).backend](bundle, runtime, graph)


def plain_lm(folder: Path, entry: GraphEntry, model: ModelFacts, threads: int | None = None,
             native_decode: str = "auto") -> Any:
    """The plainest driver of the LM graph(s) `entry` in `folder` (`model`, `step(ids)` -> last logits,
    `reset(batch)`): `ort.GrowingPastLm` for a fused graph, `layered.LayeredLm` for a layered one (its decode steps
    on llasa-rt's kernels unless `native_decode` is "off"), `portable.PortableLm` for a portable one. For the export
    check, drift measurement, parity tests and benchmarks."""
    from ..layout import LLASA_TOKENS

    if entry.layered:
        from .layered import LayeredLm, open_layered

        return LayeredLm(open_layered(folder, entry.segments, model, LLASA_TOKENS, threads, None,
                                      native_decode=native_decode), model, LLASA_TOKENS.head_rows)
    if entry.details.get("flavour") == PORTABLE_FLAVOUR:
        from .portable import PortableLm

        return PortableLm(Path(folder) / entry.path_name, model, threads)
    from .ort import GrowingPastLm

    return GrowingPastLm(Path(folder) / entry.path_name, model, threads)


def plain_lm_of(bundle: Bundle | str | Path, threads: int | None = None) -> Any:
    """`plain_lm` of a bundle's default LM (an opened `Bundle`, or a folder opened with verify="fast")."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle, verify="fast")
    graph = bundle.manifest.default_lm()
    return plain_lm(bundle.root, bundle.graph(graph), bundle.manifest.lm_model(graph), threads)


def create_codec(bundle: Bundle, runtime: RuntimeOptions | None = None, graph: str = CODEC_GRAPH) -> Any:
    """The X-Codec2 decoder of `bundle` (graph entry `graph`, default "codec_decoder"): a `codec.CodecDecoder` on
    ONNX Runtime (backend onnxruntime-cuda: on the CUDA provider), or a `trt_codec.TensorRtCodecDecoder` for the
    plan "codec_decoder.plan"."""
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
