"""The attention of one Llasa-1B layer (32 query heads, 8 KV heads, head_dim 64): ONNX Runtime's
com.microsoft GroupQueryAttention (what lm.onnx runs today) against llasa-rt's attention kernel (_core.Attention).

Decode: one step of 8 candidates forked from a 600-token prompt with 300 generated tokens each (900 cached
positions per row), float32 and float16 KV:
- ORT GQA over per-candidate copies of the prompt: a one-node graph whose past and present KV are bound to the
  same slot buffers of a KvCache, as OrtLmBackend binds them (8 slots x 900 positions are read);
- the kernel without sharing (the same per-candidate copies);
- the kernel with the shared prefix (the prompt read once from slot 8 for all 8 rows, each row's 300 own positions
  from its slot).
Prefill: a 500-token causal prompt (batch 1) through both.

Every path runs in this one process, interleaved, best of --repeat; ratios are the figures to quote (the machine
may be shared). Inputs are random; rotary is left out of both (the kernel takes rotated q/k). Usage:

    python bench/attention.py [--threads 2] [--repeat 30]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from llasa_rt import _core as core

HEADS, KV_HEADS, DIM = 32, 8, 64
CANDIDATES, PROMPT, GENERATED, PREFILL = 8, 600, 300, 500
MAX_SEQ = 1024


def cpu_features() -> str:
    """The model name and the SIMD flags that matter here, from /proc/cpuinfo (Linux)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    return f"{model}; " + " ".join(f for f in wanted if f in flags)


def gqa_session(dtype: str, threads: int) -> ort.InferenceSession:
    """One GroupQueryAttention node: q/k/v [batch, seq, heads*dim], past/present [batch, kv_heads, max, dim]."""
    t = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    node = helper.make_node(
        "GroupQueryAttention", ["q", "k", "v", "past_key", "past_value", "seqlens_k", "total_sequence_length"],
        ["out", "present_key", "present_value"], domain="com.microsoft", num_heads=HEADS, kv_num_heads=KV_HEADS,
        scale=float(DIM**-0.5))
    graph = helper.make_graph(
        [node], "gqa",
        [helper.make_tensor_value_info("q", t, ["batch", "seq", HEADS * DIM]),
         helper.make_tensor_value_info("k", t, ["batch", "seq", KV_HEADS * DIM]),
         helper.make_tensor_value_info("v", t, ["batch", "seq", KV_HEADS * DIM]),
         helper.make_tensor_value_info("past_key", t, ["batch", KV_HEADS, "past", DIM]),
         helper.make_tensor_value_info("past_value", t, ["batch", KV_HEADS, "past", DIM]),
         helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
         helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [])],
        [helper.make_tensor_value_info("out", t, ["batch", "seq", HEADS * DIM]),
         helper.make_tensor_value_info("present_key", t, ["batch", KV_HEADS, "total", DIM]),
         helper.make_tensor_value_info("present_value", t, ["batch", KV_HEADS, "total", DIM])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class OrtPath:
    """GQA with past and present bound to the same KvCache slot buffers (rows = slots [0, batch))."""

    def __init__(self, session: ort.InferenceSession, cache: core.KvCache, dtype: str, q, k, v, total: int):
        batch, seq, _ = q.shape
        self.session, self.binding = session, session.io_binding()
        self.cache = cache  # Bound by address below: keep it alive.
        np_type = np.float16 if dtype == "float16" else np.float32
        self.inputs = [np.ascontiguousarray(x.astype(np_type)) for x in (q, k, v)]
        self.out = np.empty((batch, seq, HEADS * DIM), np_type)
        self.seqlens = np.full(batch, total - 1, np.int32)
        self.total = np.array(total, np.int32)
        b = self.binding
        for name, array in zip(("q", "k", "v"), self.inputs, strict=True):
            b.bind_input(name, "cpu", 0, np_type, list(array.shape), array.ctypes.data)
        shape = [batch, KV_HEADS, MAX_SEQ, DIM]
        for kind, buffer in (("key", cache.key(0)), ("value", cache.value(0))):
            b.bind_input(f"past_{kind}", "cpu", 0, np_type, shape, buffer.ctypes.data)
            b.bind_output(f"present_{kind}", "cpu", 0, np_type, shape, buffer.ctypes.data)
        b.bind_input("seqlens_k", "cpu", 0, np.int32, [batch], self.seqlens.ctypes.data)
        b.bind_input("total_sequence_length", "cpu", 0, np.int32, [], self.total.ctypes.data)
        b.bind_output("out", "cpu", 0, np_type, list(self.out.shape), self.out.ctypes.data)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)


