"""The GPU path (docs/gpu.md): what can be proven without a GPU, and the GPU runs where one exists.

Here (CPU): the TensorRT optimisation profiles and their check against a graph's inputs, the plan facts in the
manifest and the refusals of a plan built elsewhere or damaged, choosing the source graph of each precision,
`llasa-rt build-engine` refusing cleanly without TensorRT, the backend factory's refusals, the CMake skip message,
the CUDA runtime's "no device" error, and the device-KV design itself: the core's slot copies redirected to a
KvSlotCopier, on a toy model and on the tiny bundle's ORT graph with the KV slots in separate (host) memory.
On a GPU machine: onnxruntime-gpu's CUDA provider with device KV, TensorRT build + load (skipped here, with why).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import runtime_sampler_reference as ref

from llasa_rt import _core as core
from llasa_rt.backends import RuntimeOptions, create_codec, create_lm
from llasa_rt.backends.cuda_runtime import CudaRuntime, DeviceFacts
from llasa_rt.backends.ort import OrtLmBackend
from llasa_rt.backends.ort_cuda import DeviceLmBackend, HostMemory
from llasa_rt.backends.trt_plan import (
    PLAN_FLAVOUR,
    PlanFacts,
    RunningFacts,
    check_plan_facts,
    read_plan,
    require_tensorrt_backend,
)
from llasa_rt.bundle import Bundle, GraphEntry, ModelFacts, sha256_file
from llasa_rt.bundle.writer import write_manifest
from llasa_rt.engines.build import check_profile_inputs, codec_source, graph_capacity, lm_source
from llasa_rt.engines.profiles import codec_profiles, lm_profiles
from llasa_rt.errors import BundleError, InputError
from llasa_rt.layout import LmIo

from runtime_toy_model import ROWS, SPEECH_BASE, ToyModel, reference_generate

ROOT = Path(__file__).resolve().parents[1]
# Llasa-1B's shape.
LLASA_1B = ModelFacts(num_layers=16, hidden_size=2048, num_attention_heads=32, num_kv_heads=8, head_dim=64,
                      intermediate_size=8192, vocab_size=193800, max_context=2048, kv_dtype="float16",
                      rms_norm_eps=1e-5, tied_embeddings=True)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _cuda_devices() -> int:
    try:
        return CudaRuntime().device_count()
    except BundleError:
        return 0


HAS_TENSORRT = _has("tensorrt")
GPU = _cuda_devices() > 0


# ---- profiles ---------------------------------------------------------------------------------------------------

def test_lm_profiles_cover_prefill_and_decode_of_the_1b_shape():
    prefill, decode = lm_profiles(LLASA_1B, max_batch=8, max_context=2048)
    assert (prefill.name, decode.name) == ("prefill", "decode")
    kv = [LmIo.past(i, k) for i in range(16) for k in ("key", "value")]
    assert set(prefill.shapes) == set(decode.shapes) == {LmIo.INPUT_IDS, LmIo.POSITION_IDS, LmIo.ATTENTION_MASK, *kv}
    assert prefill.shapes[LmIo.INPUT_IDS].to_json() == [[1, 1], [1, 256], [1, 2048]]
    assert prefill.shapes[LmIo.ATTENTION_MASK].to_json() == [[1, 1], [1, 256], [1, 2048]]
    assert prefill.shapes[LmIo.past(15, "value")].to_json() == [[1, 8, 2048, 64]] * 3
    assert decode.shapes[LmIo.POSITION_IDS].to_json() == [[1, 1], [8, 1], [8, 1]]
    # One longer than the context: a CUDA-graph decode step reads whole buckets up to the full capacity.
    assert decode.shapes[LmIo.ATTENTION_MASK].max == (8, 2049)
    assert decode.shapes[LmIo.past(0, "key")].to_json() == [[1, 8, 2048, 64], [8, 8, 2048, 64], [8, 8, 2048, 64]]


def test_lm_profiles_with_a_smaller_context_keep_the_graphs_capacity():
    prefill, decode = lm_profiles(LLASA_1B, max_batch=2, max_context=1024)
    assert prefill.shapes[LmIo.INPUT_IDS].max == (1, 1024)
    assert decode.shapes[LmIo.ATTENTION_MASK].max == (2, 1025)
    assert decode.shapes[LmIo.past(3, "key")].max == (2, 8, 2048, 64)  # the slots keep the graph's static length


@pytest.mark.parametrize(("batch", "context", "capacity", "message"), [
    (0, 2048, None, "--max-batch must be between 1 and 256, not 0"),
    (300, 2048, None, "--max-batch must be between 1 and 256"),
    (8, 4096, None, "--max-context must be between 16 and the bundle's context (2048), not 4096"),
    (8, 2048, 1024, "the graph's KV capacity (1024 positions) is smaller than --max-context 2048"),
])
def test_lm_profiles_refuse_what_the_bundle_cannot_serve(batch, context, capacity, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lm_profiles(LLASA_1B, batch, context, capacity)


def test_codec_profile_spans_batch_and_code_length():
    (p,) = codec_profiles("codes", max_batch=8, max_frames=2048)
    assert p.shapes["codes"].to_json() == [[1, 1, 1], [1, 1, 250], [8, 1, 2048]]


def _portable_inputs(model: ModelFacts, capacity: int) -> dict[str, tuple[int, ...]]:
    """The inputs of a portable graph as TensorRT's parser reports them (-1 = dynamic)."""
    inputs = {LmIo.INPUT_IDS: (-1, -1), LmIo.POSITION_IDS: (-1, -1), LmIo.ATTENTION_MASK: (-1, -1)}
    for i in range(model.num_layers):
        for kind in ("key", "value"):
            inputs[LmIo.past(i, kind)] = (-1, model.num_kv_heads, capacity, model.head_dim)
    return inputs


