"""`llasa-rt build-engine`: a bundle's ONNX graphs -> TensorRT plans (`lm.plan`, `codec_decoder.plan`) in the bundle.

Written to the TensorRT 10 Python API as documented (Builder, OnnxParser, strongly typed networks, optimisation
profiles, timing cache); it has never run: the development machines have no GPU and no TensorRT. What runs here:
choosing the source graphs, the profiles, checking them against the graph's inputs, the manifest facts, and the
refusal when `tensorrt` is missing (before anything is written).

Which ONNX graph each precision builds from (LM entries whose details.flavour is "portable": "lm.portable" from
`llasa-rt export --target portable|both`, "lm.portable.int8" / "lm.portable.int4" from `llasa-rt quantize`):

- fp16: the portable fp16 graph (else the fp32 one), weakly typed network with BuilderFlag.FP16; codec_decoder with
  the fp16 flag;
- int8: the portable INT8 Q/DQ graph (W8A8), strongly typed; an int8 codec entry if there is one, else fp16;
- int4: the portable INT4 Q/DQ graph (weight-only, blockwise), strongly typed; codec_decoder in fp16.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llasa_rt._version import __version__
from llasa_rt.backends import require_tensorrt
from llasa_rt.backends.trt_plan import PLAN_FILES, PLAN_GRAPHS, PlanFacts, running_facts
from llasa_rt.bundle import CODEC_GRAPH, LM_GRAPH, PORTABLE_FLAVOUR, Bundle, GraphEntry
from llasa_rt.bundle.manifest import is_lm_graph
from llasa_rt.bundle.writer import check_writable, write_bytes_atomic, write_manifest
from llasa_rt.errors import BundleError, InputError

from .profiles import Profile, check_limits, codec_profiles, lm_profiles

ENGINE_PRECISIONS = ("fp16", "int8", "int4")
# How to make a missing source graph (docs/gpu.md: "The portable graph and its KV cache", "Quantisation recipes").
MAKE_SOURCE = {
    "fp16": "export it with `llasa-rt export --target portable --precision fp16 ...` (or --target both)",
    "int8": "make it with `llasa-rt quantize BUNDLE --scheme int8 --graph lm.portable` (docs/gpu.md, \"Quantisation "
            "recipes\")",
    "int4": "make it with `llasa-rt quantize BUNDLE --scheme int4 --graph lm.portable` (docs/gpu.md, \"Quantisation "
            "recipes\")",
}


@dataclass(frozen=True)
class BuildRequest:
    """What `llasa-rt build-engine` was asked for."""

    precision: str  # "fp16", "int8" or "int4"
    max_batch: int = 8  # most candidates / utterances per step
    max_context: int | None = None  # most positions; None = the bundle's model.max_context
    workspace_gb: float | None = None  # TensorRT builder workspace limit; None = TensorRT's default (device memory)
    timing_cache: Path | None = None  # read if present, written back after the build (faster rebuilds)


@dataclass(frozen=True)
class Source:
    """An ONNX graph of the bundle chosen to build a plan from."""

    graph: str  # manifest key
    entry: GraphEntry
    strongly_typed: bool  # Q/DQ graphs are built as strongly typed networks
    fp16_flag: bool  # weakly typed network with BuilderFlag.FP16


def lm_source(bundle: Bundle, precision: str) -> Source:
    """The portable LM graph a precision builds from, or one line naming the command that makes it."""
    if precision not in ENGINE_PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(ENGINE_PRECISIONS)}, not {precision!r}")
    portable = {k: g for k, g in bundle.manifest.graphs.items()
                if is_lm_graph(k) and g.details.get("flavour") == PORTABLE_FLAVOUR and g.backend == "onnxruntime"}
    wanted = ("fp16", "fp32") if precision == "fp16" else (precision,)
    for p in wanted:
        for key, g in sorted(portable.items()):
            if g.precision == p:
                return Source(key, g, strongly_typed=precision != "fp16", fp16_flag=precision == "fp16")
    have = ", ".join(f"{k} ({g.precision})" for k, g in sorted(portable.items())) or "none"
    raise BundleError(f"bundle '{bundle.root}' has no portable {precision} LM graph to build lm.plan from (portable "
                      f"graphs: {have}); {MAKE_SOURCE[precision]}")


def codec_source(bundle: Bundle, precision: str) -> Source | None:
    """The codec graph for the codec plan (None when the bundle has no codec decoder)."""
    codecs = {k: g for k, g in bundle.manifest.graphs.items()
              if k.startswith(CODEC_GRAPH) and g.backend == "onnxruntime"}
    if precision == "int8":
        for key, g in sorted(codecs.items()):
            if g.precision == "int8":
                return Source(key, g, strongly_typed=True, fp16_flag=False)
    if CODEC_GRAPH in codecs:
        g = codecs[CODEC_GRAPH]
        return Source(CODEC_GRAPH, g, strongly_typed=False, fp16_flag=True)
    return None


def graph_capacity(inputs: dict[str, tuple[int, ...]], name: str) -> int | None:
    """The static KV length (dimension 2) of the graph's KV input `name`; None when it is dynamic (-1)."""
    shape = inputs.get(name)
    if shape is None or len(shape) != 4:
        raise BundleError(f"the LM graph has no 4-D input {name!r} (inputs: {', '.join(inputs)}); it is not a portable "
                          f"graph: {MAKE_SOURCE['fp16']}")
    return shape[2] if shape[2] > 0 else None


