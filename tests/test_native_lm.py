"""Native decode steps of the layered int4/int8 LM (`_core.NativeLm`, backends/native.py): the protobuf reader
against the onnx package, every kernel against a float64 NumPy decoder that quantises activations the same way,
the kernels against each other, against ONNX Runtime's segments, the shared prompt, the Engine switch and its bad
values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import llasa_rt
from llasa_rt import _core
from llasa_rt.backends import RuntimeOptions, plain_lm
from llasa_rt.backends.native import _Weights, open_native, read_graph
from llasa_rt.bundle import LM_GRAPH, Bundle
from llasa_rt.errors import InputError
from llasa_rt.export.quantize import Quantized, dequantize

from lm_helpers import HEAD_IDS, LLASA_TOKENS, random_prompt


def _kernel_runs(name: str) -> bool:
    try:
        _core.NativeLmConfig(num_layers=1, hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                             intermediate_size=32, head_rows=8, max_positions=8, kernel=name)
        return True
    except InputError:
        return False


KERNELS = [k for k in ("scalar", "avx2", "avx512vnni") if _kernel_runs(k)]


def _open(tiny_bundle, name: str, precision: str = "int4"):
    bundle = Bundle.open(tiny_bundle(name, precision, "layered", "float32"), verify="fast")
    return bundle, bundle.graph(LM_GRAPH), bundle.manifest.lm_model(LM_GRAPH)


# ---- the float64 reference ------------------------------------------------------------------------------------------
def _dequant(w: _Weights, node_name: str) -> tuple[np.ndarray, int]:
    """(W [N, K] float64, block) of a MatMulNBits node, through the exporter's NumPy reference `dequantize`."""
    node = w.nodes[node_name]
    n, k, bits, block = (node.ints[a] for a in ("N", "K", "bits", "block_size"))
    data = w.array(node.inputs[1])
    q = Quantized(data=data, scales=w.array(node.inputs[2]).reshape(n, data.shape[1]),
                  zero_points=w.array(node.inputs[3]).reshape(n, -1), bits=bits, block_size=block, k=k)
    return dequantize(q).astype(np.float64), block


def _qlinear(x: np.ndarray, wb: tuple[np.ndarray, int], quantise: bool) -> np.ndarray:
    """x [T, K] @ W.T with the activations quantised like the kernels (int8 per row and block, symmetric)."""
    w, block = wb
    if not quantise:
        return x @ w.T
    t, k = x.shape
    pad = -k % block
    xp = np.concatenate([x, np.zeros((t, pad))], axis=1).reshape(t, -1, block)
    amax = np.abs(xp.astype(np.float32)).max(axis=2, keepdims=True).astype(np.float64)
    inv = np.where(amax > 0, np.float32(127) / amax.astype(np.float32), 0).astype(np.float32)
    q = np.rint(xp.astype(np.float32) * inv).astype(np.float64)
    xq = (q * (amax.astype(np.float32) / np.float32(127)).astype(np.float64)).reshape(t, -1)[:, :k]
    return xq @ w.T