def test_profiles_are_checked_against_the_graphs_inputs():
    inputs = _portable_inputs(LLASA_1B, 2048)
    assert graph_capacity(inputs, LmIo.past(0, "key")) == 2048
    profiles = lm_profiles(LLASA_1B, 8, 2048, graph_capacity(inputs, LmIo.past(0, "key")))
    check_profile_inputs(inputs, profiles, "lm.portable.onnx")
    missing = dict(inputs)
    del missing[LmIo.past(15, "value")]
    with pytest.raises(BundleError, match=r"not in the graph: past_key_values\.15\.value"):
        check_profile_inputs(missing, profiles, "lm.portable.onnx")
    other = _portable_inputs(LLASA_1B, 1024)
    with pytest.raises(BundleError, match=r"static dimension 2 = 1024 but profile 'prefill' asks 2048..2048"):
        check_profile_inputs(other, profiles, "lm.portable.onnx")
    with pytest.raises(BundleError, match=r"no 4-D input 'past_key_values.0.key'"):
        graph_capacity({LmIo.INPUT_IDS: (-1, -1)}, LmIo.past(0, "key"))


# ---- plan facts and checks --------------------------------------------------------------------------------------

def _facts(**changes) -> PlanFacts:
    facts = PlanFacts(tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", precision="int8",
                      source_graph="lm.portable.int8", source_sha256="a" * 64, strongly_typed=True, max_batch=8,
                      max_context=2048, profiles=tuple(p.to_json() for p in lm_profiles(LLASA_1B, 8, 2048)),
                      kv_dtype="float16", kv_capacity=2048)
    return replace(facts, **changes)


ORIN = RunningFacts("10.3.0", DeviceFacts("Orin", "8.7"))


