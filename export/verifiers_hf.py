"""Hugging Face speech models -> verifier graphs with the waveform contract (docs/verifiers.md).

- `WavLMForXVector` / `UniSpeechSatForXVector` (the Llasa paper's SIM model family) -> kind "speaker":
  `audio [B, T]` + `audio_lengths [B]` -> `embedding [B, D]` (the x-vector, before the classifier);
- `Wav2Vec2ForCTC` / `HubertForCTC` (the paper's WER-H model is HuBERT-Large CTC) -> kind "asr":
  `audio [B, T]` + `audio_lengths [B]` -> `logits [B, F, V]` + `logit_lengths [B]`; the vocabulary, blank id and
  word delimiter go into the manifest entry.

The graph starts from raw 16 kHz audio: the feature extractor's zero-mean / unit-variance normalisation (over each
item's own samples, as `Wav2Vec2FeatureExtractor` does with an attention mask) is part of it. The x-vector head's
statistics pooling, a Python loop over the batch in transformers, is rewritten as a masked mean / standard deviation,
so one graph serves any batch size.

Padding is exact only for models whose convolutional front end normalises per frame (`feat_extract_norm: "layer"`,
the large models): their entry says `batching: "pad_mask"`. Models with a group-normalised front end (the base
models) see padding through that normalisation, so their entry says `batching: "length_buckets"` and the runtime
runs equal-length audios together.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.errors import CheckpointError

from .checkpoint import read_json, resolve

XVECTOR = ("WavLMForXVector", "UniSpeechSatForXVector")
CTC = ("Wav2Vec2ForCTC", "HubertForCTC")
OPSET = 17
FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "pytorch_model.bin", "vocab.json",
         "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]


def architecture_of(folder: Path) -> str:
    """The model class named in config.json, if it is one we export."""
    config = read_json(folder / "config.json", "model")
    arch = (config.get("architectures") or [None])[0]
    if arch not in XVECTOR + CTC:
        raise CheckpointError(f"'{folder}' holds a {arch or config.get('model_type')!r} model; speaker verifiers are "
                              f"exported from {' / '.join(XVECTOR)} and ASR verifiers from {' / '.join(CTC)} folders")
    return arch


def _masked_normalise(audio: Any, lengths: Any, do_normalize: bool) -> tuple[Any, Any]:
    """Zero outside each item's length; with `do_normalize`, zero mean and unit variance over its own samples
    (population variance + 1e-7, as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm)."""
    import torch

    steps = torch.arange(audio.shape[1], device=audio.device)
    mask = steps[None, :] < lengths[:, None]
    maskf = mask.to(audio.dtype)
    x = audio * maskf
    if do_normalize:
        n = lengths.to(audio.dtype).clamp(min=1.0)[:, None]
        mean = x.sum(dim=1, keepdim=True) / n
        var = (((x - mean) * maskf) ** 2).sum(dim=1, keepdim=True) / n
        x = (x - mean) / torch.sqrt(var + 1e-7) * maskf
    return x, mask


def _wrappers() -> tuple[type, type]:
    import torch
    from torch import nn

    class XVectorGraph(nn.Module):
        """audio + lengths -> x-vector embeddings (WavLMForXVector.forward with a batched, masked pooling)."""

        def __init__(self, model: Any, do_normalize: bool) -> None:
            super().__init__()
            self.model, self.do_normalize = model, do_normalize
            self.base = getattr(model, model.base_model_prefix)
            c = model.config
            self.tdnn_shrink = sum((k - 1) * d for k, d in zip(c.tdnn_kernel, c.tdnn_dilation, strict=True))

        def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
            m = self.model
            x, mask = _masked_normalise(audio, audio_lengths, self.do_normalize)
            weighted = m.config.use_weighted_layer_sum
            out = self.base(x, attention_mask=mask.long(), output_hidden_states=weighted)
            if weighted:
                hidden = torch.stack(out.hidden_states, dim=1)
                weights = nn.functional.softmax(m.layer_weights, dim=-1)
                hidden = (hidden * weights.view(-1, 1, 1)).sum(dim=1)
            else:
                hidden = out.last_hidden_state
            hidden = m.projector(hidden)
            for layer in m.tdnn:
                hidden = layer(hidden)
            # Valid frames after the TDNN layers. transformers' _get_tdnn_output_lengths ignores the dilation (its
            # padded-batch pooling counts frames that do not exist); an unpadded input uses every frame, as here.
            frames = m._get_feat_extract_output_lengths(audio_lengths) - self.tdnn_shrink
            valid = (torch.arange(hidden.shape[1])[None, :] < frames[:, None]).to(hidden.dtype)[..., None]
            n = frames.to(hidden.dtype)[:, None]
            mean = (hidden * valid).sum(dim=1) / n
            std = torch.sqrt((((hidden - mean[:, None]) * valid) ** 2).sum(dim=1) / (n - 1.0))  # unbiased, as .std()
            return m.feature_extractor(torch.cat([mean, std], dim=-1))

    class CtcGraph(nn.Module):
        """audio + lengths -> CTC logits and the number of valid frames per item."""

        def __init__(self, model: Any, do_normalize: bool) -> None:
            super().__init__()
            self.model, self.do_normalize = model, do_normalize

        def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x, mask = _masked_normalise(audio, audio_lengths, self.do_normalize)
            logits = self.model(x, attention_mask=mask.long()).logits
            return logits, self.model._get_feat_extract_output_lengths(audio_lengths).to(torch.int64)

    return XVectorGraph, CtcGraph


def receptive_field(config: Any) -> tuple[int, int]:
    """(samples seen by the first frame, samples per frame) of the convolutional front end."""
    field, hop = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (k - 1) * hop
        hop *= s
    return field, hop


def min_samples(arch: str, config: Any) -> int:
    """Shortest input the graph accepts: one frame (CTC), or two frames after the x-vector's TDNN layers."""
    field, hop = receptive_field(config)
    if arch in XVECTOR:
        frames = 2 + sum((k - 1) * d for k, d in zip(config.tdnn_kernel, config.tdnn_dilation, strict=True))
        return field + (frames - 1) * hop
    return field


