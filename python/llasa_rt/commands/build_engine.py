"""`llasa-rt build-engine`: TensorRT plans (lm.plan, codec_decoder.plan) built into a bundle, on the target GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

PRECISIONS = ("fp16", "int8", "int4")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine", help="build TensorRT plans for this machine's GPU into a bundle",
        description="Build lm.plan (and codec_decoder.plan when the bundle has a codec) with TensorRT on this "
                    "machine's GPU from the bundle's portable ONNX graphs, and record the TensorRT version, GPU and "
                    "optimisation profiles in manifest.json. Needs `tensorrt` (pip on x86_64; JetPack on Jetson). "
                    "See docs/gpu.md, \"Building engines\".")
    p.add_argument("bundle", help="bundle folder with a portable LM graph")
    p.add_argument("--precision", required=True, choices=PRECISIONS,
                   help="fp16: the portable fp16 graph; int8 / int4: the portable Q/DQ graphs")
    p.add_argument("--max-batch", type=int, default=8, help="most candidates per decode step (default 8)")
    p.add_argument("--max-context", type=int, default=None,
                   help="most prompt + speech positions (default: the bundle's context, 2048 for Llasa)")
    p.add_argument("--workspace-gb", type=float, default=None,
                   help="TensorRT builder workspace limit in GiB (default: TensorRT's, the device memory)")
    p.add_argument("--timing-cache", type=Path, default=None,
                   help="timing cache file: read when it exists, written after the build (faster rebuilds)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llasa_rt.errors import InputError

    if args.workspace_gb is not None and not 0 < args.workspace_gb <= 1024:
        raise InputError(f"--workspace-gb must be between 0 and 1024, not {args.workspace_gb}")
    from llasa_rt.engines.build import BuildRequest, build_engine

    request = BuildRequest(precision=args.precision, max_batch=args.max_batch, max_context=args.max_context,
                           workspace_gb=args.workspace_gb, timing_cache=args.timing_cache)
    for name in build_engine(args.bundle, request):
        print(Path(args.bundle) / name)
    return 0
