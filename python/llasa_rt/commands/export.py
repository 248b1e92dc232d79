"""`llasa-rt export`: Hugging Face checkpoint(s) -> engine bundle folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="convert a Llasa checkpoint (+ X-Codec2) into a bundle folder",
        description="Convert a Hugging Face Llasa checkpoint (hub id or local folder) into an engine bundle: "
                    "lm.onnx (+ .data) and/or lm.portable.onnx (--target), tokenizer.json, manifest.json, and "
                    "codec_decoder.onnx with --codec. "
                    "Needs the export extra: pip install 'llasa-rt[export]'.")
    p.add_argument("--model", required=True, help="Llasa checkpoint: hub id (HKUSTAudio/Llasa-1B) or local folder")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int4"],
                   help="LM weights: fp32 (exact), fp16, int8 or int4 (weight-only, CPU) (default fp32)")
    p.add_argument("--target", default="ort", choices=["ort", "portable", "both"],
                   help="LM graph(s): ort = lm.onnx with ONNX Runtime's fused operators (CPU, all precisions); "
                        "portable = lm.portable.onnx, standard ONNX operators for TensorRT / onnxruntime-gpu / Q/DQ "
                        "calibration (fp32 or fp16); both = the two (default ort)")
    p.add_argument("--codec", default=None, help="X-Codec2 checkpoint: hub id (HKUSTAudio/xcodec2) or local folder")
    p.add_argument("--codec-precision", default=None, choices=["fp32", "fp16"],
                   help="codec decoder precision (default: fp16 for an fp16 LM, else fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds something")
    p.add_argument("--date", default=None, help="date pinned into the Llama-3 chat template (default 26 Jul 2024)")
    p.add_argument("--max-context", type=int, default=2048, help="longest prompt + speech in tokens (default 2048)")
    p.add_argument("--block-size", type=int, choices=[16, 32, 64, 128, 256],
                   help="int8/int4: input features per quantisation scale (default 128; smaller is more accurate, "
                        "larger runs batched candidates faster)")
    p.add_argument("--head-bits", type=int, choices=[4, 8],
                   help="int4: bits of the 65,537-row output head (default 8; 4 is faster for one stream)")
    p.add_argument("--lm-flavour", default="fused", choices=["fused", "layered"],
                   help="fused: one graph with ONNX Runtime's attention; layered: one graph per layer around "
                        "llasa-rt's attention kernel (candidates read one shared prompt KV) (default fused)")
    p.add_argument("--kv-dtype", default=None, choices=["float32", "float16"],
                   help="layered: KV cache element type (default float16); fused: always the activation dtype")
    p.add_argument("--prefill-int8", action="store_true",
                   help="int8/int4 fused LM: add lm.prefill.onnx (int8 weights, dynamically quantised activations) "
                        "for prompts: ~1.65x faster prefill of long (voice) prompts on a VNNI CPU, +1 GB for 1B")
    p.add_argument("--no-verify", action="store_true", help="skip running the exported LM once in ONNX Runtime")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llasa_rt.errors import LlasaError

    try:
        from llasa_rt.export.bundle_export import export_bundle
        from llasa_rt.export.prompt_template import DEFAULT_DATE
    except ImportError as e:
        raise LlasaError(f"export needs the export extra ({e.name} is missing): pip install 'llasa-rt[export]'") from e
    out = export_bundle(model=args.model, out=args.out, precision=args.precision, codec=args.codec,
                        codec_precision=args.codec_precision, overwrite=args.overwrite,
                        date=args.date or DEFAULT_DATE, max_context=args.max_context, verify=not args.no_verify,
                        block_size=args.block_size, head_bits=args.head_bits, target=args.target,
                        lm_flavour=args.lm_flavour, kv_dtype=args.kv_dtype, prefill_int8=args.prefill_int8)
    print(out)
    return 0
