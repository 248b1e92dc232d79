"""TensorRT plans in a bundle: what a plan was built for (the manifest's facts), and the checks before loading one.

A plan (`lm.plan`, `codec_decoder.plan`) runs only with the TensorRT version and on the GPU model it was built with.
`llasa-rt build-engine` records both, with the optimisation profiles and the ONNX graph it was built from, in the
plan's graph entry (`GraphEntry.details`, additive fields):

    "flavour": "tensorrt-plan", "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
    "source_graph": "lm.portable", "source_sha256": "...", "strongly_typed": false, "kv_dtype": "float16",
    "kv_capacity": 2048,
    "max_batch": 8, "max_context": 2048, "profiles": [{"name": "prefill", "shapes": {...}}, ...]

Loading refuses, with the command that rebuilds the plan, a plan whose facts differ from the running machine's
(`check_plan_facts`, pure) or whose bytes do not match their sha256 (`read_plan`). The facts and checks are tested
here; loading a real plan has never run (no GPU on the development machines).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..bundle import Bundle
from ..errors import BundleError
from .cuda_runtime import DeviceFacts

PLAN_FLAVOUR = "tensorrt-plan"
# Graph entries of the plans, next to the ONNX graphs they are built from ("lm", "codec_decoder", ...).
PLAN_GRAPHS = {"lm": "lm.plan", "codec_decoder": "codec_decoder.plan"}
PLAN_FILES = {"lm": "lm.plan", "codec_decoder": "codec_decoder.plan"}
_CC = re.compile(r"\d+\.\d+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def require_tensorrt_backend() -> None:
    """Refuses, in one line, a core built without its TensorRT backend (BuildInfo.tensorrt False)."""
    from .. import _core

    if not _core.build_info().tensorrt:
        raise BundleError("this llasa-rt was built without its TensorRT backend (llasa_rt._core.build_info().tensorrt "
                          "is False); on a machine with TensorRT and CUDA reinstall it from its source folder with "
                          "`LLASA_RT_CMAKE_ARGS=-DLLASA_RT_WITH_TENSORRT=ON pip install .`, or run the bundle's ONNX "
                          "graph instead")


@dataclass(frozen=True)
class RunningFacts:
    """The machine a plan would run on."""

    tensorrt_version: str  # tensorrt.__version__
    device: DeviceFacts  # the GPU


def running_facts(bundle: Bundle | None = None, device: int = 0) -> RunningFacts:
    """TensorRT version and GPU of this machine (needs tensorrt and a CUDA device; `bundle` names its ONNX graphs
    in the refusal when tensorrt is missing)."""
    from . import require_tensorrt
    from .cuda_runtime import CudaRuntime

    trt = require_tensorrt(bundle)
    return RunningFacts(tensorrt_version=str(trt.__version__), device=CudaRuntime().device_facts(device))


@dataclass(frozen=True)
class PlanFacts:
    """What a plan was built for and from (the plan entry's details)."""

    tensorrt_version: str  # TensorRT that built it (plans load only in the same version)
    gpu_name: str  # GPU model it was built on
    compute_capability: str  # "major.minor" of that GPU
    precision: str  # "fp16", "int8" or "int4"
    source_graph: str  # manifest graph entry of the ONNX graph it was built from
    source_sha256: str  # sha256 of that graph's file
    strongly_typed: bool  # built as a strongly typed network (Q/DQ graphs)
    max_batch: int  # most rows of a decode step (decode profile)
    max_context: int  # most positions (prefill profile, KV capacity)
    profiles: tuple[dict[str, Any], ...]  # profiles in plan order: {"name", "shapes": {tensor: [min, opt, max]}}
    kv_dtype: str | None = None  # LM plans: element type of the KV inputs (the source graph's), float32 / float16
    kv_capacity: int | None = None  # LM plans: positions of the KV inputs (static: the model's max_context)

    def to_details(self) -> dict[str, Any]:
        """The graph entry's details."""
        d = asdict(self)
        d["profiles"] = [dict(p) for p in self.profiles]
        for key in ("kv_dtype", "kv_capacity"):
            if d[key] is None:
                del d[key]
        return {"flavour": PLAN_FLAVOUR, **d}

    @classmethod
    def from_details(cls, details: dict[str, Any], where: str) -> PlanFacts:
        """Reads and checks the details of plan entry `where`; one BundleError naming the first bad field."""

        def fail(key: str, need: str) -> BundleError:
            return BundleError(f"manifest.json: {where}.details.{key} {need}; rebuild the plan with "
                               "`llasa-rt build-engine`")

        if details.get("flavour") != PLAN_FLAVOUR:
            raise fail("flavour", f"must be {PLAN_FLAVOUR!r} (got {details.get('flavour')!r})")

        def text(key: str, pattern: re.Pattern[str] | None = None) -> str:
            v = details.get(key)
            if not isinstance(v, str) or not v or (pattern and not pattern.fullmatch(v)):
                raise fail(key, "is missing or malformed")
            return v

        def count(key: str) -> int:
            v = details.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise fail(key, "must be a positive integer")
            return v

        profiles = details.get("profiles")
        if not isinstance(profiles, list) or not profiles or not all(
                isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("shapes"), dict)
                for p in profiles):
            raise fail("profiles", "must be a non-empty list of {name, shapes}")
        for p in profiles:
            for tensor, dims in p["shapes"].items():
                if not _valid_range(dims):
                    raise fail("profiles", f"has a bad shape range for {tensor!r} in profile {p['name']!r}: {dims}")
        precision = text("precision")
        if precision not in ("fp16", "int8", "int4"):
            raise fail("precision", f"must be fp16, int8 or int4 (got {precision!r})")
        kv_dtype = details.get("kv_dtype")
        if kv_dtype not in (None, "float32", "float16"):
            raise fail("kv_dtype", f"must be float32 or float16 (got {kv_dtype!r})")
        strongly_typed = details.get("strongly_typed")
        if not isinstance(strongly_typed, bool):
            raise fail("strongly_typed", "must be true or false")
        return cls(tensorrt_version=text("tensorrt_version"), gpu_name=text("gpu_name"),
                   compute_capability=text("compute_capability", _CC), precision=precision,
                   source_graph=text("source_graph"), source_sha256=text("source_sha256", _SHA256),
                   kv_dtype=kv_dtype, kv_capacity=count("kv_capacity") if "kv_capacity" in details else None,
                   strongly_typed=strongly_typed, max_batch=count("max_batch"), max_context=count("max_context"),
                   profiles=tuple(profiles))


