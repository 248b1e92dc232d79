"""llasa_rt.calibration: explicit quantisation (Q/DQ) of a bundle's LM graph for TensorRT and ONNX Runtime.

`quantize_bundle` calibrates a float LM graph of a bundle on Llasa prompts (plus speech tokens the graph writes
itself), rewrites its linears as W8A8 INT8 (SmoothQuant) or W4A16 INT4 (blockwise, AWQ-style scales) with
standard QuantizeLinear / DequantizeLinear, and adds the result to the bundle as a new LM graph entry
(`<graph>.<scheme>`, e.g. "lm.portable.int8", files `<stem>.<scheme>.onnx` + `.data`), leaving every existing
file as it was. The recipes are in `qdq`, the calibration data in `collect`, the graph rewriting in `graph`; docs/gpu.md
("Quantisation recipes") says why these and how far they drift. Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.errors import InputError

from .qdq import HEAD_CHOICES, SCHEMES, QuantOptions, QuantReport

DEFAULT_STEPS = 32  # speech tokens generated per calibration prompt


def source_entry(bundle: Any, graph: str | None) -> tuple[str, Any]:
    """(entry name, GraphEntry) of the float LM graph `graph` (an entry or file name; default: the bundle's default
    LM)."""
    entries = bundle.manifest.graphs
    if graph is None:
        graph = bundle.manifest.default_lm()
    for name in bundle.manifest.lm_graphs():
        entry = entries[name]
        if graph in (name, entry.path_name):
            if entry.precision not in ("fp32", "fp16"):
                raise InputError(f"graph '{graph}' is already {entry.precision}; quantise an fp32 or fp16 graph")
            if not entry.path_name.endswith(".onnx"):
                raise InputError(f"graph '{graph}' is not an ONNX graph ({entry.path_name})")
            return name, entry
    have = ", ".join(entries[n].path_name for n in bundle.manifest.lm_graphs())
    raise InputError(f"bundle '{bundle.root}' has no LM graph '{graph}'; its LM graphs: {have}")


def quantize_bundle(bundle_path: str | Path, scheme: str, graph: str | None = None, texts: list[str] | None = None,
                    alpha: float = 0.5, block_size: int = 128, awq: bool = False, smooth_mul: bool = True,
                    head: str = "same", clip_search: bool = False, steps: int = DEFAULT_STEPS,
                    threads: int | None = None, overwrite: bool = False,
                    log: Callable[[str], None] | None = None) -> str:
    """Adds a Q/DQ-quantised copy of a bundle's float LM graph; returns the new graph entry's name.

    Args:
        bundle_path: the bundle folder (written in place: two new files and an updated manifest.json).
        scheme: "int8" (W8A8, SmoothQuant) or "int4" (W4A16, blockwise weight-only).
        graph: the float graph to quantise, by entry or file name (default: the "lm" entry).
        texts: calibration texts (default: the packaged prompt set of `llasa-rt compare`).
        alpha: int8 SmoothQuant migration strength in [0, 1] (0: no smoothing).
        block_size: int4 block size along the input features (must divide every linear's K).
        awq: int4 activation-aware scale search (off by default: it did not help on the random-weight models
            measured here, see docs/gpu.md).
        smooth_mul: int8: also smooth linears whose input is not a norm's output (o_proj, down_proj) through an
            inserted Mul (on by default: it halved the KL on the measured models).
        head: the output head: "same" (quantised like the rest), "int8" (weight-only per-channel), "float".
        clip_search: int8 activation ranges by least output error on the calibration sample (else the max).
        steps: speech tokens generated per calibration text.
        threads: ONNX Runtime threads for calibration.
        overwrite: replace an existing graph entry of the same name.
        log: progress messages.
    """
    from llasa_rt._version import __version__
    from llasa_rt.bundle import PORTABLE_FLAVOUR, Bundle, GraphEntry
    from llasa_rt.bundle.writer import check_writable, hash_files, write_manifest
    from llasa_rt.evaluation.drift import default_prompts
    from llasa_rt.prompt import PromptBuilder

    from .collect import collect
    from .graph import GraphFile
    from .qdq import check_blocks, quantize_graph

    log = log or (lambda msg: None)
    options = QuantOptions(scheme=scheme, alpha=alpha, smooth_mul=smooth_mul, block_size=block_size, awq=awq,
                           head=head, clip_search=clip_search)
    options.validate()
    if not 0 <= steps <= 4096:
        raise InputError(f"--steps must be in [0, 4096], not {steps}")
    bundle = Bundle.open(bundle_path, verify="fast")
    model, tokens, _ = bundle.manifest.lm_parts()
    options.head_rows = tokens.head_rows
    src_name, src = source_entry(bundle, graph)
    new_name = f"{src_name}.{scheme}"  # an LM entry ("lm.<variant>"): Engine(BUNDLE/<file>) and compare run it
    stem = src.path_name[: -len(".onnx")]
    out_file = f"{stem}.{scheme}.onnx"
    if (new_name in bundle.manifest.graphs or bundle.path(out_file).exists()) and not overwrite:
        raise InputError(f"bundle '{bundle.root}' already has {out_file} (graph '{new_name}'); pass --overwrite to "
                         "replace it")
    check_writable(bundle.root, "add a quantised graph")
    if scheme == "int4":
        check_blocks(GraphFile(bundle.path(src.path_name)), options)
    builder = PromptBuilder.from_bundle(bundle)
    texts = texts or default_prompts()
    token_prompts = [builder.build(t) for t in texts]
    longest = max(len(p) for p in token_prompts) + steps + 1
    if longest > model.max_context:
        raise InputError(f"calibration needs {longest} tokens, more than the {model.max_context}-token context; "
                         "use shorter prompts or fewer --steps")
    t0 = time.time()
    calib = collect(bundle.path(src.path_name), bundle.manifest.lm_model(src_name),
                    src.details.get("flavour") == PORTABLE_FLAVOUR, token_prompts, tokens.head_token_ids(),
                    tokens.speech_count, steps=steps, threads=threads, log=log)
    log(f"calibrated on {calib.positions} positions in {time.time() - t0:.1f} s")
    g = GraphFile(bundle.path(src.path_name))
    report: QuantReport = quantize_graph(g, calib, options, log)
    opset = g.opset
    files = g.save(bundle.path(out_file), {"llasa_rt.precision": scheme, "llasa_rt.source_graph": src.path_name})
    log(f"{out_file} written ({report.quantized} linears quantised) in {time.time() - t0:.1f} s")
    recipe: dict[str, Any] = {"scheme": "W8A8 SmoothQuant" if scheme == "int8" else "W4A16 blockwise",
                              "format": "QuantizeLinear/DequantizeLinear (standard ONNX)", "head": head,
                              "symmetric": True}
    if scheme == "int8":
        recipe.update(alpha=alpha, weights="per-output-channel int8", smooth_mul=smooth_mul,
                      activations="per-tensor int8, " + ("clip searched" if clip_search else "calibrated max"))
    else:
        recipe.update(block_size=block_size, awq=awq, weights="int4 blocks along K, zero point 0")
    details = {**src.details, "source_graph": src_name, "recipe": recipe, **report.to_json(),
               "calibration": {"prompts": calib.prompts, "speech_tokens_per_prompt": calib.steps,
                               "positions": calib.positions, "llasa_rt_version": __version__}}
    manifest = Bundle.open(bundle.root, verify="fast").manifest  # re-read: keep what changed meanwhile
    manifest.graphs[new_name] = GraphEntry(files=hash_files(bundle.root, files), backend=src.backend,
                                           precision=scheme, opset=opset, details=details)
    write_manifest(bundle.root, manifest)
    return new_name


CODEC_CALIBRATION = (4, 200)  # random code sequences x frames when the bundle has no voices
CODEC_CHECK = (2, 200)  # held-out random code sequences x frames for the SNR check


def _random_codes(count: int, frames: int, codebook: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, codebook, (1, 1, frames)).astype(np.int32) for _ in range(count)]


def codec_snr(reference: Path, candidate: Path, codes: list[np.ndarray], input_name: str,
              threads: int | None = None) -> float:
    """Signal-to-noise ratio (dB) of `candidate`'s audio against `reference`'s over code sequences."""
    from llasa_rt.backends.ort import create_session

    ref, cand = create_session(reference, threads), create_session(candidate, threads)
    a = np.concatenate([ref.run(None, {input_name: c})[0].reshape(-1) for c in codes]).astype(np.float64)
    b = np.concatenate([cand.run(None, {input_name: c})[0].reshape(-1) for c in codes]).astype(np.float64)
    noise = float(np.sum((a - b) ** 2))
    return float("inf") if noise == 0 else 10.0 * float(np.log10(np.sum(a ** 2) / noise))


def quantize_codec(bundle_path: str | Path, scheme: str = "int8", threads: int | None = None,
                   overwrite: bool = False, log: Callable[[str], None] | None = None) -> str:
    """Adds a W8A8 INT8 Q/DQ copy of the bundle's X-Codec2 decoder (MatMul and Conv weights per output channel,
    activations per tensor); returns the new entry's name ("codec_decoder.int8").

    Calibration codes: the bundle's voices (real speech codes) when it has any, else random codes. The SNR of
    its audio against the float decoder's on held-out random codes is recorded in the entry
    (`details.snr_db_vs_fp32`).
    """
    from llasa_rt.bundle import CODEC_GRAPH, Bundle, GraphEntry
    from llasa_rt.bundle.voices import read_voice
    from llasa_rt.bundle.writer import check_writable, hash_files, write_manifest
    from llasa_rt.layout import LLASA_TOKENS

    from .collect import collect_codec
    from .graph import GraphFile
    from .qdq import quantize_graph

    log = log or (lambda msg: None)
    if scheme != "int8":
        raise InputError(f"the codec decoder is quantised with --scheme int8 only, not {scheme!r}")
    bundle = Bundle.open(bundle_path, verify="fast")
    src = bundle.graph(CODEC_GRAPH)
    if src.precision != "fp32":
        raise InputError(f"the codec decoder is {src.precision}; quantise an fp32 export (--codec-precision fp32)")
    new_name, out_file = f"{CODEC_GRAPH}.{scheme}", f"{CODEC_GRAPH}.{scheme}.onnx"
    if (new_name in bundle.manifest.graphs or bundle.path(out_file).exists()) and not overwrite:
        raise InputError(f"bundle '{bundle.root}' already has {out_file}; pass --overwrite to replace it")
    check_writable(bundle.root, "add a quantised graph")
    input_name = next(iter(src.details.get("inputs", {"codes": None})))
    codebook = int(src.details.get("codebook_size", LLASA_TOKENS.speech_count))
    voices = [read_voice(bundle, name)[0] for name in bundle.manifest.voices]
    codes = ([v.reshape(1, 1, -1).astype(np.int32) for v in voices] if voices
             else _random_codes(*CODEC_CALIBRATION, codebook, seed=0))
    t0 = time.time()
    calib = collect_codec(bundle.path(src.path_name), codes, input_name, threads=threads)
    g = GraphFile(bundle.path(src.path_name))
    report = quantize_graph(g, calib, QuantOptions(scheme="int8", alpha=0.0, smooth_mul=False, convs=True), log)
    opset = g.opset
    files = g.save(bundle.path(out_file), {"llasa_rt.precision": scheme, "llasa_rt.source_graph": src.path_name})
    snr = codec_snr(bundle.path(src.path_name), bundle.path(out_file),
                    _random_codes(*CODEC_CHECK, codebook, seed=1), input_name, threads)
    log(f"{out_file} written ({report.quantized} MatMul/Conv weights quantised) in {time.time() - t0:.1f} s; "
        f"SNR vs fp32 {snr:.1f} dB")
    details = {**src.details, "source_graph": CODEC_GRAPH,
               "recipe": {"scheme": "W8A8", "format": "QuantizeLinear/DequantizeLinear (standard ONNX)",
                          "weights": "per-output-channel int8 (MatMul and Conv)",
                          "activations": "per-tensor int8 absmax", "symmetric": True},
               "quantized_linears": report.quantized, "snr_db_vs_fp32": round(snr, 2),
               "snr_codes": f"{CODEC_CHECK[0]} random sequences of {CODEC_CHECK[1]} codes",
               "calibration": {"codes": "bundle voices" if voices else "random codes", "sequences": len(codes),
                               "frames": calib.positions}}
    manifest = Bundle.open(bundle.root, verify="fast").manifest
    manifest.graphs[new_name] = GraphEntry(files=hash_files(bundle.root, files), backend=src.backend,
                                           precision=scheme, opset=opset, details=details)
    write_manifest(bundle.root, manifest)
    return new_name


__all__ = ["DEFAULT_STEPS", "HEAD_CHOICES", "SCHEMES", "QuantOptions", "QuantReport", "codec_snr", "quantize_bundle",
           "quantize_codec", "source_entry"]
