"""X-Codec2 decoder (codes -> audio, exportable to ONNX) and encoder (audio -> codes) in plain PyTorch.

Both load the published `model.safetensors` layout with strict key checking; dimensions come from tensor shapes
(see xcodec2_checkpoint.py). The decoder is what `export_codec_decoder` traces; the encoder turns reference voices
into codes at export time. Export-time only: imports torch (and transformers for the w2v-bert part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llasa_rt.errors import CheckpointError

from .xcodec2_checkpoint import DecoderDims, decoder_dims, load_tensors
from .xcodec2_layers import AcousticEncoder, ISTFTHead, SemanticAdapter, VocosBackbone

FSQ_LEVELS = (4, 4, 4, 4, 4, 4, 4, 4)
CODEBOOK_SIZE = 4**8
SEMANTIC_LAYER = 16  # X-Codec2 uses w2v-bert-2.0's hidden_states[16]


def fsq_codebook() -> torch.Tensor:
    """The implicit FSQ codebook [65536, 8]: digit i of the base-4 index -> (digit - 2) / 2."""
    index = torch.arange(CODEBOOK_SIZE)[:, None]
    basis = 4 ** torch.arange(len(FSQ_LEVELS))[None, :]
    return ((index // basis) % 4 - 2).float() / 2


class Quantizer(nn.Module):
    """ResidualFSQ with one quantizer (levels 4^8): `project_in` for encoding, `project_out` for decoding."""

    def __init__(self, vq_dim: int, codebook_dim: int = 8) -> None:
        super().__init__()
        self.project_in = nn.Linear(vq_dim, codebook_dim)
        self.project_out = nn.Linear(codebook_dim, vq_dim)
        self.register_buffer("codebook", fsq_codebook(), persistent=False)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] (int) -> embeddings [B, T, vq_dim] via a plain table lookup (ONNX Gather)."""
        return self.project_out(nn.functional.embedding(codes, self.codebook))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, vq_dim] -> codes [B, T] int32, as vector-quantize-pytorch 1.17.8 computes them.

        ResidualFSQ bounds its input once, then its FSQ layer bounds it again before rounding; both are kept. The
        float32 operations mirror the package step by step (including the straight-through `z + (round(z) - z)` and
        the truncating int cast), because a different rounding order could move a value across a code boundary.
        """
        z = self.project_in(x)
        levels = torch.tensor(FSQ_LEVELS, dtype=torch.int32)
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.full_like(half_l, 0.5)
        shift = (offset / half_l).atanh()

        def bound(v: torch.Tensor) -> torch.Tensor:
            return (v + shift).tanh() * half_l - offset

        z = bound(bound(z))
        quantized = (z + (z.round() - z)) / (levels // 2)
        digits = quantized * (levels // 2) + (levels // 2)
        basis = torch.cumprod(torch.tensor([1, *FSQ_LEVELS[:-1]]), dim=0, dtype=torch.int32)
        return (digits * basis).sum(dim=-1).to(torch.int32)


class Generator(nn.Module):
    """The `generator.*` part of the checkpoint: quantizer, Vocos backbone, iSTFT head."""

    def __init__(self, dims: DecoderDims) -> None:
        super().__init__()
        self.quantizer = Quantizer(dims.vq_dim, dims.codebook_dim)
        self.backbone = VocosBackbone(dims.dim, dims.depth, dims.heads)
        self.head = ISTFTHead(dims.dim, dims.n_fft, dims.hop)


class XCodec2Decoder(nn.Module):
    """codes [B, 1, T] (int32/int64, 0..65535) -> audio [B, 1, T * 320] float32 at 16 kHz."""

    def __init__(self, dims: DecoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.generator = Generator(dims)
        self.fc_post_a = nn.Linear(dims.vq_dim, dims.dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.generator.quantizer.decode(codes[:, 0, :])
        x = self.generator.backbone(self.fc_post_a(x))
        return self.generator.head(x).unsqueeze(1)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any]) -> XCodec2Decoder:
        """Builds the decoder from checkpoint tensors (strict: every decoder key must be present and used)."""
        wanted = {k: v for k, v in tensors.items()
                  if (k.startswith("generator.") and not k.startswith("generator.quantizer.project_in."))
                  or k.startswith("fc_post_a.")}
        model = cls(decoder_dims(wanted))
        model.generator.quantizer.project_in = nn.Identity()  # encoder-only; not part of the decoder graph
        _load_strict(model, wanted, "decoder")
        model.generator.head.istft.rebuild()
        return model.eval()

    @classmethod
    def from_folder(cls, folder: Path) -> XCodec2Decoder:
        return cls.from_tensors(load_tensors(Path(folder), ("generator.", "fc_post_a.")))


def _load_strict(module: nn.Module, tensors: dict[str, Any], what: str) -> None:
    result = module.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"X-Codec2 {what} weights do not match the published layout: missing {sorted(result.missing_keys)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}"
        )
    bad = [k for k, v in module.state_dict().items() if k in tensors and tuple(v.shape) != tuple(tensors[k].shape)]
    if bad:  # pragma: no cover - load_state_dict already raises on shape mismatch
        raise CheckpointError(f"X-Codec2 {what} tensors have unexpected shapes: {bad[:5]}")


def w2v_bert_config(tensors: dict[str, Any]) -> Any:
    """A Wav2Vec2BertConfig with w2v-bert-2.0's settings and the sizes found in `semantic_model.*` tensors."""
    from transformers import Wav2Vec2BertConfig

    p = "semantic_model."
    hidden, feat_in = tensors[p + "feature_projection.projection.weight"].shape
    layers = len({k.split(".")[3] for k in tensors if k.startswith(p + "encoder.layers.")})
    intermediate = tensors[p + "encoder.layers.0.ffn1.intermediate_dense.weight"].shape[0]
    head_size = tensors[p + "encoder.layers.0.self_attn.distance_embedding.weight"].shape[1]
    positions = tensors[p + "encoder.layers.0.self_attn.distance_embedding.weight"].shape[0]
    kernel = tensors[p + "encoder.layers.0.conv_module.depthwise_conv.weight"].shape[-1]
    if layers < SEMANTIC_LAYER:
        raise CheckpointError(f"the checkpoint's w2v-bert has {layers} layers; X-Codec2 needs at least "
                              f"{SEMANTIC_LAYER}")
    # w2v-bert-2.0 uses relative_key positions with 64 left / 8 right; the table has left + right + 1 rows.
    return Wav2Vec2BertConfig(
        hidden_size=int(hidden), num_hidden_layers=int(layers), num_attention_heads=int(hidden) // int(head_size),
        intermediate_size=int(intermediate), feature_projection_input_dim=int(feat_in),
        conv_depthwise_kernel_size=int(kernel), position_embeddings_type="relative_key",
        left_max_position_embeddings=64, right_max_position_embeddings=int(positions) - 65,
        hidden_act="swish", layer_norm_eps=1e-5,
    )