def test_plan_facts_round_trip_through_the_manifest_details():
    details = json.loads(json.dumps(_facts().to_details()))
    assert details["flavour"] == PLAN_FLAVOUR
    assert PlanFacts.from_details(details, "graphs.lm.plan") == _facts()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("compute_capability", "87", "compute_capability is missing or malformed"),
    ("tensorrt_version", "", "tensorrt_version is missing or malformed"),
    ("source_sha256", "xyz", "source_sha256 is missing or malformed"),
    ("max_batch", 0, "max_batch must be a positive integer"),
    ("precision", "fp32", "precision must be fp16, int8 or int4"),
    ("strongly_typed", "yes", "strongly_typed must be true or false"),
    ("profiles", [], "profiles must be a non-empty list"),
    ("profiles", [{"name": "decode", "shapes": {"input_ids": [[2, 1], [1, 1], [8, 1]]}}], "bad shape range"),
    ("flavour", "portable", "flavour must be 'tensorrt-plan'"),
    ("kv_dtype", "bfloat16", "kv_dtype must be float32 or float16"),
])
def test_plan_facts_refuse_a_bad_field_naming_it(key, value, message):
    details = _facts().to_details()
    details[key] = value
    with pytest.raises(BundleError, match=f"graphs.lm.plan.details.{key} .*{message.split(' ', 1)[1][:20]}"):
        PlanFacts.from_details(details, "graphs.lm.plan")


def test_a_plan_loads_only_with_its_tensorrt_version_and_gpu():
    check_plan_facts(_facts(), ORIN, "lm.plan", "llasa-3b")
    cases = [
        (RunningFacts("10.7.0", DeviceFacts("Orin", "8.7")), "another TensorRT version"),
        (RunningFacts("10.3.0", DeviceFacts("NVIDIA A10G", "8.6")), "another GPU architecture"),
        (RunningFacts("10.3.0", DeviceFacts("NVIDIA RTX A2000", "8.7")), "another GPU model"),
    ]
    for running, why in cases:
        with pytest.raises(BundleError) as e:
            check_plan_facts(_facts(), running, "lm.plan", "llasa-3b")
        msg = str(e.value)
        assert "\n" not in msg and why in msg
        assert "built with TensorRT 10.3.0 on Orin (compute 8.7)" in msg
        assert f"this machine has TensorRT {running.tensorrt_version} on {running.device.name}" in msg
        assert msg.endswith("rebuild it here with `llasa-rt build-engine llasa-3b --precision int8`")


@pytest.fixture()
def plan_bundle(tiny_bundle, tmp_path) -> Path:
    """A copy of the tiny fp32 bundle with a plan entry (bytes that are not a real plan: loading stops before)."""
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("h64"), root)
    (root / "lm.plan").write_bytes(b"serialised engine bytes")
    bundle = Bundle.open(root, verify="fast")
    bundle.manifest.graphs["lm.plan"] = GraphEntry(files={"lm.plan": sha256_file(root / "lm.plan")},
                                                   backend="tensorrt", precision="int8", opset=0,
                                                   details=_facts().to_details())
    write_manifest(root, bundle.manifest)
    return root


def test_read_plan_checks_facts_and_sha256(plan_bundle):
    bundle = Bundle.open(plan_bundle)  # the manifest with plan facts is a valid manifest
    data, facts = read_plan(bundle, "lm.plan", ORIN)
    assert data == b"serialised engine bytes" and facts == _facts()
    with pytest.raises(BundleError, match="another TensorRT version"):
        read_plan(bundle, "lm.plan", RunningFacts("10.7.0", ORIN.device))
    (plan_bundle / "lm.plan").write_bytes(b"serialised engine bytez")
    with pytest.raises(BundleError, match=r"lm.plan does not match its sha256 .* rebuild it with `llasa-rt "
                                          "build-engine .* --precision int8`"):
        read_plan(bundle, "lm.plan", ORIN)
    with pytest.raises(BundleError, match="graph 'lm' is for onnxruntime, not a TensorRT plan"):
        read_plan(bundle, "lm", ORIN)


# ---- source graphs and build-engine without TensorRT --------------------------------------------------------------

PORTABLE_CONTEXT = 256


