"""Export of the X-Codec2 decoder to `codec_decoder.onnx` (codes [B, 1, T] int32 -> audio [B, 1, 320 T] float32).

The graph uses standard ONNX operators only (no complex numbers, no STFT/DFT op, no contrib ops), so ONNX Runtime
and TensorRT's parser both take it: the iSTFT is two constant matmuls plus shifted adds, and the FSQ index -> code
step is a Gather from the 65536 x 8 implicit codebook. Batch and length are dynamic.

`export_codec_decoder` can be called on its own or by `llasa-rt export --codec ...`, which records the returned
GraphEntry under manifest.graphs["codec_decoder"] and `entry.details["source"]` under manifest.sources["codec"].
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.bundle import GraphEntry, sha256_file
from llasa_rt.errors import CheckpointError, InputError

from .xcodec2_checkpoint import CodecSource, resolve_source
from .xcodec2_model import CODEBOOK_SIZE, XCodec2Decoder

GRAPH_NAME = "codec_decoder.onnx"
OPSET = 17
INPUT_NAME = "codes"
OUTPUT_NAME = "audio"
SAMPLE_RATE = 16000
PRECISIONS = ("fp32", "fp16")
# fp16 graphs keep these in fp32: the log-magnitude exponent and the iSTFT envelope division would lose range,
# and the normalisations' mean/variance reductions would lose precision.
FP16_KEEP_FP32_OPS = ["Exp", "Clip", "Div", "ReduceMean", "Pow", "Sqrt", "InstanceNormalization",
                      "LayerNormalization", "Softmax"]
SELF_CHECK_MIN_SNR_DB = 60.0


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of `test` against `reference` in dB (inf when equal)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = np.sum((reference - np.asarray(test, dtype=np.float64)) ** 2)
    signal = np.sum(reference**2)
    return float("inf") if noise == 0 else float(10 * np.log10(signal / noise))


def _export_fp32(decoder: XCodec2Decoder, path: Path) -> None:
    import torch

    example = torch.zeros(1, 1, 8, dtype=torch.int32)
    # The TorchScript exporter warns about traced shape arithmetic and constant folding; the self-check in
    # export_codec_decoder verifies the result at another batch size and length, so keep the console quiet.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            decoder, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "frames"}, OUTPUT_NAME: {0: "batch", 2: "samples"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )


def _to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=FP16_KEEP_FP32_OPS)
    onnx.save(model, str(dst))


def _check_standard_ops(path: Path) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    banned = sorted({n.op_type for n in model.graph.node if n.op_type in ("STFT", "DFT")})
    if foreign or banned:
        raise CheckpointError(f"internal error: exported codec graph uses non-standard ops {foreign + banned}")


def _run_ort(path: Path, codes: np.ndarray) -> np.ndarray:
    from llasa_rt.backends.ort import create_session

    return create_session(path, threads=2).run([OUTPUT_NAME], {INPUT_NAME: codes})[0]


def export_codec_decoder(source: str | os.PathLike[str], dest_dir: Path, precision: str = "fp32",
                         codec: CodecSource | None = None) -> GraphEntry:
    """Exports the X-Codec2 decoder of `source` (hub id or local folder) to `dest_dir/codec_decoder.onnx`.

    Args:
        source: a Hugging Face id (e.g. "HKUSTAudio/xcodec2", downloaded with progress) or a local folder with
            config.json + model.safetensors in the published layout.
        dest_dir: existing folder to write the graph into (normally a staged bundle folder).
        precision: "fp32" or "fp16" (fp16 weights and activations, fp32 input/output and sensitive ops).
        codec: an already resolved source (skips resolving again).

    Returns:
        The GraphEntry for manifest.graphs["codec_decoder"]; `details["source"]` is the record for
        manifest.sources["codec"].

    Raises:
        CheckpointError: the source is missing, offline, or not an X-Codec2 checkpoint.
        InputError: unknown precision.
    """
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"codec precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dest_dir = Path(dest_dir)
    if not dest_dir.is_dir():
        raise InputError(f"destination folder '{dest_dir}' does not exist")
    codec = codec or resolve_source(source)
    decoder = XCodec2Decoder.from_folder(codec.folder)
    final = dest_dir / GRAPH_NAME
    tmp32 = dest_dir / f".{GRAPH_NAME}.fp32-{os.getpid()}"
    tmp_out = dest_dir / f".{GRAPH_NAME}.partial-{os.getpid()}"
    details: dict[str, Any] = {}
    try:
        print(f"llasa-rt: exporting the X-Codec2 decoder ({sum(p.numel() for p in decoder.parameters()) / 1e6:.1f}M "
              f"parameters, {precision})", file=sys.stderr)
        _export_fp32(decoder, tmp32)
        # Self-check: the graph must reproduce the PyTorch decoder it was traced from.
        probe = np.random.default_rng(0).integers(0, CODEBOOK_SIZE, size=(2, 1, 13)).astype(np.int32)
        with torch.no_grad():
            expected = decoder(torch.from_numpy(probe)).numpy()
        fp32_snr = snr_db(expected, _run_ort(tmp32, probe))
        if fp32_snr < SELF_CHECK_MIN_SNR_DB:
            raise CheckpointError(f"internal error: exported codec graph differs from PyTorch (SNR {fp32_snr:.1f} dB)")
        if precision == "fp16":
            _to_fp16(tmp32, tmp_out)
            tmp32.unlink()
            details["fp16_snr_db_vs_pytorch"] = round(snr_db(expected, _run_ort(tmp_out, probe)), 2)
        else:
            tmp32.rename(tmp_out)
        _check_standard_ops(tmp_out)
        os.replace(tmp_out, final)
    except BaseException:
        for p in (tmp32, tmp_out):
            p.unlink(missing_ok=True)
        raise
    details.update({
        "inputs": {INPUT_NAME: {"dtype": "int32", "shape": ["batch", 1, "frames"]}},
        "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": ["batch", 1, "frames*320"]}},
        "sample_rate": SAMPLE_RATE,
        "hop_length": decoder.dims.hop,
        "codebook_size": CODEBOOK_SIZE,
        "self_check_snr_db": round(fp32_snr, 2),
        "source": codec.to_json(),
    })
    return GraphEntry(files={GRAPH_NAME: sha256_file(final)}, backend="onnxruntime", precision=precision,
                      opset=OPSET, details=details)


def export_codec_bundle(source: str | os.PathLike[str], out: str | os.PathLike[str], precision: str = "fp32",
                        overwrite: bool = False) -> Path:
    """A bundle holding only `codec_decoder.onnx` (for decoding codes with llasa_rt.codec; it cannot speak).

    Written through a staged folder like every bundle; the manifest's LM sections stay empty.
    """
    from llasa_rt._version import __version__
    from llasa_rt.bundle import CODEC_GRAPH, AudioFacts, Manifest
    from llasa_rt.bundle.writer import staged_bundle, write_manifest

    with staged_bundle(out, overwrite) as tmp:
        entry = export_codec_decoder(source, tmp, precision)
        hop = entry.details["hop_length"]
        audio = AudioFacts(sample_rate=SAMPLE_RATE, hop_length=hop, tokens_per_second=SAMPLE_RATE // hop)
        write_manifest(tmp, Manifest(llasa_rt_version=__version__, graphs={CODEC_GRAPH: entry}, audio=audio,
                                     sources={"codec": entry.details["source"]}))
    return Path(out)
