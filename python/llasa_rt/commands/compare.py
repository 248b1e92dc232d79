"""`llasa-rt compare`: how far one bundle's LM drifts from another's (e.g. int4 vs fp32 of one checkpoint)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="measure how far a bundle's LM drifts from a reference bundle's (e.g. int4 vs fp32)",
        description="Feed both LMs the same tokens (a prompt set, then the reference's greedy speech tokens) and "
                    "report top-1 agreement, KL divergence and the largest logit difference. Run it on bundles "
                    "exported from the same real checkpoint to judge a quantised precision.")
    p.add_argument("reference", help="reference bundle (e.g. exported with --precision fp32)")
    p.add_argument("candidate", help="bundle to compare (e.g. exported with --precision int4)")
    p.add_argument("--steps", type=int, default=32, help="decode steps per prompt (default 32)")
    p.add_argument("--prompts", help="text file with one prompt per line (default: the packaged set of 16)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per session")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llasa_rt.calibration.drift import measure_drift
    from llasa_rt.errors import InputError

    if args.steps < 1:
        raise InputError(f"--steps must be >= 1, not {args.steps}")
    texts = None
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise InputError(f"--prompts file '{path}' does not exist")
        texts = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        if not texts:
            raise InputError(f"--prompts file '{path}' has no non-empty line")
    try:
        report = measure_drift(args.reference, args.candidate, texts, args.steps, args.threads)
    except ValueError as e:
        raise InputError(str(e)) from e
    print(report)
    return 0
