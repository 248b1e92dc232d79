"""`llasa-rt make-tiny`: random-weight checkpoints in Llasa's (and X-Codec2's) exact formats, for smoke tests."""

from __future__ import annotations

import argparse
import sys
import time

SIZES = {"tiny-h64": "~60 MB", "tiny-h128": "~70 MB", "1b": "~5.5 GB", "3b": "~13 GB"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-tiny", help="write a random-weight Llasa checkpoint (real format) for smoke tests",
        description="Write a Hugging Face checkpoint folder with Llasa's exact layout (config, safetensors, "
                    "tokenizer with the speech tokens at their real ids) but random weights and small dimensions, "
                    "and with --codec a random X-Codec2 checkpoint too. Export them with `llasa-rt export --model "
                    "OUT --codec CODEC --out BUNDLE` to check an install without downloads. They speak noise: the "
                    "weights are random (and never end an utterance, so pass --max-new-tokens to speak).",
        epilog="offline smoke test: llasa-rt make-tiny tiny-llasa --codec tiny-xcodec2 && llasa-rt export --model "
               "tiny-llasa --codec tiny-xcodec2 --out tiny-bundle && llasa-rt speak -b tiny-bundle \"Hello.\" "
               "--max-new-tokens 50 -o hello.wav")
    p.add_argument("out", help="folder to write (must not exist, or be empty)")
    p.add_argument("--preset", default="tiny-h64", choices=list(SIZES),
                   help="dimensions: tiny-h64 / tiny-h128 (small, Llasa-1B / -3B head layout) or the real 1b / 3b "
                        "shapes (several GB) (default tiny-h64)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="stored weight type")
    p.add_argument("--seed", type=int, default=0, help="weight RNG seed")
    p.add_argument("--codec", metavar="CODEC_OUT", help="also write a tiny random X-Codec2 checkpoint to this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llasa_rt.bundle.writer import check_destination
    from llasa_rt.errors import InputError

    if not 0 <= args.seed < 2**32:
        raise InputError(f"--seed must be in [0, 2^32-1], not {args.seed}")
    for folder in [args.out] + ([args.codec] if args.codec else []):
        check_destination(Path(folder).absolute(), overwrite=False, bundle=False)  # before the slow imports
    if args.codec and Path(args.codec).absolute() == Path(args.out).absolute():
        raise InputError("--codec must name another folder than OUT")
    t0 = time.perf_counter()
    print(f"llasa-rt make-tiny: writing a random {args.preset} Llasa checkpoint ({SIZES[args.preset]}) to "
          f"{args.out}", file=sys.stderr, flush=True)
    from llasa_rt.export.tiny import make_tiny_llasa

    print(make_tiny_llasa(args.out, preset=args.preset, seed=args.seed, dtype=args.dtype))
    if args.codec:
        print(f"llasa-rt make-tiny: writing a random tiny X-Codec2 checkpoint to {args.codec}", file=sys.stderr,
              flush=True)
        from llasa_rt.export.tiny_codec import make_tiny_xcodec2

        print(make_tiny_xcodec2(args.codec, "tiny", seed=args.seed))
    print(f"llasa-rt make-tiny: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