def _valid_range(dims: Any) -> bool:
    """[min, opt, max], each a list of the same rank of positive ints with min <= opt <= max per dimension."""
    if not isinstance(dims, list) or len(dims) != 3 or not all(isinstance(s, list) for s in dims):
        return False
    lo, opt, hi = dims
    if not lo or not len(lo) == len(opt) == len(hi):
        return False
    values = [v for s in dims for v in s]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return False
    return all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True))


def rebuild_command(bundle_root: Any, precision: str) -> str:
    """The command that rebuilds a bundle's plans on this machine."""
    return f"llasa-rt build-engine {bundle_root} --precision {precision}"


def check_plan_facts(facts: PlanFacts, running: RunningFacts, plan: str, bundle_root: Any) -> None:
    """Refuses a plan built for another TensorRT version, compute capability or GPU model (one line, the fix)."""
    built = f"TensorRT {facts.tensorrt_version} on {facts.gpu_name} (compute {facts.compute_capability})"
    here = (f"TensorRT {running.tensorrt_version} on {running.device.name} "
            f"(compute {running.device.compute_capability})")
    if facts.tensorrt_version != running.tensorrt_version:
        why = "another TensorRT version"
    elif facts.compute_capability != running.device.compute_capability:
        why = "another GPU architecture"
    elif facts.gpu_name != running.device.name:
        why = "another GPU model"
    else:
        return
    raise BundleError(f"{plan} of bundle '{bundle_root}' was built with {built}, this machine has {here} ({why}): a "
                      f"TensorRT plan runs only where it was built; rebuild it here with "
                      f"`{rebuild_command(bundle_root, facts.precision)}`")


def read_plan(bundle: Bundle, graph: str, running: RunningFacts) -> tuple[bytes, PlanFacts]:
    """The bytes of plan entry `graph`, after the facts check and its sha256 (always checked: a plan is
    deserialised as it is, and a damaged one can crash the process)."""
    entry = bundle.graph(graph)
    if entry.backend != "tensorrt":
        raise BundleError(f"bundle '{bundle.root}': graph '{graph}' is for {entry.backend}, not a TensorRT plan")
    facts = PlanFacts.from_details(entry.details, f"graphs.{graph}")
    check_plan_facts(facts, running, entry.path_name, bundle.root)
    data = bundle.path(entry.path_name).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.files[entry.path_name]:
        raise BundleError(f"bundle '{bundle.root}': {entry.path_name} does not match its sha256 in manifest.json "
                          f"(corrupt, modified or copied in from another build); rebuild it with "
                          f"`{rebuild_command(bundle.root, facts.precision)}`")
    return data, facts