@pytest.fixture(scope="module")
def both_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """A tiny bundle with both LM graphs: lm.onnx (ORT) and lm.portable.onnx (the portable graph TensorRT builds)."""
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("both") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, target="both", max_context=PORTABLE_CONTEXT,
                         log=lambda m: None)


def _add_qdq_entry(root: Path, scheme: str) -> None:
    """An entry as `llasa-rt quantize --graph lm.portable` adds it (the file itself is not needed to choose it)."""
    bundle = Bundle.open(root, verify="fast")
    entry = copy.deepcopy(bundle.manifest.graphs["lm.portable"])
    entry.precision = scheme
    bundle.manifest.graphs[f"lm.portable.{scheme}"] = entry
    write_manifest(root, bundle.manifest)


def test_profiles_fit_the_exported_portable_graph(both_bundle):
    import onnx

    bundle = Bundle.open(both_bundle, verify="fast")
    graph = onnx.load(str(bundle.path(bundle.graph("lm.portable").path_name)), load_external_data=False)
    inputs = {i.name: tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
              for i in graph.graph.input}
    model = bundle.manifest.lm_model("lm.portable")
    capacity = graph_capacity(inputs, LmIo.past(0, "key"))
    assert capacity == PORTABLE_CONTEXT == bundle.graph("lm.portable").details["kv_capacity"]
    profiles = lm_profiles(model, max_batch=4, max_context=PORTABLE_CONTEXT, capacity=capacity)
    check_profile_inputs(inputs, profiles, "lm.portable.onnx")  # same names, ranks and static dimensions


