"""Tiny random Hugging Face verifier checkpoints in the real folder layouts, for tests and offline smoke tests.

Each folder is what `save_pretrained` writes for the published models (config.json, model.safetensors,
preprocessor_config.json, and for CTC models the Wav2Vec2CTCTokenizer files vocab.json / tokenizer_config.json /
special_tokens_map.json with <pad> <s> </s> <unk> and the word delimiter "|"), at a few thousand parameters.
The convolutional front end keeps the real kernels and strides (320 samples per frame), so lengths behave as in
the real models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARCHITECTURES = ("WavLMForXVector", "UniSpeechSatForXVector", "Wav2Vec2ForCTC", "HubertForCTC")
LETTERS = list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # the LibriSpeech character set of the real CTC checkpoints


def ctc_vocab() -> dict[str, int]:
    """The vocabulary layout of facebook/wav2vec2-base-960h and facebook/hubert-large-ls960-ft."""
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS]
    return {t: i for i, t in enumerate(tokens)}


# Model dimensions: "tiny" for tests; "base" (wav2vec2-base-960h, wavlm-base-plus-sv) and "large"
# (hubert-large-ls960-ft) are the published shapes, with random weights, for speed measurements.
SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, conv_dim=(16,) * 7,
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 conv_dim=(512,) * 7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  conv_dim=(512,) * 7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16),
}
XVECTOR_HEADS = {"tiny": dict(tdnn_dim=(24, 24, 24, 24, 48), xvector_output_dim=16, classifier_proj_size=20),
                 "base": dict(tdnn_dim=(512, 512, 512, 512, 1500), xvector_output_dim=512, classifier_proj_size=256),
                 "large": dict(tdnn_dim=(512, 512, 512, 512, 1500), xvector_output_dim=512, classifier_proj_size=256)}


def _common(norm: str, size: str) -> dict[str, Any]:
    return dict(**SIZES[size], conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                feat_extract_norm=norm, do_stable_layer_norm=norm == "layer", conv_bias=norm == "layer",
                hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)


def make_tiny_verifier(out: str | Path, architecture: str, norm: str = "layer", seed: int = 0,
                       size: str = "tiny") -> Path:
    """Writes a random tiny checkpoint of `architecture` to `out` (which must not exist or be empty).

    Args:
        out: folder to write.
        architecture: one of WavLMForXVector, UniSpeechSatForXVector, Wav2Vec2ForCTC, HubertForCTC.
        norm: the convolutional front end's normalisation, "layer" (large models: padding + mask is exact) or
            "group" (base models: results depend on padding, so the runtime batches equal lengths only).
        seed: weight RNG seed.
        size: "tiny" (a few thousand parameters), or the published "base" / "large" shapes (random weights).
    """
    import torch
    import transformers
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {architecture!r}")
    if norm not in ("layer", "group"):
        raise ValueError(f"norm must be 'layer' or 'group', not {norm!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"'{out}' is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    kwargs = _common(norm, size)
    config_cls = {"WavLMForXVector": "WavLMConfig", "UniSpeechSatForXVector": "UniSpeechSatConfig",
                  "Wav2Vec2ForCTC": "Wav2Vec2Config", "HubertForCTC": "HubertConfig"}[architecture]
    if architecture.endswith("XVector"):
        kwargs.update(**XVECTOR_HEADS[size], tdnn_kernel=(5, 3, 3, 1, 1), tdnn_dilation=(1, 2, 3, 1, 1),
                      use_weighted_layer_sum=True, num_labels=3)
        if architecture == "WavLMForXVector" and size == "tiny":
            kwargs.update(num_buckets=16, max_bucket_distance=40)
    else:
        vocab = ctc_vocab()
        kwargs.update(vocab_size=len(vocab), pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"],
                      eos_token_id=vocab["</s>"], ctc_loss_reduction="mean")
    config = getattr(transformers, config_cls)(**kwargs)
    config.architectures = [architecture]
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():  # random init leaves some weights at exactly 0/1; spread them so every part matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=norm == "layer").save_pretrained(out)
    if not architecture.endswith("XVector"):
        vocab_path = out / "vocab.json"
        vocab_path.write_text(json.dumps(ctc_vocab()), encoding="utf-8")
        Wav2Vec2CTCTokenizer(str(vocab_path), unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                             eos_token="</s>", word_delimiter_token="|", do_lower_case=False).save_pretrained(out)
    return out