class XCodec2Encoder(nn.Module):
    """16 kHz mono waveform -> X-Codec2 codes, equal to the `xcodec2` package's `encode_code`.

    Semantic path: SeamlessM4T fbank features (w2v-bert-2.0 preprocessing) of the wav padded by 160 samples on both
    sides -> Wav2Vec2BertModel hidden_states[16] -> SemanticEncoder_module. Acoustic path: CodecEnc on the wav padded
    on the right to the next multiple of 320 (a full 320 when already a multiple, as the package does). Both are
    concatenated -> fc_prior -> FSQ -> codes.
    """

    def __init__(self, tensors: dict[str, Any]) -> None:
        super().__init__()
        from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

        config = w2v_bert_config(tensors)
        self.semantic_model = Wav2Vec2BertModel(config)
        semantic = {k[len("semantic_model."):]: v for k, v in tensors.items() if k.startswith("semantic_model.")}
        result = self.semantic_model.load_state_dict(semantic, strict=False)
        # masked_spec_embed exists only for training-time masking; nothing else may be missing or left over.
        missing = [k for k in result.missing_keys if k != "masked_spec_embed"]
        if missing or result.unexpected_keys:
            raise CheckpointError(f"semantic_model weights do not match w2v-bert-2.0: missing {missing[:5]}, "
                                  f"unexpected {result.unexpected_keys[:5]}")
        # Layers after the 16th never influence hidden_states[16]; dropping them saves a third of the compute.
        self.semantic_model.encoder.layers = self.semantic_model.encoder.layers[:SEMANTIC_LAYER]
        self.feature_extractor = SeamlessM4TFeatureExtractor(
            feature_size=80, num_mel_bins=80, padding_value=1.0, sampling_rate=16000, stride=2)
        sem_dim = tensors["SemanticEncoder_module.initial_conv.weight"].shape[0]
        ngf = tensors["CodecEnc.conv_blocks.0.parametrizations.weight.original1"].shape[0]
        strides = []
        i = 1
        while (key := f"CodecEnc.conv_blocks.{i}.block.4.parametrizations.weight.original1") in tensors:
            strides.append(tensors[key].shape[-1] // 2)  # the downsampling conv has kernel 2 * stride
            i += 1
        hidden = tensors["CodecEnc.conv_final_block.1.parametrizations.weight.original1"].shape[0]
        vq_dim = tensors["fc_prior.weight"].shape[0]
        self.SemanticEncoder_module = SemanticAdapter(int(sem_dim))
        self.CodecEnc = AcousticEncoder(int(ngf), tuple(strides), int(hidden))
        self.fc_prior = nn.Linear(int(sem_dim + hidden), int(vq_dim))
        self.quantizer = Quantizer(int(vq_dim))
        own = {k: v for k, v in tensors.items() if k.startswith(("SemanticEncoder_module.", "CodecEnc.", "fc_prior."))}
        own.update({"quantizer." + k[len("generator.quantizer."):]: v for k, v in tensors.items()
                    if k.startswith("generator.quantizer.")})
        result = self.load_state_dict(own, strict=False)
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if not k.startswith("semantic_model.")]
        if missing or unexpected:
            raise CheckpointError(f"X-Codec2 encoder weights do not match the published layout: missing "
                                  f"{missing[:5]}, unexpected {unexpected[:5]}")
        self.hop = int(np.prod(strides))
        self.eval()

    @classmethod
    def from_folder(cls, folder: Path) -> XCodec2Encoder:
        prefixes = ("semantic_model.", "SemanticEncoder_module.", "CodecEnc.", "fc_prior.", "generator.quantizer.")
        return cls(load_tensors(Path(folder), prefixes))

    @torch.no_grad()
    def encode(self, wav: np.ndarray) -> np.ndarray:
        """wav float [L] at 16 kHz -> codes int32 [T] with T = L // 320 + 1."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32))[None, :]
        x = nn.functional.pad(x, (0, self.hop - x.shape[1] % self.hop))
        feats = self.feature_extractor(nn.functional.pad(x[0], (160, 160)).numpy(), sampling_rate=16000,
                                       return_tensors="pt").input_features
        hidden = self.semantic_model(feats, output_hidden_states=True).hidden_states[SEMANTIC_LAYER]
        semantic = self.SemanticEncoder_module(hidden.transpose(1, 2))
        acoustic = self.CodecEnc(x[:, None, :]).transpose(1, 2)
        joint = self.fc_prior(torch.cat([semantic, acoustic], dim=1).transpose(1, 2))
        return self.quantizer.encode(joint)[0].numpy()