def check_profile_inputs(inputs: dict[str, tuple[int, ...]], profiles: list[Profile], graph: str) -> None:
    """Every profile names exactly the graph's inputs, with their rank, and keeps their static dimensions."""
    for p in profiles:
        missing = sorted(set(inputs) - set(p.shapes))
        extra = sorted(set(p.shapes) - set(inputs))
        if missing or extra:
            raise BundleError(f"{graph}: profile {p.name!r} does not match the graph's inputs (not in the profile: "
                              f"{', '.join(missing) or '-'}; not in the graph: {', '.join(extra) or '-'}); the graph "
                              "does not follow the portable I/O contract (docs/gpu.md)")
        for name, r in p.shapes.items():
            dims = inputs[name]
            if len(dims) != len(r.max):
                raise BundleError(f"{graph}: input {name} has rank {len(dims)}, profile {p.name!r} gives {len(r.max)}")
            for axis, d in enumerate(dims):
                if d > 0 and not r.min[axis] == r.opt[axis] == r.max[axis] == d:
                    raise BundleError(f"{graph}: input {name} has static dimension {axis} = {d} but profile "
                                      f"{p.name!r} asks {r.min[axis]}..{r.max[axis]}")


def plan_entry(plan_bytes_sha256: str, plan_file: str, source: Source, precision: str, facts: Any,
               request: BuildRequest, max_context: int, profiles: list[Profile], model: Any) -> GraphEntry:
    """The manifest entry of a built plan (the plan's file and every fact a load checks)."""
    lm = is_lm_graph(source.graph)
    details = PlanFacts(
        kv_dtype=source.entry.details.get("kv_dtype", model.kv_dtype) if lm else None,
        kv_capacity=source.entry.details.get("kv_capacity", model.max_context) if lm else None,
        tensorrt_version=facts.tensorrt_version, gpu_name=facts.device.name,
        compute_capability=facts.device.compute_capability, precision=precision, source_graph=source.graph,
        source_sha256=source.entry.files[source.entry.path_name], strongly_typed=source.strongly_typed,
        max_batch=request.max_batch, max_context=max_context, profiles=tuple(p.to_json() for p in profiles),
    ).to_details()
    details["built_by"] = f"llasa-rt {__version__}"
    return GraphEntry(files={plan_file: plan_bytes_sha256}, backend="tensorrt", precision=precision, opset=0,
                      details=details)


def _network_inputs(network: Any) -> dict[str, tuple[int, ...]]:
    return {network.get_input(i).name: tuple(int(d) for d in network.get_input(i).shape)
            for i in range(network.num_inputs)}


