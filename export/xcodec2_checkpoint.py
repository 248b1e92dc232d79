"""Finding, checking and reading X-Codec2 checkpoints in the published HKUSTAudio/xcodec2 format.

The format is a folder with `config.json` (BigCodecConfig, model_type "xcodec") and `model.safetensors` whose keys
are those of the PyPI `xcodec2` package's XCodec2Model: `generator.*` + `fc_post_a.*` (decoder), `CodecEnc.*`,
`SemanticEncoder_module.*`, `fc_prior.*` and `semantic_model.*` (w2v-bert-2.0) for the encoder. Dimensions are
read from tensor shapes, so scaled-down test checkpoints in the same layout load through the same code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llasa_rt.bundle import sha256_file
from llasa_rt.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HEAD_DIM = 64  # the package's rotary module is built with dim 64, so every attention head has 64 dims
DECODER_KEYS = ("fc_post_a.weight", "generator.quantizer.project_out.weight", "generator.head.out.weight",
                "generator.backbone.embed.weight")
ENCODER_PREFIXES = ("CodecEnc.", "SemanticEncoder_module.", "fc_prior.", "semantic_model.",
                    "generator.quantizer.project_in.")


@dataclass
class CodecSource:
    """Where a checkpoint came from: the id the user gave, the local folder and what identifies its weights."""

    id: str  # hub id or the local folder as given
    folder: Path  # local folder holding config.json + model.safetensors
    revision: str | None  # hub commit hash, None for a local folder
    weights_sha256: str  # sha256 of model.safetensors

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": str(self.folder), "revision": self.revision,
                "model_safetensors_sha256": self.weights_sha256}


@dataclass
class DecoderDims:
    dim: int  # transformer width (1024 in the published model)
    vq_dim: int  # width after the FSQ projection (2048)
    depth: int  # transformer blocks (12)
    heads: int  # attention heads (dim / 64)
    n_fft: int  # iSTFT size (1280)
    hop: int  # samples per code (320)
    codebook_dim: int  # FSQ dimensions (8 levels of 4 -> 65536 codes)


def resolve_source(source: str | os.PathLike[str]) -> CodecSource:
    """Turns a hub id or a local folder into a local folder with a checked X-Codec2 checkpoint."""
    from .checkpoint import resolve

    found = resolve(str(source), [CONFIG_NAME, WEIGHTS_NAME], "codec", example="HKUSTAudio/xcodec2")
    check_folder(found.path)
    return CodecSource(id=found.id, folder=found.path, revision=found.revision,
                       weights_sha256=sha256_file(found.path / WEIGHTS_NAME))


def check_folder(folder: Path) -> None:
    """Raises CheckpointError unless `folder` holds an X-Codec2 checkpoint in the published format."""
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise CheckpointError(f"'{folder}' has no {name}: it is not an X-Codec2 checkpoint folder (expected "
                                  f"{CONFIG_NAME} + {WEIGHTS_NAME} as in HKUSTAudio/xcodec2)")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not readable JSON ({e})") from e
    model_type = config.get("model_type") if isinstance(config, dict) else None
    architectures = config.get("architectures") or [] if isinstance(config, dict) else []
    if model_type not in ("xcodec", "xcodec2") and "XCodec2Model" not in architectures:
        raise CheckpointError(f"'{folder}' is not an X-Codec2 checkpoint: config.json has model_type "
                              f"{model_type!r} (expected 'xcodec' as in HKUSTAudio/xcodec2)")
    keys = weight_keys(folder)
    if "decoder.head.linear.weight" in keys or "quantizer.project_out.weight" in keys:
        raise CheckpointError(f"'{folder}' is the transformers-native Xcodec2 layout (e.g. HKUSTAudio/xcodec2-hf); "
                              "pass the original HKUSTAudio/xcodec2 checkpoint instead")
    missing = [k for k in DECODER_KEYS if k not in keys]
    if missing:
        raise CheckpointError(f"{folder / WEIGHTS_NAME} lacks X-Codec2 decoder weights ({', '.join(missing)}); "
                              "it is not an HKUSTAudio/xcodec2-format checkpoint")


def weight_keys(folder: Path) -> set[str]:
    """Tensor names in model.safetensors (reads only the header)."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
            return set(f.keys())
    except Exception as e:
        raise CheckpointError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file ({e})") from e


def load_tensors(folder: Path, prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Loads the tensors whose names start with one of `prefixes` (torch tensors, float32)."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        for key in f.keys():
            if key.startswith(prefixes):
                t = f.get_tensor(key)
                out[key] = t.float() if t.is_floating_point() else t
    return out


def decoder_dims(tensors: dict[str, Any]) -> DecoderDims:
    """Reads the decoder's dimensions from its tensor shapes."""
    dim, vq_dim = tensors["fc_post_a.weight"].shape
    depth = len({k.split(".")[3] for k in tensors if k.startswith("generator.backbone.transformers.")})
    n_fft = tensors["generator.head.out.weight"].shape[0] - 2
    codebook_dim = tensors["generator.quantizer.project_out.weight"].shape[1]
    if dim % HEAD_DIM or n_fft % 4 or codebook_dim != 8:
        raise CheckpointError(f"unexpected X-Codec2 decoder shapes (width {dim}, n_fft {n_fft}, FSQ dims "
                              f"{codebook_dim}); expected width divisible by 64, n_fft = 4 * hop, 8 FSQ dims")
    return DecoderDims(dim=int(dim), vq_dim=int(vq_dim), depth=depth, heads=int(dim) // HEAD_DIM, n_fft=int(n_fft),
                       hop=int(n_fft) // 4, codebook_dim=int(codebook_dim))
