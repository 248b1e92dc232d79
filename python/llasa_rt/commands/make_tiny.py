"""`llasa-rt make-tiny`: write a random-weight checkpoint in Llasa's exact format (to smoke-test an install)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-tiny", help="write a random-weight Llasa checkpoint (real format) for smoke tests",
        description="Write a Hugging Face checkpoint folder with Llasa's exact layout (config, safetensors, "
                    "tokenizer with the speech tokens at their real ids) but random weights and small dimensions. "
                    "Export it with `llasa-rt export --model FOLDER ...` to check an install without downloads. "
                    "It speaks noise: the weights are random.")
    p.add_argument("out", help="folder to write")
    p.add_argument("--preset", default="tiny-h64", choices=["tiny-h64", "tiny-h128", "1b", "3b"],
                   help="dimensions: tiny-h64 / tiny-h128 (small, Llasa-1B / -3B head layout) or the real 1b / 3b "
                        "shapes (several GB) (default tiny-h64)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="stored weight type")
    p.add_argument("--seed", type=int, default=0, help="weight RNG seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llasa_rt.export.tiny import make_tiny_llasa

    print(make_tiny_llasa(args.out, preset=args.preset, seed=args.seed, dtype=args.dtype))
    return 0
