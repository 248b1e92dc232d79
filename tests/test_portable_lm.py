"""The portable LM graph (lm.portable.onnx): standard ONNX only, capacity KV inputs, new-only K/V outputs, and the
same logits as transformers through ONNX Runtime CPU, for one row, three rows, and rows of different lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from llasa_rt import _core
from llasa_rt.backends import RuntimeOptions, create_lm
from llasa_rt.backends.portable import PortableLm, PortableLmBackend
from llasa_rt.bundle import LM_PORTABLE_GRAPH, Bundle
from llasa_rt.layout import LmIo

from lm_helpers import HEAD_IDS, LLASA_TOKENS

DECODE_STEPS = 30
MAX_CONTEXT = 256  # small capacity: the KV inputs are read at full capacity every step


@pytest.fixture(scope="module")
def portable_bundle(tiny_checkpoint, tmp_path_factory):
    """(checkpoint name, precision) -> bundle with only lm.portable.onnx (made once per module)."""
    from llasa_rt.export.bundle_export import export_bundle

    made: dict[tuple[str, str], Path] = {}

    def get(name: str, precision: str = "fp32") -> Path:
        if (name, precision) not in made:
            out = tmp_path_factory.mktemp(f"portable-{name}-{precision}") / "bundle"
            made[name, precision] = export_bundle(str(tiny_checkpoint(name)), out, precision=precision,
                                                  target="portable", max_context=MAX_CONTEXT, log=lambda m: None)
        return made[name, precision]

    return get


def _prompt(seed: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([[128000, 128006], rng.integers(0, 128000, size=length - 3), [128260]]).astype(np.int64)


def _next_token(step: int, row: int = 0) -> int:
    """A pseudo-random head row's token (not the argmax), so the 30 steps visit varied tokens."""
    return int(HEAD_IDS[int(np.random.default_rng(1000 * row + step).integers(0, LLASA_TOKENS.head_rows))])