def build_plan(trt: Any, onnx_path: Path, source: Source, make_profiles: Callable[[dict[str, tuple[int, ...]]],
               list[Profile]], request: BuildRequest, log: Callable[[str], None]) -> tuple[bytes, list[Profile]]:
    """Parses one ONNX graph and builds its serialised plan with the profiles `make_profiles(inputs)` returns."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if source.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external weights next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise BundleError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    inputs = _network_inputs(network)
    profiles = make_profiles(inputs)
    check_profile_inputs(inputs, profiles, onnx_path.name)
    config = builder.create_builder_config()
    if request.workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(request.workspace_gb * (1 << 30)))
    if source.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = request.timing_cache.read_bytes() if request.timing_cache and request.timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    for p in profiles:
        profile = builder.create_optimization_profile()
        for name, r in p.shapes.items():
            profile.set_shape(name, r.min, r.opt, r.max)
        config.add_optimization_profile(profile)
    log(f"building a TensorRT plan from {onnx_path.name} ({'strongly typed' if source.strongly_typed else 'fp16'}, "
        f"profiles {', '.join(p.name for p in profiles)})")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BundleError(f"TensorRT could not build a plan from {onnx_path.name} (see its messages above); try a "
                          "smaller --max-batch / --max-context or a larger --workspace-gb")
    if request.timing_cache:
        write_bytes_atomic(request.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), profiles


def _log(msg: str) -> None:
    print(f"llasa-rt: {msg}", file=sys.stderr, flush=True)


def build_engine(bundle_path: str | os.PathLike[str], request: BuildRequest,
                 log: Callable[[str], None] = _log) -> list[str]:
    """Builds lm.plan (and codec_decoder.plan when the bundle has a codec) into the bundle; returns the plan files.

    Order of checks: arguments and source graphs (so a wrong call says so without TensorRT), then `tensorrt` and
    the GPU, then the builds; files are written only after both plans are built (plan files atomically, then the
    manifest atomically), so a failure leaves the bundle as it was.
    """
    import hashlib

    bundle = Bundle.open(bundle_path, verify="full")
    model, _, _ = bundle.manifest.lm_parts()
    max_context = request.max_context or model.max_context
    check_limits(model, request.max_batch, max_context)
    lm = lm_source(bundle, request.precision)
    codec = codec_source(bundle, request.precision)
    if request.timing_cache and request.timing_cache.is_dir():
        raise InputError(f"--timing-cache {request.timing_cache} is a folder; give a file name")
    check_writable(bundle.root, "write TensorRT plans into the bundle")
    trt = require_tensorrt(bundle)
    facts = running_facts(bundle)

    def lm_shapes(inputs: dict[str, tuple[int, ...]]) -> list[Profile]:
        from llasa_rt.layout import LmIo

        return lm_profiles(model, request.max_batch, max_context, graph_capacity(inputs, LmIo.past(0, "key")))

    def codec_shapes(inputs: dict[str, tuple[int, ...]]) -> list[Profile]:
        (name,) = inputs
        return codec_profiles(name, request.max_batch, max_context)

    built: dict[str, tuple[bytes, GraphEntry]] = {}
    for role, source, shapes in ((LM_GRAPH, lm, lm_shapes), (CODEC_GRAPH, codec, codec_shapes)):
        if source is None:
            continue
        data, profiles = build_plan(trt, bundle.path(source.entry.path_name), source, shapes, request, log)
        digest = hashlib.sha256(data).hexdigest()
        entry = plan_entry(digest, PLAN_FILES[role], source, request.precision, facts, request, max_context, profiles,
                           model)
        built[role] = (data, entry)

    manifest = bundle.manifest
    for role in built:  # the old entries go first: a crash mid-way never leaves a manifest naming a changed file
        manifest.graphs.pop(PLAN_GRAPHS[role], None)
    write_manifest(bundle.root, manifest)
    for role, (data, entry) in built.items():
        write_bytes_atomic(bundle.root / PLAN_FILES[role], data)
        manifest.graphs[PLAN_GRAPHS[role]] = entry
    write_manifest(bundle.root, manifest)
    for role, (data, _) in built.items():
        log(f"{PLAN_FILES[role]}: {len(data) / 2**20:.1f} MiB, TensorRT {facts.tensorrt_version}, "
            f"{facts.device.name} (compute {facts.device.compute_capability})")
    return [PLAN_FILES[role] for role in built]
