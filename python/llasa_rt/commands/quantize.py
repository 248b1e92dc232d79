"""`llasa-rt quantize`: add an INT8 (W8A8) or INT4 (W4A16) Q/DQ copy of a bundle's float LM graph."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="add an int8 (W8A8 SmoothQuant) or int4 (W4A16) Q/DQ copy of a bundle's LM graph",
        description="Calibrate a bundle's float LM graph on Llasa prompts (plus speech tokens it writes itself) and "
                    "add a copy with standard QuantizeLinear/DequantizeLinear: int8 = W8A8 with SmoothQuant, "
                    "per-channel weights and per-tensor activations; int4 = weight-only blocks of --block-size along "
                    "the input features (optionally with an activation-aware scale search). The bundle gains "
                    "<stem>.<scheme>.onnx (+ .data) and a manifest entry; nothing else changes. Judge it with "
                    "`llasa-rt compare BUNDLE/<stem>.onnx BUNDLE/<stem>.<scheme>.onnx`.")
    p.add_argument("bundle", help="bundle folder (written in place)")
    p.add_argument("--scheme", required=True, help="int8 or int4")
    p.add_argument("--graph", help="float graph to quantise, by file or entry name: an LM graph (lm.portable.onnx "
                                        "for TensorRT; default: the bundle's default LM) or codec_decoder.onnx "
                                        "(int8; calibrated on the bundle's voices, else random codes)")
    p.add_argument("--prompts", help="text file with one calibration text per line (default: the packaged set of 16)")
    p.add_argument("--steps", type=int, default=32, help="speech tokens generated per calibration text (default 32)")
    p.add_argument("--alpha", type=float, default=0.5, help="int8: SmoothQuant migration strength (default 0.5)")
    p.add_argument("--block-size", type=int, default=128, help="int4: input features per scale (default 128)")
    p.add_argument("--awq", action="store_true",
                   help="int4: activation-aware scale search (default: plain round-to-nearest)")
    p.add_argument("--no-smooth-mul", action="store_true",
                   help="int8: smooth only linears fed by a norm (no Mul before o_proj / down_proj)")
    p.add_argument("--head", default="same",
                   help="output head: same (as the scheme, default), int8 (weight-only per channel) or float")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads for calibration")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier quantised graph of the same name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from llasa_rt.calibration import quantize_bundle
    from llasa_rt.commands.compare import read_prompts
    from llasa_rt.options import as_float, as_int

    def progress(msg: str) -> None:
        print(f"llasa-rt quantize: {msg}", file=sys.stderr, flush=True)

    from llasa_rt.bundle import CODEC_GRAPH

    if args.graph in (CODEC_GRAPH, f"{CODEC_GRAPH}.onnx"):
        from llasa_rt.calibration import quantize_codec

        print(quantize_codec(args.bundle, args.scheme, overwrite=args.overwrite, log=progress,
                             threads=None if args.threads is None else as_int(args.threads, "--threads", 1, 256)))
        return 0
    name = quantize_bundle(
        args.bundle, args.scheme, graph=args.graph, texts=read_prompts(args.prompts),
        alpha=as_float(args.alpha, "--alpha", 0.0, 1.0), block_size=as_int(args.block_size, "--block-size", 16, 4096),
        awq=args.awq, smooth_mul=not args.no_smooth_mul, head=args.head, steps=as_int(args.steps, "--steps", 0, 4096),
        threads=None if args.threads is None else as_int(args.threads, "--threads", 1, 256),
        overwrite=args.overwrite, log=progress)
    print(name)
    return 0