def ctc_vocabulary(folder: Path, vocab_size: int, pad_token_id: int | None) -> dict[str, Any]:
    """The CTC vocabulary (index -> token), blank id, word delimiter and special tokens from the tokenizer files."""
    vocab = read_json(folder / "vocab.json", "CTC model")
    if vocab and all(isinstance(v, dict) for v in vocab.values()):  # multilingual layout {lang: {token: id}}
        raise CheckpointError(f"{folder / 'vocab.json'} holds one vocabulary per language; export a single-language "
                              "CTC model")
    tok_config = read_json(folder / "tokenizer_config.json", "CTC model", required=False)
    added = read_json(folder / "added_tokens.json", "CTC model", required=False)
    tokens: list[str | None] = [None] * vocab_size
    for token, index in {**vocab, **added}.items():
        if isinstance(index, int) and 0 <= index < vocab_size:
            tokens[index] = token
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise CheckpointError(f"{folder / 'vocab.json'} names no token for ids {missing[:5]} of the model's "
                              f"{vocab_size} outputs")

    def token_text(key: str, default: str) -> str:
        value = tok_config.get(key, default)
        return value.get("content", default) if isinstance(value, dict) else str(value)

    pad = token_text("pad_token", "<pad>")
    blank = pad_token_id if pad_token_id is not None else tokens.index(pad) if pad in tokens else 0
    specials = [token_text(k, d) for k, d in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))]
    return {"vocabulary": tokens, "blank_id": int(blank),
            "word_delimiter": token_text("word_delimiter_token", "|"),
            "special_tokens": [t for t in specials if t in tokens],
            "do_lower_case": bool(tok_config.get("do_lower_case", False))}