class Reference:
    """transformers' logits (head rows only) for one sequence, fed piece by piece."""

    def __init__(self, model) -> None:
        self.model, self.past = model, None
        self.rows = torch.as_tensor(HEAD_IDS)

    def step(self, ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.model(input_ids=torch.as_tensor(ids[None]), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[0, -1, self.rows].numpy()


# ---- the graph ---------------------------------------------------------------------------------------------------
def test_graph_uses_standard_onnx_only_with_capacity_kv_inputs(portable_bundle):
    bundle = Bundle.open(portable_bundle("h64"))
    path = bundle.path(bundle.graph(LM_PORTABLE_GRAPH).path_name)
    onnx.checker.check_model(str(path), full_check=True)  # the checker knows only standard operators
    model = onnx.load(str(path), load_external_data=False)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert {n.domain for n in model.graph.node} == {""}
    assert "com.microsoft" not in path.read_bytes().decode("latin-1")
    facts = bundle.manifest.model
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    outputs = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    for i in range(facts.num_layers):
        for kind in ("key", "value"):
            assert inputs[LmIo.past(i, kind)] == ["batch_size", facts.num_kv_heads, MAX_CONTEXT, facts.head_dim]
            assert outputs[LmIo.present(i, kind)] == ["batch_size", facts.num_kv_heads, "sequence_length",
                                                      facts.head_dim]
    assert outputs[LmIo.LOGITS] == ["batch_size", LLASA_TOKENS.head_rows]
    # Every weight is a plain MatMul with a 2-D initializer [K, N] (what Q/DQ calibration quantises).
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    matmul_weights = [n.input[1] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert len(matmul_weights) == 4 * facts.num_layers + 1
    assert weights["/lm_head.weight"] == [facts.hidden_size, LLASA_TOKENS.head_rows]
    entry = bundle.graph(LM_PORTABLE_GRAPH)
    assert (entry.backend, entry.precision, entry.opset) == ("onnxruntime", "fp32", 13)
    assert entry.details["flavour"] == "portable" and entry.details["kv_capacity"] == MAX_CONTEXT


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_fp32_logits_match_transformers_over_prefill_and_decode(name, portable_bundle, hf_model):
    lm = PortableLm.from_bundle(portable_bundle(name))
    ref = Reference(hf_model(name))
    ids, worst = _prompt(3, 23), 0.0
    for step in range(DECODE_STEPS + 1):
        ours = lm.step(ids[None])
        assert ours.shape == (1, LLASA_TOKENS.head_rows)
        worst = max(worst, float(np.abs(ours[0] - ref.step(ids)).max()))
        ids = np.array([_next_token(step)], np.int64)
    print(f"portable fp32 {name}: max |logit diff| over prefill + {DECODE_STEPS} steps = {worst:.3g}")
    assert worst <= 1e-4


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_fp16_graph_stays_close_to_transformers(name, portable_bundle, hf_model):
    bundle = Bundle.open(portable_bundle(name, "fp16"))
    assert bundle.manifest.lm_model(LM_PORTABLE_GRAPH).kv_dtype == "float16"
    lm = PortableLm.from_bundle(bundle)
    ref = Reference(hf_model(name))
    ids, worst = _prompt(3, 23), 0.0
    for step in range(DECODE_STEPS + 1):
        worst = max(worst, float(np.abs(lm.step(ids[None])[0] - ref.step(ids)).max()))
        ids = np.array([_next_token(step)], np.int64)
    print(f"portable fp16 {name}: max |logit diff| vs transformers fp32 = {worst:.3g}")
    assert worst <= 0.1  # fp16 weights and activations; logits span about +-6 on these checkpoints


# ---- the backend over the core's KV slots ---------------------------------------------------------------------------
def _backend(bundle_path: Path, slots: int) -> PortableLmBackend:
    runner = create_lm(Bundle.open(bundle_path, verify="fast"), RuntimeOptions(threads=1), LM_PORTABLE_GRAPH)
    backend = runner.new_backend(slots)
    assert isinstance(backend, PortableLmBackend)
    return backend


def _fill(buf: np.ndarray, values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, np.int64).reshape(-1)
    buf[:flat.size] = flat
    return buf[:flat.size].reshape(np.shape(values))


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_three_rows_in_one_forward_match_transformers(name, portable_bundle, hf_model):
    """Generator path: three prompts of one length prefilled as one batch, then 30 decode steps of 3 rows."""
    backend = _backend(portable_bundle(name), slots=4)
    buffers = backend.buffers
    refs = [Reference(hf_model(name)) for _ in range(3)]
    ids = np.stack([_prompt(s, 19) for s in (1, 2, 3)])
    past, worst = 0, 0.0
    for step in range(DECODE_STEPS + 1):
        b, s = ids.shape
        view = _fill(buffers.input_ids, ids)
        _fill(buffers.position_ids, np.broadcast_to(np.arange(past, past + s), (b, s)))
        backend.forward(view, past, buffers.logits[:b])
        ours = buffers.logits[:b].copy()
        for r in range(3):
            worst = max(worst, float(np.abs(ours[r] - refs[r].step(ids[r])).max()))
        past += s
        ids = np.array([[_next_token(step, r)] for r in range(3)], np.int64)
    print(f"portable fp32 {name}, 3 rows: max |logit diff| = {worst:.3g}")
    assert worst <= 1e-4


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_rows_of_different_lengths_match_transformers(name, portable_bundle, hf_model):
    """Scheduler path (forward_rows): prompts of 23, 11 and 17 tokens prefilled one by one into slots 1..3, then
    30 decode steps of the three rows together, each attending to its own cache length."""
    backend = _backend(portable_bundle(name), slots=4)
    buffers = backend.buffers
    prompts = [_prompt(4, 23), _prompt(5, 11), _prompt(6, 17)]
    refs = [Reference(hf_model(name)) for _ in prompts]
    worst = 0.0
    lengths = []
    for r, prompt in enumerate(prompts):
        n = len(prompt)
        view = _fill(buffers.input_ids, prompt[None])
        _fill(buffers.position_ids, np.arange(n)[None])
        _fill(buffers.padded_mask, np.ones((1, n)))
        backend.forward_rows(view, 1 + r, n, buffers.logits[:1])
        worst = max(worst, float(np.abs(buffers.logits[0] - refs[r].step(prompt)).max()))
        lengths.append(n)
    ids = np.array([[_next_token(0, r)] for r in range(3)], np.int64)
    for step in range(1, DECODE_STEPS + 1):
        mask_len = max(lengths) + 1
        view = _fill(buffers.input_ids, ids)
        _fill(buffers.position_ids, np.array(lengths)[:, None])
        _fill(buffers.padded_mask, np.arange(mask_len)[None, :] < np.array(lengths)[:, None] + 1)
        backend.forward_rows(view, 1, mask_len, buffers.logits[:3])
        ours = buffers.logits[:3].copy()
        for r in range(3):
            worst = max(worst, float(np.abs(ours[r] - refs[r].step(ids[r])).max()))
        lengths = [n + 1 for n in lengths]
        ids = np.array([[_next_token(step, r)] for r in range(3)], np.int64)
    print(f"portable fp32 {name}, rows of 23/11/17 + {DECODE_STEPS}: max |logit diff| = {worst:.3g}")
    assert worst <= 1e-4


def test_decode_steps_allocate_no_new_kv_scratch(portable_bundle):
    """present is bound to scratch grown only by a longer step; decode steps reuse it."""
    backend = _backend(portable_bundle("h64"), slots=2)
    buffers = backend.buffers
    prompt = _prompt(7, 12)
    backend.forward(_fill(buffers.input_ids, prompt[None]), 0, buffers.logits[:1])
    first = [k.__array_interface__["data"][0] for k in backend.new_kv.keys]
    for step in range(5):
        view = _fill(buffers.input_ids, np.array([[_next_token(step)], [_next_token(step, 1)]]))
        backend.forward(view, 12 + step, buffers.logits[:2])
    assert [k.__array_interface__["data"][0] for k in backend.new_kv.keys] == first
    assert backend.new_kv.seq_capacity == 12


def test_cache_of_another_capacity_is_refused(portable_bundle):
    bundle = Bundle.open(portable_bundle("h64"), verify="fast")
    runner = create_lm(bundle, RuntimeOptions(threads=1), LM_PORTABLE_GRAPH)
    m = runner.model
    cache = _core.KvCache(_core.KvCacheConfig(num_layers=m.num_layers, num_kv_heads=m.num_kv_heads,
                                              head_dim=m.head_dim, slots=1, max_seq_len=m.max_context // 2))
    from llasa_rt.errors import BundleError

    with pytest.raises(BundleError, match=r"max_seq_len = model\.max_context"):
        PortableLmBackend(runner.session, cache, _core.StepBuffers(cache, rows=LLASA_TOKENS.head_rows), m)