class Reference:
    """The decoder in float64 from the segments' weights, whole history each step (rows share nothing)."""

    def __init__(self, bundle, entry, model, quantise: bool = True) -> None:
        w = _Weights(bundle.root, entry.segments)
        self.m, self.quantise = model, quantise
        emb = w.nodes["/model/embed_tokens/GatherBlockQuantized"]
        data, scales, zp = (w.array(emb.inputs[i]) for i in (0, 2, 3))
        vocab, blocks = scales.shape  # GatherBlockQuantized packs each row like a MatMulNBits weight row
        self.embed = dequantize(Quantized(data=data.reshape(vocab, blocks, -1), scales=scales, zero_points=zp,
                                          bits=emb.ints["bits"], block_size=emb.ints["block_size"],
                                          k=model.hidden_size)).astype(np.float64)
        rot = next(n for n in w.nodes.values() if n.op == "RotaryEmbedding")
        self.cos, self.sin = w.array(rot.inputs[2]).astype(np.float64), w.array(rot.inputs[3]).astype(np.float64)
        self.layers = []
        for i in range(model.num_layers):
            p = f"/model/layers.{i}"
            self.layers.append({
                "in": w.norm(f"{p}/input_layernorm").astype(np.float64),
                "post": w.norm(f"{p}/post_attention_layernorm").astype(np.float64),
                **{key: _dequant(w, f"{p}/{name}/MatMulNBits") for key, name in
                   (("qkv", "attn/qkv_proj"), ("o", "attn/o_proj"), ("gu", "mlp/gate_up_proj"),
                    ("down", "mlp/down_proj"))}})
        self.final = w.norm("/model/norm").astype(np.float64)
        self.head = _dequant(w, "/lm_head/MatMulNBits")

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.m.rms_norm_eps) * weight

    def _rotate(self, x: np.ndarray, heads: int, positions: np.ndarray) -> np.ndarray:
        d, half = self.m.head_dim, self.m.head_dim // 2
        x = x.reshape(len(positions), heads, d)
        c, s = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Last-position logits of one row's whole token sequence."""
        m, T = self.m, len(ids)
        pos = np.arange(T)
        x = self.embed[ids]
        hq, hk, d = m.num_attention_heads, m.num_kv_heads, m.head_dim
        for layer in self.layers:
            qkv = _qlinear(self._norm(x, layer["in"]), layer["qkv"], self.quantise)
            q = self._rotate(qkv[:, :hq * d], hq, pos)
            k = self._rotate(qkv[:, hq * d:(hq + hk) * d], hk, pos)
            v = qkv[:, (hq + hk) * d:].reshape(T, hk, d)
            g = hq // hk
            scores = np.einsum("thd,shd->hts", q, np.repeat(k, g, axis=1)) / np.sqrt(d)
            scores += np.triu(np.full((T, T), -np.inf), 1)[None]
            p = np.exp(scores - scores.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            attn = np.einsum("hts,shd->thd", p, np.repeat(v, g, axis=1)).reshape(T, hq * d)
            x = x + _qlinear(attn, layer["o"], self.quantise)
            gu = _qlinear(self._norm(x, layer["post"]), layer["gu"], self.quantise)
            gate, up = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
            x = x + _qlinear(gate / (1 + np.exp(-gate)) * up, layer["down"], self.quantise)
        return _qlinear(self._norm(x[-1:], self.final), self.head, self.quantise)[0]


# ---- tests ----------------------------------------------------------------------------------------------------------
def test_the_protobuf_reader_matches_the_onnx_package(tiny_bundle):
    bundle, entry, _ = _open(tiny_bundle, "h128")
    for name in entry.segments[:2] + entry.segments[-1:]:
        _, nodes = read_graph(bundle.root / name)
        model = onnx.load(str(bundle.root / name))
        assert [n.name for n in model.graph.node] == [n.name for n in nodes]
        w = _Weights(bundle.root, [name])
        for init in model.graph.initializer:
            np.testing.assert_array_equal(w.array(init.name), numpy_helper.to_array(init))
        for node, mine in zip(model.graph.node, nodes, strict=True):
            assert list(node.input) == mine.inputs
            assert {a.name: a.i for a in node.attribute if a.type == onnx.AttributeProto.INT} == mine.ints


def _native_steps(native, model, prompt: np.ndarray, steps: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Prompt (all rows) then one token per row per step, all through NativeLm; logits after each call."""
    cache = _core.KvCache(_core.KvCacheConfig(num_layers=model.num_layers, num_kv_heads=model.num_kv_heads,
                                              head_dim=model.head_dim, slots=batch, max_seq_len=64, dtype="float32"))
    slots = np.arange(batch, dtype=np.int32)
    out, past = [], 0
    for ids in [np.repeat(prompt, batch, axis=0), *steps]:
        b, s = ids.shape
        logits = np.zeros((b, LLASA_TOKENS.head_rows), np.float32)
        native.run(cache, np.ascontiguousarray(ids, np.int64), np.tile(np.arange(past, past + s), (b, 1)),
                   slots, np.full(b, past, np.int32), -1, 0, logits)
        out.append(logits)
        past += s
    return out


@pytest.mark.parametrize("name,precision", [("h64", "int4"), ("h128", "int4"), ("h64", "int8")])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_equals_the_float64_decoder(tiny_bundle, name, precision, kernel):
    """Every kernel this CPU runs = the float64 decoder with the same activation quantisation (h128: blocks padded,
    embedding block 64); and the activation quantisation itself costs little against unquantised activations."""
    bundle, entry, model = _open(tiny_bundle, name, precision)
    native = open_native(bundle.root, entry.segments, model, LLASA_TOKENS.head_rows, 2, kernel)
    assert native is not None and native.kernel == kernel
    prompt = random_prompt(7, 2)
    rng = np.random.default_rng(0)
    steps = [np.asarray(HEAD_IDS)[rng.integers(0, LLASA_TOKENS.head_rows, (3, 1))] for _ in range(4)]
    got = _native_steps(native, model, prompt, steps, 3)
    ref, plain = Reference(bundle, entry, model), Reference(bundle, entry, model, quantise=False)
    history = [np.repeat(prompt, 3, axis=0)]
    worst = worst_plain = 0.0
    for logits, step in zip(got, [None, *steps], strict=True):
        if step is not None:
            history.append(step)
        seq = np.concatenate(history, axis=1)
        for row in range(3):
            want = ref.logits(seq[row])
            scale = np.abs(want).max()
            worst = max(worst, np.abs(logits[row] - want).max() / scale)
            worst_plain = max(worst_plain, np.abs(logits[row] - plain.logits(seq[row])).max() / scale)
    print(f"{name} {precision} {kernel}: max |diff| / max |logit| vs the same quantisation {worst:.2e}, "
          f"vs float activations {worst_plain:.2e}")
    assert worst < 2e-3
    assert worst_plain < 0.1


def test_kernels_agree_and_multiple_row_groups(tiny_bundle):
    """More rows than one kernel call takes (row groups) equal the same rows run alone; every kernel returns the
    same bits."""
    bundle, entry, model = _open(tiny_bundle, "h64")
    prompt = random_prompt(5, 4)
    batch = 11  # more than the 8 rows of one kernel call
    rng = np.random.default_rng(1)
    steps = [np.asarray(HEAD_IDS)[rng.integers(0, LLASA_TOKENS.head_rows, (batch, 1))] for _ in range(2)]
    results = {}
    for kernel in KERNELS:
        native = open_native(bundle.root, entry.segments, model, LLASA_TOKENS.head_rows, 2, kernel)
        results[kernel] = _native_steps(native, model, prompt, steps, batch)
        alone = _native_steps(native, model, prompt, [s[:1] for s in steps], 1)
        for got, one in zip(results[kernel], alone, strict=True):
            np.testing.assert_allclose(got[0], one[0], rtol=0, atol=1e-5 * np.abs(one).max())
    for kernel, res in results.items():  # the same integer sums and float steps: the same bits
        for a, b in zip(res, results["scalar"], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=kernel)


def test_native_steps_track_onnx_runtime_and_share_the_prompt(tiny_bundle):
    """The layered LM on NativeLm (prompt and steps; ONNX Runtime not even loaded) against the same bundle on ONNX
    Runtime's segments: the same top-1 almost everywhere, small KL (both quantise activations, each with its own
    rounding); a fork reading the shared prompt from slot 0 equals the row that holds it."""
    bundle, entry, model = _open(tiny_bundle, "h128")
    native, ort = (plain_lm(bundle.root, entry, model, 2, native_decode=mode) for mode in (KERNELS[-1], "off"))
    assert native.graphs.native is not None and native.graphs.sessions == []
    assert ort.graphs.native is None and len(ort.graphs.sessions) == model.num_layers + 1
    rng = np.random.default_rng(2)
    agree, kls = [], []
    for lm in (native, ort):
        lm.reset(4)
    prompt = np.repeat(random_prompt(20, 6), 4, axis=0)
    for step in range(13):
        ids = prompt if step == 0 else np.asarray(HEAD_IDS)[rng.integers(0, LLASA_TOKENS.head_rows, (4, 1))]
        a, b = (lm.step(ids) for lm in (native, ort))
        pa, pb = (np.exp(x - x.max(1, keepdims=True)) for x in (a, b))
        pa, pb = pa / pa.sum(1, keepdims=True), pb / pb.sum(1, keepdims=True)
        kls.append(float((pb * (np.log(pb + 1e-30) - np.log(pa + 1e-30))).sum(1).mean()))
        agree.append(float((a.argmax(1) == b.argmax(1)).mean()))
    print(f"native vs ORT segments: top-1 {np.mean(agree):.3f}, KL {np.mean(kls):.2e}")
    assert np.mean(agree) >= 0.9 and np.mean(kls) < 0.01

    # Shared prompt: only slot 0 holds the prompt; the row in slot 1 reads positions < 9 from slot 0.
    cache = _core.KvCache(_core.KvCacheConfig(num_layers=model.num_layers, num_kv_heads=model.num_kv_heads,
                                              head_dim=model.head_dim, slots=2, max_seq_len=64, dtype="float16"))
    p = random_prompt(9, 7)
    logits = np.zeros((2, LLASA_TOKENS.head_rows), np.float32)
    run = native.graphs.native.run
    run(cache, p, np.arange(9)[None], np.array([0], np.int32), np.array([0], np.int32), -1, 0, logits[:1])
    ids, pos = np.asarray(HEAD_IDS)[[5, 5]].reshape(2, 1), np.full((2, 1), 9)
    run(cache, ids, pos, np.array([0, 1], np.int32), np.full(2, 9, np.int32), 0, 9, logits)
    assert not cache.key(0)[1, :, :9].any()  # slot 1 never held the prompt
    np.testing.assert_array_equal(logits[0], logits[1])
    run(cache, ids[1:], pos[1:], np.array([1], np.int32), np.full(1, 9, np.int32), -1, 0, logits[1:])
    assert np.abs(logits[0] - logits[1]).max() > 1e-3  # without the shared prompt slot 1 sees zeros: differs


def test_engine_runs_native_steps_batch_independent(tiny_bundle):
    """Engine on an int4 layered bundle with the best kernel this CPU runs ("auto" uses only AVX-512 VNNI): its
    backend has the native decoder; the forks read the prompt from slot 0;
    candidate 0 of 4 equals the single-candidate result (native rows do not depend on each other); "off" runs the
    segments only; bad values are refused in one line."""
    bundle, _, _ = _open(tiny_bundle, "h64")
    engine = llasa_rt.Engine(bundle.root, threads=2, verify="fast", native_decode=KERNELS[-1])
    auto = llasa_rt.Engine(bundle.root, threads=2, verify="fast")
    auto.lm.generator(1)
    assert (auto.lm.backend.native is not None) == ("avx512vnni" in KERNELS)  # native.AUTO_KERNELS
    text = "Native decode steps."
    kw = dict(temperature=0.9, top_p=0.95, max_new_tokens=30, min_new_tokens=30, seed=11)
    one = engine.generate_codes(text, num_candidates=1, **kw)
    four = engine.generate_codes(text, num_candidates=4, **kw)
    assert engine.lm.backend.native is not None
    assert four.candidates[0].codes.tolist() == one.candidates[0].codes.tolist()
    assert len({tuple(c.codes.tolist()) for c in four.candidates}) == 4
    prompt_len = len(four.prompt_ids)
    keys = engine.lm.backend.cache.key(0)
    assert keys[0, :, :prompt_len].any() and not keys[1:4, :, :prompt_len].any()
    off = llasa_rt.Engine(bundle.root, threads=2, verify="fast", native_decode="off")
    assert len(off.generate_codes(text, num_candidates=2, **kw).candidates[0].codes) == 30
    assert off.lm.backend.native is None
    with pytest.raises(InputError, match="native_decode must be one of"):
        llasa_rt.Engine(bundle.root, native_decode="fastest")
    with pytest.raises(InputError, match="native_decode must be one of"):
        RuntimeOptions(native_decode="gpu")


@pytest.mark.parametrize("kernel", [k for k in ("avx2", "avx512vnni") if k not in KERNELS] or
                         [pytest.param("none", marks=pytest.mark.skip(reason="this CPU runs every kernel"))])
def test_a_kernel_this_cpu_lacks_is_refused(tiny_bundle, kernel):
    bundle, _, _ = _open(tiny_bundle, "h64")
    with pytest.raises(InputError, match=f"kernel '{kernel}' is not one this build and CPU can run"):
        llasa_rt.Engine(bundle.root, native_decode=kernel).lm.generator(1)


def test_float_graphs_keep_the_segments(tiny_bundle):
    """fp32 layered graphs have no MatMulNBits: no native decoder, every step on ONNX Runtime."""
    bundle = Bundle.open(tiny_bundle("h64", "fp32", "layered", "float32"), verify="fast")
    entry, model = bundle.graph(LM_GRAPH), bundle.manifest.lm_model(LM_GRAPH)
    assert open_native(bundle.root, entry.segments, model, LLASA_TOKENS.head_rows, 2) is None