def make_cache(dtype: str, seed: int) -> core.KvCache:
    cache = core.KvCache(core.KvCacheConfig(num_layers=1, num_kv_heads=KV_HEADS, head_dim=DIM, slots=CANDIDATES + 1,
                                            max_seq_len=MAX_SEQ, dtype=dtype))
    rng = np.random.default_rng(seed)
    for buffer in (cache.key(0), cache.value(0)):
        buffer[...] = rng.standard_normal(buffer.shape)
    return cache


def best_ms(paths: dict, repeat: int) -> dict:
    """Best time of each path, the paths interleaved round by round (so load changes hit all of them)."""
    for run in paths.values():
        run()
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeat):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - start) * 1e3)
    return best


def bench_dtype(dtype: str, threads: int, repeat: int, rng: np.random.Generator) -> None:
    """Prints the decode and prefill rows of one KV dtype."""
    total = PROMPT + GENERATED
    q, k, v = (rng.standard_normal((CANDIDATES, 1, width * DIM)).astype(np.float32)
               for width in (HEADS, KV_HEADS, KV_HEADS))
    slots = np.arange(CANDIDATES, dtype=np.int32)
    past = np.full(CANDIDATES, total - 1, np.int32)  # The step's token lands at position total - 1.
    session = gqa_session(dtype, threads)
    prefix_slot = CANDIDATES  # The prompt also lives, once, in the last slot.
    caches = [make_cache(dtype, 1) for _ in range(3)]
    for cache in caches:  # Every candidate's copy of the prompt equals the shared one: all paths compute the same.
        for buffer in (cache.key(0), cache.value(0)):
            buffer[:CANDIDATES, :, :PROMPT] = buffer[prefix_slot, :, :PROMPT]
    config = core.AttentionConfig(num_heads=HEADS, num_kv_heads=KV_HEADS, head_dim=DIM, scale=DIM**-0.5,
                                  threads=threads)
    plain, shared = core.Attention(caches[1], config), core.Attention(caches[2], config)
    out_plain, out_shared = np.empty_like(q), np.empty_like(q)
    ort_decode = OrtPath(session, caches[0], dtype, q, k, v, total)
    decode = {
        "ORT GQA, per-candidate copies": ort_decode,
        "kernel, per-candidate copies": lambda: plain.run(0, q, k, v, slots, past, 0, 0, out_plain),
        "kernel, shared prefix": lambda: shared.run(0, q, k, v, slots, past, prefix_slot, PROMPT, out_shared),
    }
    times = best_ms(decode, repeat)
    ort_out = ort_decode.out.astype(np.float32)
    err = max(np.abs(ort_out - out_plain).max(), np.abs(ort_out - out_shared).max())
    print(f"\n{dtype} KV, decode step of one layer: {CANDIDATES} candidates x {total} positions "
          f"(prompt {PROMPT} + {GENERATED} own); kernel '{plain.kernel}'; max |diff| vs ORT {err:.2g}")
    base = times["ORT GQA, per-candidate copies"]
    for name, ms in times.items():
        print(f"  {name:32s} {ms:8.3f} ms   {base / ms:5.2f}x ORT")

    pq, pk, pv = (rng.standard_normal((1, PREFILL, width * DIM)).astype(np.float32)
                  for width in (HEADS, KV_HEADS, KV_HEADS))
    kernel = core.Attention(make_cache(dtype, 2), config)
    out_prefill = np.empty_like(pq)
    ort_prefill = OrtPath(session, make_cache(dtype, 2), dtype, pq, pk, pv, PREFILL)
    zero = np.zeros(1, np.int32)
    prefill = {"ORT GQA": ort_prefill, "kernel": lambda: kernel.run(0, pq, pk, pv, zero, zero, 0, 0, out_prefill)}
    times = best_ms(prefill, max(3, repeat // 5))
    err = np.abs(ort_prefill.out.astype(np.float32) - out_prefill).max()
    print(f"{dtype} KV, causal prefill of {PREFILL} tokens, one layer (x16 for Llasa-1B); max |diff| {err:.2g}")
    for name, ms in times.items():
        print(f"  {name:32s} {ms:8.3f} ms   {times['ORT GQA'] / ms:5.2f}x ORT   16 layers: {16 * ms:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads of ONNX Runtime and of the kernel")
    parser.add_argument("--repeat", type=int, default=30, help="timed rounds (best of)")
    args = parser.parse_args()
    print(f"CPU: {cpu_features()}; threads {args.threads}; onnxruntime {ort.__version__}")
    print("Timings are best-of-N in one process, paths interleaved; on a shared machine compare the ratios.")
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float16"):
        bench_dtype(dtype, args.threads, args.repeat, rng)


if __name__ == "__main__":
    main()