def test_each_precision_builds_from_its_portable_graph(tiny_bundle, both_bundle, tmp_path):
    with pytest.raises(BundleError, match=r"no portable fp16 LM graph .* `llasa-rt export --target portable"):
        lm_source(Bundle.open(tiny_bundle("h64")), "fp16")
    root = tmp_path / "b"
    shutil.copytree(both_bundle, root)
    src = lm_source(Bundle.open(root), "fp16")
    assert (src.graph, src.fp16_flag, src.strongly_typed) == ("lm.portable", True, False)
    with pytest.raises(BundleError, match=r"no portable int8 LM graph .*portable graphs: lm.portable \(fp32\).*"
                                          r"`llasa-rt quantize BUNDLE --scheme int8 --graph lm.portable`"):
        lm_source(Bundle.open(root), "int8")
    _add_qdq_entry(root, "int8")
    src = lm_source(Bundle.open(root), "int8")
    assert (src.graph, src.fp16_flag, src.strongly_typed) == ("lm.portable.int8", False, True)
    assert codec_source(Bundle.open(root), "fp16") is None  # no codec in this bundle: no codec plan


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llasa_rt.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here: the refusal without it cannot be shown")
def test_build_engine_without_tensorrt_refuses_in_one_line_and_writes_nothing(both_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(both_bundle, root)
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    r = _cli("build-engine", str(root), "--precision", "fp16", "--timing-cache", str(tmp_path / "cache.bin"))
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert "build-engine: error: a TensorRT plan needs TensorRT, which this Python cannot import" in r.stderr
    assert "(`pip install tensorrt` on x86_64; on Jetson JetPack's python3-libnvinfer)" in r.stderr
    after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert after == before and not (tmp_path / "cache.bin").exists()


def test_build_engine_checks_its_arguments_before_tensorrt(both_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(both_bundle, root)
    r = _cli("build-engine", str(root), "--precision", "int4")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no portable int4 LM graph" in r.stderr, r.stderr
    r = _cli("build-engine", str(root), "--precision", "fp16", "--max-batch", "0")
    assert r.returncode == 2 and "--max-batch must be between 1 and 256, not 0" in r.stderr, r.stderr
    r = _cli("build-engine", str(root), "--precision", "fp16", "--max-context", "99999")
    assert r.returncode == 2 and "--max-context must be between 16 and the bundle's context (256)" in r.stderr, r.stderr
    r = _cli("build-engine", str(root), "--precision", "fp16", "--workspace-gb", "-1")
    assert r.returncode == 2 and "--workspace-gb must be between 0 and 1024" in r.stderr, r.stderr


# ---- the backend factory ---------------------------------------------------------------------------------------

def _mark_lm(root: Path, backend: str) -> Bundle:
    bundle = Bundle.open(root, verify="fast")
    bundle.manifest.graphs["lm"].backend = backend
    write_manifest(root, bundle.manifest)
    return Bundle.open(root, verify="fast")


@pytest.mark.skipif(HAS_TENSORRT or core.build_info().tensorrt, reason="TensorRT is available here")
def test_factory_refuses_a_plan_without_tensorrt_or_its_compiled_backend(plan_bundle):
    with pytest.raises(BundleError, match=r"a TensorRT plan needs TensorRT, .* or use .*/lm.onnx instead"):
        create_lm(Bundle.open(plan_bundle), graph="lm.plan")
    assert core.build_info().tensorrt is False  # CMake found no TensorRT: the backend is not compiled in
    with pytest.raises(BundleError, match=r"built without its TensorRT backend .*WITH_TENSORRT=ON pip install"):
        require_tensorrt_backend()


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_codec_plan_without_tensorrt_names_the_install(plan_bundle):
    bundle = Bundle.open(plan_bundle, verify="fast")
    bundle.manifest.graphs["codec_decoder.plan"] = copy.deepcopy(bundle.manifest.graphs["lm.plan"])
    write_manifest(plan_bundle, bundle.manifest)
    bundle = Bundle.open(plan_bundle, verify="fast")
    with pytest.raises(BundleError, match=r"a TensorRT plan needs TensorRT.*`pip install tensorrt` on x86_64"):
        create_codec(bundle, graph="codec_decoder.plan")
    with pytest.raises(BundleError, match="graph 'lm' is not a codec plan"):
        create_codec(bundle, graph="lm")


def test_factory_refuses_onnxruntime_cuda_without_fp16_kv_or_onnxruntime_gpu(tiny_bundle, tmp_path):
    import onnxruntime as ort

    root = tmp_path / "b32"
    shutil.copytree(tiny_bundle("h64"), root)
    with pytest.raises(BundleError, match="float32 KV cache, but ONNX Runtime's CUDA GroupQueryAttention runs only"):
        create_lm(_mark_lm(root, "onnxruntime-cuda"))
    root16 = tmp_path / "b16"
    shutil.copytree(tiny_bundle("h64", "fp16"), root16)
    bundle = _mark_lm(root16, "onnxruntime-cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(BundleError, match=r"onnxruntime-gpu is not installed .* `pip uninstall onnxruntime && "
                                          "pip install onnxruntime-gpu`"):
        create_lm(bundle)


# ---- CUDA runtime and CMake ------------------------------------------------------------------------------------

def test_cuda_runtime_reports_no_device_in_one_line(monkeypatch):
    for home in ("/usr/local/cuda-13.0", "/usr/local/cuda"):
        if Path(home).is_dir():
            monkeypatch.setenv("CUDA_HOME", home)
            break
    try:
        cuda = CudaRuntime()
    except BundleError as e:
        assert "the CUDA runtime (libcudart) cannot be loaded" in str(e)
        pytest.skip("no libcudart on this machine")
    if GPU:
        pytest.skip("this machine has a CUDA device")
    assert cuda.device_count() == 0
    with pytest.raises(BundleError, match=r"no CUDA device is usable here .*use the bundle's ONNX graph on the CPU"):
        cuda.device_facts(0)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_without_tensorrt_says_it_skips_the_backend(tmp_path):
    r = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DLLASA_RT_BUILD_PYTHON=OFF",
                        "-DLLASA_RT_WITH_TENSORRT=ON", "-DTENSORRT_ROOT=/nonexistent"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    if "building the TensorRT backend" in r.stdout:
        pytest.skip("TensorRT and CUDA are installed here")
    assert "LLASA_RT_WITH_TENSORRT is ON but" in r.stdout
    assert "skipping the TensorRT backend, building the CPU core only (BuildInfo.tensorrt is False)" in r.stdout


# ---- the device-KV design on the CPU ----------------------------------------------------------------------------

class SeparateKvToyBackend(core.Backend):
    """The toy model with its KV slots in its own arrays (as a GPU backend's are in device memory): the core's host
    cache is never touched, forks and compaction reach the arrays through a KvSlotCopier."""

    class Copier(core.KvSlotCopier):
        def __init__(self, arrays: list[np.ndarray]) -> None:
            super().__init__()
            self.arrays, self.calls = arrays, []

        def copy_slot_range(self, src: int, dst: int, begin: int, end: int) -> None:
            self.calls.append((src, dst, begin, end))
            for a in self.arrays:
                a[dst, :, begin:end] = a[src, :, begin:end]

    def __init__(self, model: ToyModel, cache: core.KvCache, buffers: core.StepBuffers) -> None:
        super().__init__(cache, buffers)
        self.model = model
        shape = cache.key(0).shape
        self.keys = [np.zeros(shape, np.float32) for _ in range(model.layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(model.layers)]
        self.copier = self.Copier(self.keys + self.values)
        cache.set_slot_copier(self.copier)

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        logits[...] = self.model.step(self.keys, self.values, input_ids, past_len)


def test_slot_copies_redirected_to_a_copier_keep_every_candidate_exact():
    model, smax = ToyModel(seed=0), 96
    prompt = [128000, 128006, 882, 271, 128260] + [SPEECH_BASE + r for r in (17, 4242, 999)]
    options = ref.Options(temperature=0.9, top_k=3000, top_p=0.95, repetition_penalty=1.1, min_new_tokens=2,
                          max_new_tokens=20, seed=11)
    cache = core.KvCache(core.KvCacheConfig(num_layers=model.layers, num_kv_heads=model.kv_heads,
                                            head_dim=model.head_dim, slots=6, max_seq_len=smax))
    backend = SeparateKvToyBackend(model, cache, core.StepBuffers(cache, rows=ROWS))
    assert cache.has_slot_copier
    generator = core.Generator(backend, core.GeneratorConfig(
        speech_token_base=SPEECH_BASE, num_speech_tokens=ROWS - 1, end_token_id=128261))

    def prune(controller: core.GenerationController) -> None:
        if controller.step == 5:
            controller.prune(1)  # compaction: the last live candidate moves into slot 1
            controller.prune(3)

    result = generator.generate(prompt, options=core.SamplingOptions(**options.__dict__), num_candidates=6,
                                callback=prune, callback_every=5)
    by_uid = {c.uid: c for c in result.candidates}
    assert sorted(by_uid) == [0, 2, 4, 5]
    for uid, c in by_uid.items():
        tokens, _, _ = reference_generate(model, prompt, options, uid=uid, max_seq_len=smax)
        assert c.tokens.tolist() == tokens, uid
    forks = [call for call in backend.copier.calls if call[0] == 0]
    assert len(forks) == 5 and all(call[2] == 0 and call[3] == len(prompt) for call in forks)
    assert any(call[0] != 0 for call in backend.copier.calls)  # the compaction copies went there too
    for layer in range(model.layers):  # the host cache was never written
        assert not cache.key(layer).any() and not cache.value(layer).any()
    cache.set_slot_copier(None)
    assert not cache.has_slot_copier


def test_device_backend_over_host_memory_matches_the_cpu_backend(tiny_bundle):
    """DeviceLmBackend (separate KV buffers, IOBinding to them, redirected slot copies, logits copied out) with the
    CPU provider gives the same candidates as OrtLmBackend on the core's own cache: what the CUDA run changes is
    only where that memory is."""
    bundle = Bundle.open(tiny_bundle("h64"), verify="fast")
    runner = create_lm(bundle, RuntimeOptions(threads=1))
    options = core.SamplingOptions(temperature=0.8, top_p=0.95, max_new_tokens=12, seed=3)
    prompt = [128000, 128006, 882, 128007, 271, 128260]

    def run(make) -> tuple[list[list[int]], object]:
        runner._make_backend = make
        runner.slots = 0
        generator = runner.generator(4)
        result = generator.generate(prompt, options=options, num_candidates=4)
        return [c.tokens.tolist() for c in sorted(result.candidates, key=lambda c: c.uid)], runner.backend

    expected, _ = run(OrtLmBackend)
    got, backend = run(lambda session, cache, buffers, m: DeviceLmBackend(session, cache, buffers, m, HostMemory()))
    assert got == expected
    assert backend.copier.copies == 3  # the prompt forked to the three other candidates, on the "device"
    assert not backend.cache.key(0).any()  # the core's host cache stayed unused
    assert any(np.asarray(v.numpy()).any() for v in backend.kv)


# ---- on a GPU machine -------------------------------------------------------------------------------------------

def _cuda_provider() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(not GPU or not _cuda_provider(),
                    reason="needs onnxruntime-gpu (CUDAExecutionProvider) and a CUDA device; this machine has none")
def test_ort_cuda_backend_matches_the_cpu_backend(tiny_bundle, tmp_path):
    root = tmp_path / "b16"
    shutil.copytree(tiny_bundle("h64", "fp16"), root)
    prompt = [128000, 128006, 882, 128007, 271, 128260]
    options = core.SamplingOptions(temperature=0.0, max_new_tokens=12, seed=3)
    cpu = create_lm(Bundle.open(root, verify="fast")).generator(4).generate(prompt, options=options, num_candidates=4)
    gpu_runner = create_lm(_mark_lm(root, "onnxruntime-cuda"))
    gpu = gpu_runner.generator(4).generate(prompt, options=options, num_candidates=4)
    agree = np.mean([a.tokens.tolist() == b.tokens.tolist() for a, b in zip(cpu.candidates, gpu.candidates,
                                                                           strict=True)])
    assert agree >= 0.75 and gpu_runner.backend.copier.copies == 3


@pytest.mark.skipif(not (HAS_TENSORRT and GPU), reason="needs tensorrt and a CUDA device; this machine has neither")
def test_build_engine_records_the_plan_facts(both_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(both_bundle, root)
    r = _cli("build-engine", str(root), "--precision", "fp16", "--max-batch", "2")
    assert r.returncode == 0, r.stderr
    entry = Bundle.open(root).graph("lm.plan")
    facts = PlanFacts.from_details(entry.details, "graphs.lm.plan")
    import tensorrt

    assert facts.tensorrt_version == tensorrt.__version__
    assert facts.max_batch == 2 and facts.source_graph == "lm.portable"
    runner = create_lm(Bundle.open(root), graph="lm.plan")
    result = runner.generator(2).generate([128000, 128006, 882, 128007, 271, 128260], options=core.SamplingOptions(
        temperature=0.0, max_new_tokens=8, seed=1), num_candidates=2)
    reference = create_lm(Bundle.open(root), graph="lm.portable").generator(2).generate(
        [128000, 128006, 882, 128007, 271, 128260], options=core.SamplingOptions(temperature=0.0, max_new_tokens=8,
                                                                                seed=1), num_candidates=2)
    assert result.candidates[0].tokens.tolist() == reference.candidates[0].tokens.tolist()


def test_gpu_runtime_modules_load_no_torch():
    """The device backends and plan checks are runtime code: no torch, transformers or onnx."""
    code = ("import sys, llasa_rt.backends.ort_cuda, llasa_rt.backends.trt_plan, llasa_rt.backends.cuda_runtime, "
            "llasa_rt.commands.build_engine\nbad = [m for m in ('torch', 'transformers', 'onnx') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
