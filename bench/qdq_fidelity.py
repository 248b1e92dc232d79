"""Fidelity of the Q/DQ recipes (llasa_rt.calibration) against the float graph they come from, on ONNX Runtime CPU.

    python bench/qdq_fidelity.py BUNDLE [--graph lm.onnx] [--steps 32] [--variants int8,int8-a0,...]

Calibrates on the first N packaged prompts and compares on the next N (held out). Works on a COPY of the
bundle's graph files in a scratch bundle next to it (BUNDLE.qdq-scratch, removed at the end), quantises it with
each variant (`llasa-rt quantize --overwrite`) and prints one table row per variant: teacher-forced top-1
agreement, mean / max KL (nats), greedy agreement (share of free greedy steps before the first different
token) and the size of the quantised graph. Random-weight checkpoints give activations unlike a trained
model's (no outlier channels, near-flat logits), so the rows order the recipes, they do not predict quality
on the real Llasa weights.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

VARIANTS = {  # name -> (scheme, quantize_bundle keyword arguments)
    "int8": ("int8", {}),  # the defaults: alpha 0.5, Mul-smoothing of o_proj / down_proj, absmax ranges
    "int8-nomul": ("int8", {"smooth_mul": False}),
    "int8-a0": ("int8", {"alpha": 0.0}),
    "int8-a0.8": ("int8", {"alpha": 0.8}),
    "int8-clip": ("int8", {"clip_search": True}),
    "int8-head-float": ("int8", {"head": "float"}),
    "int4": ("int4", {}),  # the defaults: round-to-nearest, head int4
    "int4-awq": ("int4", {"awq": True}),
    "int4-awq-mul": ("int4", {"awq": True, "smooth_mul": True}),
    "int4-head-w8": ("int4", {"head": "int8"}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--graph", default=None, help="float graph to quantise (default: lm)")
    ap.add_argument("--steps", type=int, default=32, help="compare: steps per prompt")
    ap.add_argument("--calibration-steps", type=int, default=32, help="quantize: speech tokens per prompt")
    ap.add_argument("--prompts", type=int, default=8,
                    help="calibrate on the first N packaged prompts, compare on the next N (default 8: all 16)")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from llasa_rt.bundle import Bundle
    from llasa_rt.calibration import quantize_bundle, source_entry
    from llasa_rt.evaluation.drift import default_prompts, measure_drift

    src = Path(args.bundle)
    scratch = src.parent / f"{src.name}.qdq-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        for p in src.iterdir():  # hard links: no copy of a multi-GB graph, and quantize never edits these files
            if p.is_file():
                (scratch / p.name).hardlink_to(p)
        (scratch / "manifest.json").unlink()
        shutil.copy(src / "manifest.json", scratch / "manifest.json")
        graph_file = source_entry(Bundle.open(scratch, verify="fast"), args.graph)[1].path_name
        texts = default_prompts()
        calib_texts, texts = texts[: args.prompts], texts[args.prompts: 2 * args.prompts]
        print("| variant | top-1 | KL mean | KL max | greedy | graph MB | quantize s |", flush=True)
        print("|---|---|---|---|---|---|---|", flush=True)
        for name in args.variants.split(","):
            scheme, kw = VARIANTS[name]
            if scheme == "int4":
                kw = {**kw, "block_size": args.block_size}
            t0 = time.time()
            entry = quantize_bundle(scratch, scheme, graph=args.graph, texts=calib_texts, steps=args.calibration_steps,
                                    threads=args.threads, overwrite=True, **kw)
            seconds = time.time() - t0
            qfile = Bundle.open(scratch, verify="fast").graph(entry).path_name
            r = measure_drift(scratch / graph_file, scratch / qfile, texts, args.steps, args.threads)
            mb = sum((scratch / f).stat().st_size for f in (qfile, qfile + ".data")) / 1e6
            print(f"| {name} | {100 * r.top1_agreement:.1f}% | {r.mean_kl:.4f} | {r.max_kl:.4f} | "
                  f"{100 * r.greedy_agreement:.1f}% | {mb:.0f} | {seconds:.0f} |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
