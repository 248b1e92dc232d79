"""Random-weight X-Codec2 checkpoints in the exact published HKUSTAudio/xcodec2 layout, for tests and benchmarks.

`make_tiny_xcodec2(out_dir, preset)` writes `config.json` + `model.safetensors` with the same tensor names as the
published checkpoint (including the encoder's weight-norm `parametrizations.weight.original0/1` keys, the
alias-free filter buffers, `generator.head.istft.window` and a full 24-layer `semantic_model.*` w2v-bert) and
scaled-down widths where the architecture allows:

- "tiny": decoder width 128 (2 heads of 64), 2 transformer blocks; small encoder and w2v-bert. ~1.8M parameters.
- "real-decoder": the published decoder size (width 1024, 12 blocks, FSQ projection 2048; ~187M parameters)
  with the same small encoder, for decoder parity and benchmarks.

Nothing is downloaded; the weights are random (seeded), so audio from these checkpoints is noise-like.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .xcodec2_checkpoint import CONFIG_NAME, WEIGHTS_NAME, DecoderDims
from .xcodec2_layers import AcousticEncoder, SemanticAdapter
from .xcodec2_model import XCodec2Decoder

PRESETS: dict[str, dict[str, int]] = {
    # dim: decoder width, depth: transformer blocks, vq_dim: FSQ projection width,
    # ngf/enc_hidden: acoustic encoder widths, sem: w2v-bert width (= semantic adapter width)
    "tiny": {"dim": 128, "depth": 2, "vq_dim": 64, "ngf": 4, "enc_hidden": 32, "sem": 32},
    "real-decoder": {"dim": 1024, "depth": 12, "vq_dim": 2048, "ngf": 4, "enc_hidden": 32, "sem": 32},
}
W2V_LAYERS = 24  # as in w2v-bert-2.0; X-Codec2 reads hidden_states[16]
W2V_HEADS = 2
W2V_INTERMEDIATE = 64


def _w2v_bert(sem: int) -> nn.Module:
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    config = Wav2Vec2BertConfig(hidden_size=sem, num_hidden_layers=W2V_LAYERS, num_attention_heads=W2V_HEADS,
                                intermediate_size=W2V_INTERMEDIATE)
    return Wav2Vec2BertModel(config)


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Gives every parameter random values: norms near 1, biases and activation parameters small but non-zero,
    so that a checkpoint loaded into the wrong slot changes the output."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.ndim == 1 and name.endswith("weight"):  # norm scales
                p.copy_(1.0 + 0.1 * noise)
            elif p.ndim == 1 or name.endswith("original0"):  # biases, snake alpha/beta, weight-norm gains
                p.copy_((0.1 * noise) if not name.endswith("original0") else (1.0 + 0.1 * noise).abs())
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(noise / fan_in**0.5)


def make_tiny_xcodec2(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Writes a random X-Codec2 checkpoint folder (config.json + model.safetensors) and returns its path.

    `out_dir` must not exist or be empty; the folder is staged and renamed at the end."""
    from safetensors.torch import save_file

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dims = DecoderDims(dim=p["dim"], vq_dim=p["vq_dim"], depth=p["depth"], heads=p["dim"] // 64, n_fft=1280,
                       hop=320, codebook_dim=8)
    parts: dict[str, nn.Module] = {
        "": XCodec2Decoder(dims),  # generator.* (incl. quantizer.project_in) + fc_post_a.*
        "semantic_model.": _w2v_bert(p["sem"]),
        "SemanticEncoder_module.": SemanticAdapter(p["sem"]),
        "CodecEnc.": AcousticEncoder(p["ngf"], (2, 2, 4, 4, 5), p["enc_hidden"]),
        "fc_prior.": nn.Linear(p["sem"] + p["enc_hidden"], p["vq_dim"]),
    }
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in parts.items():
        _randomize(module, gen)
        for k, v in module.state_dict().items():
            tensors[prefix + k] = v.detach().to(torch.float32).contiguous().clone()
    # The random encoder's features are large (std ~80 for white noise input), which would saturate the FSQ bound
    # and give a handful of codes; shrinking the projection into the FSQ space keeps the codes varied.
    tensors["generator.quantizer.project_in.weight"] *= 0.015
    config = {
        "architectures": ["XCodec2Model"],
        "model_type": "xcodec",
        "semantic_hidden_size": p["sem"],
        "codec_encoder_hidden_size": p["enc_hidden"],
        "codec_decoder_hidden_size": p["dim"],
        "use_vocos": True,
        "torch_dtype": "float32",
    }
    from llasa_rt.bundle.writer import staged_folder

    with staged_folder(out_dir, required=CONFIG_NAME) as tmp:  # nothing half-written is left behind
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)