def export_hf_verifier(source: str, onnx_path: Path, what: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Exports the model at `source` (hub id or folder) to `onnx_path`; returns the manifest entry's fields.

    `what` is the CLI option naming it ("speaker" or "asr"); the architecture must fit it. The graph is run once in
    ONNX Runtime and compared with transformers before it is accepted.
    """
    import torch
    import transformers

    found = resolve(source, FILES, what, example="microsoft/wavlm-base-plus-sv" if what == "speaker"
                    else "facebook/hubert-large-ls960-ft")
    folder = found.path
    arch = architecture_of(folder)
    kind = "speaker" if arch in XVECTOR else "asr"
    if kind != what:
        raise CheckpointError(f"--{what} '{source}' is a {arch} ({kind} model); pass it as --{kind}")
    pre = read_json(folder / "preprocessor_config.json", "model", required=False)
    rate = int(pre.get("sampling_rate", 16000))
    if rate != 16000:
        raise CheckpointError(f"'{folder}' expects {rate} Hz audio; verifiers take 16 kHz audio (Llasa's rate)")
    do_normalize = bool(pre.get("do_normalize", True))
    log(f"loading {arch} from {folder}")
    try:
        model = getattr(transformers, arch).from_pretrained(str(folder), attn_implementation="eager").eval()
    except Exception as e:  # transformers raises many types for a broken folder
        raise CheckpointError(f"transformers cannot load {arch} from '{folder}' ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e
    config = model.config
    batching = "pad_mask" if config.feat_extract_norm == "layer" else "length_buckets"
    xvector_graph, ctc_graph = _wrappers()
    graph = (xvector_graph if kind == "speaker" else ctc_graph)(model, do_normalize).eval()
    shortest = min_samples(arch, config)
    names_out = ["embedding"] if kind == "speaker" else ["logits", "logit_lengths"]
    dynamic = {"audio": {0: "batch", 1: "samples"}, "audio_lengths": {0: "batch"}}
    dynamic.update({"embedding": {0: "batch"}} if kind == "speaker"
                   else {"logits": {0: "batch", 1: "frames"}, "logit_lengths": {0: "batch"}})
    example = (torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000], dtype=torch.int64))
    log(f"exporting {arch} to ONNX (opset {OPSET})")
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        # Exported in a private folder and copied whole: the exporter may write side files next to the graph.
        staged = Path(tmp) / "graph.onnx"
        torch.onnx.export(graph, example, str(staged), input_names=["audio", "audio_lengths"], output_names=names_out,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        onnx_path.write_bytes(staged.read_bytes())
    check_export(graph, onnx_path, kind, shortest)
    details: dict[str, Any] = {
        "sample_rate": rate, "front_end": {"type": "waveform", "normalize": do_normalize}, "batching": batching,
        "min_samples": shortest, "model": arch, "opset": OPSET,
        "source": {"id": found.id, "revision": found.revision},
    }
    if kind == "speaker":
        details["embedding_dim"] = int(config.xvector_output_dim)
    else:
        details.update(ctc_vocabulary(folder, int(config.vocab_size), config.pad_token_id))
        details["frame_samples"] = receptive_field(config)[1]
    return {"kind": kind, "details": details}


def check_export(graph: Any, onnx_path: Path, kind: str, shortest: int) -> float:
    """Runs the graph in ONNX Runtime on a batch of different lengths and compares with PyTorch; returns the
    largest absolute difference (raises CheckpointError when it exceeds 1e-3)."""
    import torch

    from llasa_rt.backends.ort import create_session

    rng = np.random.default_rng(0)
    lengths = np.array([max(shortest, 9000), max(shortest, 6100)], dtype=np.int64)
    audio = (0.1 * rng.standard_normal((2, int(lengths.max())))).astype(np.float32)
    session = create_session(onnx_path)
    got = session.run(None, {"audio": audio, "audio_lengths": lengths})
    with torch.no_grad():
        want = graph(torch.from_numpy(audio), torch.from_numpy(lengths))
    want = [want] if kind == "speaker" else list(want)
    worst = max(float(np.max(np.abs(g.astype(np.float64) - w.numpy()))) for g, w in zip(got, want, strict=True))
    if not worst <= 1e-3:
        raise CheckpointError(f"the exported {kind} graph differs from PyTorch by {worst:.2g} (limit 1e-3); please "
                              "report this with the model id")
    return worst
