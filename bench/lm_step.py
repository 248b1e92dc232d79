"""Decode speed and memory of the Llasa-1B LM: transformers fp32 `generate` vs our fp32 and int4 graphs.

Builds a random-weight checkpoint of the real Llasa-1B shape (16 layers, hidden 2048, 32/8 heads,
head_dim 64, vocab 193,800; bf16 as published) under bench/out/ (not committed; reused on later runs),
exports it to fp32 and int4 bundles, then runs each path in its own process (so peak RSS is its own):

- transformers fp32 `generate` (the official Llasa path), greedy;
- our fp32 graph and our int4 graph in a plain ONNX Runtime loop (growing past, batch 1).

Each path: a 60-token prompt, then 100 decode steps, 2 threads. Prints decode tokens/s, prefill time,
peak RSS and ratios against transformers measured in the same run. Usage:

    python bench/lm_step.py [--tokens 100] [--threads 2] [--out bench/out]

Needs the export extra (torch, transformers). About 10 minutes and 9 GB of RAM on a 2-core machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from child import emit, run_child
from llasa_1b import OUT, bundle, checkpoint, transformers_decode
from llasa_1b import vm_hwm_gb as peak_rss_gb

from llasa_rt.layout import LLASA_TOKENS

PROMPT_LEN = 60


def prompt_ids() -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = [[128000], rng.integers(0, 128000, PROMPT_LEN - 2), [LLASA_TOKENS.start_id]]  # BOS, text, START
    return np.concatenate(ids).astype(np.int64)[None]


def child_transformers(ckpt: Path, tokens: int, threads: int) -> dict:
    return transformers_decode(ckpt, prompt_ids()[0], tokens, threads, sample=False)


def child_onnx(bundle: Path, tokens: int, threads: int) -> dict:
    from llasa_rt.calibration.drift import GrowingPastLm

    lm = GrowingPastLm(bundle, threads)
    ids, times = prompt_ids(), []
    for _ in range(tokens + 1):
        t0 = time.perf_counter()
        logits = lm.step(ids)
        times.append(time.perf_counter() - t0)
        ids = LLASA_TOKENS.code_to_token(np.array([[int(np.argmax(logits[0, :LLASA_TOKENS.speech_count]))]]))
    return {"decode_tok_s": tokens / sum(times[1:]), "prefill_s": times[0], "peak_rss_gb": peak_rss_gb()}


def run(kind: str, path: Path, tokens: int, threads: int) -> dict:
    return run_child(__file__, ["--child", kind, "--path", str(path), "--tokens", str(tokens), "--threads",
                                str(threads)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--child", choices=["transformers", "onnx"])
    ap.add_argument("--path")
    a = ap.parse_args()
    if a.child == "transformers":
        emit(child_transformers(Path(a.path), a.tokens, a.threads))
        return
    if a.child == "onnx":
        emit(child_onnx(Path(a.path), a.tokens, a.threads))
        return

    out = Path(a.out)
    ckpt = checkpoint(out)
    bundles = {precision: bundle(precision, out) for precision in ("fp32", "int4")}

    rows = [("transformers fp32 generate", run("transformers", ckpt, a.tokens, a.threads))]
    for precision, b in bundles.items():
        rows.append((f"llasa-rt {precision} graph, ORT loop", run("onnx", b, a.tokens, a.threads)))
    base = rows[0][1]["decode_tok_s"]
    print(f"\nLlasa-1B shape, random weights, {PROMPT_LEN}-token prompt, {a.tokens} decode steps, {a.threads} threads")
    print(f"{'path':34s} {'decode tok/s':>12s} {'vs transformers':>16s} {'prefill s':>10s} {'peak RSS GB':>12s}")
    for name, r in rows:
        print(f"{name:34s} {r['decode_tok_s']:12.2f} {r['decode_tok_s'] / base:15.2f}x {r['prefill_s']:10.2f} "
              f"{r['peak_rss_gb']:12.2f}")


if __name__ == "__main__":
    main()
