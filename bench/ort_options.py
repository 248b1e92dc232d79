"""ONNX Runtime options on the fused int4 LM graph (Llasa-1B shape, random weights): what each export and session
option does to decode (1 and 8 candidates) and to a 500-token prefill, and how close the prefill is to what the
machine's matrix kernels can do at all.

Graph variants (bench/out, exported once from bench/llasa_1b.py's checkpoint; an accuracy-level variant is the
default graph with the MatMulNBits attribute rewritten, weights hard-linked):
  default    int4, block 128, accuracy_level 4 (int8 activations), 8-bit head   (LmExportOptions' defaults)
  acc0       the same weights, accuracy_level 0 (fp32 activations)
  block32    int4, block 32
  head4      int4, 4-bit head
  int8       int8 weights (MatMulNBits bits=8), block 128
Session variants on the default graph: 1 intra-op thread; intra-op spinning off
(session.intra_op.allow_spinning=0); graph optimisation level BASIC / EXTENDED instead of ALL.

Each variant runs in its own process (Engine, the C++ generator): decode tok/s after the 60-token prompt at 1 and
8 candidates (aggregate), prefill tok/s of a 500-token prompt. Then the prefill's achieved GOP/s
(2 x matmul weights x tokens / time) against GEMM microbenchmarks of the same shapes: MatMulNBits int4 (acc 4 and
0), MatMulNBits int8, MatMulInteger (u8 x s8) and numpy fp32 sgemm, M = 512 tokens.

    python bench/ort_options.py [--threads 2] [--tokens 30] [--only default,acc0,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from child import emit, run_child
from llasa_1b import OUT, bundle, prefill_rates, random_prompt

PROMPT_LEN = 60
LONG = 500
GRAPHS = {"default": {}, "block32": {"block_size": 32}, "head4": {"head_bits": 4}, "int8": {"precision": "int8"}}
SESSIONS = {"threads1": {"threads": 1}, "no-spin": {"config": {"session.intra_op.allow_spinning": "0"}},
            "opt-basic": {"level": "ORT_ENABLE_BASIC"}, "opt-extended": {"level": "ORT_ENABLE_EXTENDED"}}


def graph_bundle(name: str) -> Path:
    """The bundle of graph variant `name` (exported on first use; acc0 derived from the default one)."""
    from llasa_rt.export.bundle_export import export_bundle

    if name == "default":
        return bundle("int4")
    if name == "acc0":
        return acc0_bundle(bundle("int4"))
    b = OUT / f"llasa-1b-random-{name}"
    if not (b / "manifest.json").is_file():
        t0 = time.perf_counter()
        kw = {"precision": "int4", **GRAPHS[name]}
        export_bundle(str(OUT / "llasa-1b-random"), b, overwrite=True, verify=False, log=lambda m: None, **kw)
        print(f"exported {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return b


def acc0_bundle(src: Path) -> Path:
    """A copy of `src` whose MatMulNBits nodes compute with accuracy_level 0 (weights file hard-linked)."""
    import onnx

    from llasa_rt.bundle.reader import sha256_file

    b = OUT / f"{src.name}-acc0"
    if (b / "manifest.json").is_file():
        return b
    shutil.rmtree(b, ignore_errors=True)
    b.mkdir()
    model = onnx.load(str(src / "lm.onnx"), load_external_data=False)
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "MatMulNBits" and attr.name == "accuracy_level":
                attr.i = 0
    onnx.save(model, str(b / "lm.onnx"))
    os.link(src / "lm.onnx.data", b / "lm.onnx.data")
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("lm.onnx") and f.name != "manifest.json":
            os.link(f, b / f.name)
    m = json.loads((src / "manifest.json").read_text())
    m["graphs"]["lm"]["details"]["accuracy_level"] = 0
    m["graphs"]["lm"]["files"]["lm.onnx"] = sha256_file(b / "lm.onnx")
    (b / "manifest.json").write_text(json.dumps(m, indent=2))
    return b


def child_variant(b: str, threads: int, tokens: int, session: dict) -> dict:
    """Decode tok/s at 1 and 8 candidates and the 500-token prefill of bundle `b` with `session` options."""
    import onnxruntime as ort

    import llasa_rt
    from llasa_rt.backends import ort as ort_backend

    plain = ort_backend.session_options

    def options(n: int | None = None, spinning: bool = True) -> ort.SessionOptions:
        so = plain(n, spinning)
        for k, v in session.get("config", {}).items():
            so.add_session_config_entry(k, v)
        if "level" in session:
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, session["level"])
        return so

    ort_backend.session_options = options
    engine = llasa_rt.Engine(b, threads=session.get("threads", threads), verify="fast")
    out = {}
    prompt = random_prompt(PROMPT_LEN)
    for n in (1, 8):
        generator = engine.lm.generator(n)
        opts, _ = engine.sampling_options(
            llasa_rt.GenerationOptions(max_new_tokens=tokens, min_new_tokens=tokens, seed=1), engine.max_context)
        generator.generate(prompt, options=opts, num_candidates=n)  # warm-up
        t = generator.generate(prompt, options=opts, num_candidates=n).timings
        out[n] = n * len(t.forward_seconds) / (sum(t.forward_seconds) + sum(t.core_seconds))
    out["prefill"] = prefill_rates(engine, (LONG,))[LONG]
    return out


def child_profile(b: str, threads: int) -> dict:
    """Where a 500-token prefill of bundle `b` spends its time: ONNX Runtime's profiler, summed per operator type
    (second run; the first warms up)."""
    import onnxruntime as ort

    from llasa_rt.backends import ort as ort_backend
    from llasa_rt.backends.ort import GrowingPastLm

    plain = ort_backend.session_options

    def options(n: int | None = None, spinning: bool = True) -> ort.SessionOptions:
        so = plain(n, spinning)
        so.enable_profiling = True
        so.profile_file_prefix = str(OUT / "ort-prefill-profile")
        return so

    ort_backend.session_options = options
    lm = GrowingPastLm.from_bundle(b, threads)
    prompt = random_prompt(LONG)[None]
    lm.step(prompt)
    lm.reset()
    t0 = time.perf_counter()
    lm.step(prompt)
    wall = time.perf_counter() - t0
    events = json.loads(Path(lm.session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last = runs[-1]
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last["ts"]:
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1e6
    return {"wall_s": wall, "run_s": last["dur"] / 1e6, "per_op_s": per_op}


def matmul_weights(b: Path) -> int:
    """Weights of the matrix products a prefill runs for every token (layers; the head runs on the last token)."""
    m = json.loads((b / "manifest.json").read_text())["model"]
    h, kv, layers = m["hidden_size"], m["num_kv_heads"] * m["head_dim"], m["num_layers"]
    ffn = json.loads((OUT / "llasa-1b-random" / "config.json").read_text())["intermediate_size"]
    return layers * (2 * h * h + 2 * h * kv + 3 * h * ffn)


def child_gemm(threads: int) -> dict:
    """GOP/s of single big products of the FFN shape (M=512 tokens, K=2048, N=8192) in ONNX Runtime and numpy."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from llasa_rt.export.quantize import quantize_blockwise

    m_, k, n = 512, 2048, 8192
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m_, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3

    def timed(run) -> float:
        """Mean rate over ~3 s of back-to-back runs (like a prefill's steady stream of products; a best-of-few
        would catch idle moments of a loaded machine that a long prefill never sees)."""
        run()
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 3.0:
            run()
            count += 1
        return 2 * m_ * k * n * count / (time.perf_counter() - t0) / 1e9

    def nbits(bits: int, acc: int) -> float:
        q = quantize_blockwise(w, bits, 128)
        inits = [helper.make_tensor("B", TensorProto.UINT8, q.data.shape, q.data.tobytes(), raw=True),
                 helper.make_tensor("S", TensorProto.FLOAT, [q.scales.size], q.scales.reshape(-1)),
                 helper.make_tensor("Z", TensorProto.UINT8, [q.zero_points.size], q.zero_points.reshape(-1).tobytes(),
                                    raw=True)]
        node = helper.make_node("MatMulNBits", ["X", "B", "S", "Z"], ["Y"], domain="com.microsoft", K=k, N=n,
                                bits=bits, block_size=128, accuracy_level=acc)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [m_, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m_, n])], inits)
        opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
        model = helper.make_model(g, opset_imports=opsets)
        s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return timed(lambda: s.run(None, {"X": x}))

    def integer() -> float:
        a = rng.integers(0, 255, (m_, k), dtype=np.uint8)
        wb = rng.integers(-127, 127, (k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["A", "W"], ["Y"])
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.UINT8, [m_, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [m_, n])],
                              [helper.make_tensor("W", TensorProto.INT8, wb.shape, wb.tobytes(), raw=True)])
        s = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString(),
                                 so, providers=["CPUExecutionProvider"])
        return timed(lambda: s.run(None, {"A": a}))

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    wt = np.ascontiguousarray(w.T)
    return {"MatMulNBits int4, accuracy_level 4": nbits(4, 4), "MatMulNBits int4, accuracy_level 0": nbits(4, 0),
            "MatMulNBits int8, accuracy_level 4": nbits(8, 4), "MatMulInteger u8 x s8": integer(),
            "numpy fp32 sgemm": timed(lambda: x @ wt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=30, help="decode steps per measurement")
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    ap.add_argument("--child")
    ap.add_argument("--session", default="{}")
    a = ap.parse_args()
    if a.child == "gemm":
        emit(child_gemm(a.threads))
        return
    if a.child == "profile":
        emit(child_profile(str(graph_bundle("default")), a.threads))
        return
    if a.child:
        emit(child_variant(a.child, a.threads, a.tokens, json.loads(a.session)))
        return
    names = ["default", "acc0", "block32", "head4", "int8", *SESSIONS]
    names = [n for n in names if not a.only or n in a.only.split(",")]
    res = {}
    for name in names:
        b = graph_bundle("default" if name in SESSIONS else name)
        args = ["--child", str(b), "--threads", str(a.threads), "--tokens", str(a.tokens),
                "--session", json.dumps(SESSIONS.get(name, {}))]
        res[name] = run_child(__file__, args)
        print(f"{name}: {res[name]}", flush=True)
    base = res.get("default")
    print(f"\nLlasa-1B shape, random weights, {a.threads} threads; decode after a {PROMPT_LEN}-token prompt, "
          f"{a.tokens} steps; prefill of {LONG} tokens")
    print("| variant | 1 cand tok/s | 8 cand tok/s | prefill tok/s | vs default: 1 / 8 / prefill |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        rel = (f"{r[1] / base[1]:.2f} / {r[8] / base[8]:.2f} / {r['prefill'] / base['prefill']:.2f}" if base else "")
        print(f"| {name} | {r[1]:.2f} | {r[8]:.2f} | {r['prefill']:.1f} | {rel} |")
    prof = run_child(__file__, ["--child", "profile", "--threads", str(a.threads)])
    ops = sorted(prof["per_op_s"].items(), key=lambda kv: -kv[1])
    print(f"\ndefault graph, {LONG}-token prefill in ONNX Runtime's profiler ({prof['run_s']:.2f} s run): " +
          ", ".join(f"{op} {t / prof['run_s']:.0%}" for op, t in ops[:6]))
    nbits_s = prof["per_op_s"].get("MatMulNBits", 0.0)
    gemm = run_child(__file__, ["--child", "gemm", "--threads", str(a.threads)])
    weights = matmul_weights(graph_bundle("default"))
    print(f"\nprefill GOP/s = 2 x {weights / 1e6:.0f} M matmul weights x tokens / time; GEMM M=512 K=2048 N=8192:")
    for name, r in res.items():
        print(f"  prefill {name}: {2 * weights * r['prefill'] / 1e9:.1f} GOP/s")
    if nbits_s:
        print(f"  MatMulNBits inside that prefill: {2 * weights * LONG / nbits_s / 1e9:.1f} GOP/s; the rest of the "
              f"graph is {1 - nbits_s / prof['run_s']:.0%} of its time (all of it free: "
              f"{prof['run_s'] / nbits_s:.2f}x)")
    for name, v in gemm.items():
        print(f"  GEMM {name}: {v:.1f} GOP/s")
    if base:
        achieved = 2 * weights * base["prefill"] / 1e9
        kernel = gemm["MatMulNBits int4, accuracy_level 4"]
        best = max(gemm.values())
        print(f"default prefill reaches {achieved / kernel:.0%} of its own kernel's big-GEMM rate; 1.5x would need "
              f"{1.5 * achieved:.1f} GOP/s; the fastest product measured here ({max(gemm, key=gemm.get)}) gives "
              f"{best:.1f} GOP/s = {best / achieved:.2f}x the prefill's rate")


if __name__ == "__main__":
    main()
