"""`llasa-rt compare`: how far one bundle's LM drifts from another's (e.g. int4 vs fp32 of one checkpoint)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="measure how far a bundle's LM drifts from a reference bundle's (e.g. int4 vs fp32)",
        description="Feed both LMs the same tokens (a prompt set, then the reference's greedy speech tokens) and "
                    "report top-1 agreement, KL divergence and the largest logit difference. Run it on bundles "
                    "exported from the same real checkpoint to judge a quantised precision.")
    p.add_argument("reference", help="reference bundle (e.g. exported with --precision fp32), or an LM graph file "
                                     "in one (BUNDLE/lm.onnx, BUNDLE/lm.portable.onnx)")
    p.add_argument("candidate", help="bundle (or LM graph file in one) to compare (e.g. exported with --precision "
                                     "int4)")
    p.add_argument("--steps", type=int, default=32, help="decode steps per prompt (default 32)")
    p.add_argument("--prompts", help="text file with one prompt per line (default: the packaged set of 16)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per session")
    p.add_argument("--no-greedy", action="store_true", help="skip the free-running greedy comparison")
    p.set_defaults(func=run)


def read_prompts(name: str | None) -> list[str] | None:
    """The non-empty lines of a --prompts file (None when no file is given)."""
    from pathlib import Path

    from llasa_rt.commands.speak import read_utf8
    from llasa_rt.errors import InputError

    if not name:
        return None
    path = Path(name)
    if not path.is_file():
        raise InputError(f"--prompts file '{path}' does not exist")
    texts = [t.strip() for t in read_utf8(path.read_bytes(), f"--prompts file '{path}'").splitlines() if t.strip()]
    if not texts:
        raise InputError(f"--prompts file '{path}' has no non-empty line")
    return texts


def run(args: argparse.Namespace) -> int:
    import sys

    from llasa_rt.options import as_int

    steps = as_int(args.steps, "--steps", 1, 100_000)
    threads = None if args.threads is None else as_int(args.threads, "--threads", 1, 256)
    texts = read_prompts(args.prompts)
    from llasa_rt.evaluation.drift import measure_drift

    def progress(msg: str) -> None:
        print(f"llasa-rt compare: {msg}", file=sys.stderr, flush=True)

    report = measure_drift(args.reference, args.candidate, texts, steps, threads, log=progress,
                           greedy=not args.no_greedy)
    print(report)
    return 0
