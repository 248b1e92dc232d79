"""Random-weight Llasa checkpoints in the exact Hugging Face format of HKUSTAudio/Llasa-*.

Used by the tests and benchmarks (nothing can be downloaded here), and by `llasa-rt make-tiny` so a user
can smoke-test an install. The folder has what a real Llasa checkpoint has:

- `config.json`: LlamaForCausalLM with Llasa's fields (vocab 193800, llama3 rope scaling, bos/eos ids);
- `model.safetensors` (or shards + `model.safetensors.index.json`) with the real key names;
- `tokenizer.json`: a byte-level BPE with the Llama-3 layout: ordinary tokens below 128000, the 256
  Llama-3 special tokens at 128000-128255 (<|begin_of_text|> 128000, <|start_header_id|> 128006,
  <|end_header_id|> 128007, <|eot_id|> 128009, ...), the 8 Llasa markers at 128256-128263 and
  `<|s_N|>` = 128264 + N for N < 65536, added as plain (non-special) tokens as Llasa's training did;
- `tokenizer_config.json` with the Llama-3.2 chat template, `special_tokens_map.json`,
  `generation_config.json`.

Only the BPE merges are small (trained on a few paragraphs) and the weights are random. Needs numpy and
tokenizers only (no torch).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llasa_rt.layout import LLASA_TOKENS

T = LLASA_TOKENS  # Llasa's token layout

DATA = Path(__file__).resolve().parent / "data"
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BASE_VOCAB = 128000  # ordinary BPE tokens of Llama-3: ids 0..127999

# Model shapes. The tiny ones keep the real head layouts (head_dim 64 with 32/8 heads as in Llasa-1B,
# head_dim 128 with 24/8 heads as in Llasa-3B) with a small hidden size and few layers.
PRESETS: dict[str, dict] = {
    "tiny-h64": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64),
    "tiny-h128": dict(hidden_size=192, intermediate_size=256, num_hidden_layers=2, num_attention_heads=24,
                      num_key_value_heads=8, head_dim=128),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64),
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, head_dim=128),
}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog while the children watch from the garden.",
    "Speech synthesis turns written text into audio that sounds like a person reading it aloud.",
    "On a quiet evening in late autumn, the old lighthouse keeper climbed the stairs one more time.",
    "Numbers such as 42, 1999 and 3.14159 are read differently depending on the context they appear in.",
    "Hello world! How are you today? I'm fine, thanks; and you're welcome to join us at 10:30.",
    "Edge devices and small computers should run text-to-speech models without a network connection.",
    "She said: \"Don't forget the keys, the map, and the umbrella, because it'll rain tomorrow.\"",
    "In the beginning was the word, and the word was spoken, recorded, encoded and decoded again.",
]


def llama3_special_tokens() -> list[str]:
    """The 256 Llama-3.1/3.2 special tokens, in id order 128000..128255."""
    named = {
        0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>", 6: "<|start_header_id|>",
        7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>", 10: "<|python_tag|>",
    }
    out, reserved = [], 0
    for i in range(256):
        if i in named:
            out.append(named[i])
        else:
            out.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return out


def build_tokenizer():
    """Builds the Llasa-layout tokenizer (a `tokenizers.Tokenizer`)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    def pre_tokenizer():
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    trainer_tok.train_from_iterator(_CORPUS * 4, trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    # Pad the ordinary vocabulary to Llama-3's 128000 entries so every special id is where Llasa has it.
    for i in range(len(vocab), BASE_VOCAB):
        vocab[f"<unused_bpe_{i}>"] = i

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", 128000)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in llama3_special_tokens()])
    added = list(T.markers) + [f"<|s_{n}|>" for n in range(T.speech_count)]
    tok.add_tokens([AddedToken(t, special=False, normalized=True) for t in added])
    # The layout is the point of this tokenizer: check it instead of trusting insertion order.
    for text, want in [("<|begin_of_text|>", 128000), ("<|eot_id|>", 128009), *T.markers.items(),
                       ("<|s_0|>", T.speech_base_id), (f"<|s_{T.speech_count - 1}|>", T.vocab_size - 1)]:
        got = tok.token_to_id(text)
        if got != want:
            raise RuntimeError(f"tiny tokenizer layout broken: {text} has id {got}, expected {want}")
    return tok


def tokenizer_config(tok) -> dict:
    """tokenizer_config.json as Llasa ships it (PreTrainedTokenizerFast, Llama-3.2 chat template)."""
    decoder = {}
    for tid in range(BASE_VOCAB, T.vocab_size):
        content = tok.id_to_token(tid)
        special = tid < BASE_VOCAB + 256
        decoder[str(tid)] = {"content": content, "lstrip": False, "normalized": not special, "rstrip": False,
                             "single_word": False, "special": special}
    return {
        "added_tokens_decoder": decoder,
        "bos_token": "<|begin_of_text|>",
        "chat_template": (DATA / "llama3_2_chat_template.jinja").read_text(encoding="utf-8"),
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "pad_token": "<|eot_id|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def model_config(preset: str, **overrides) -> dict:
    """config.json of a Llasa checkpoint with the given preset's dimensions."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    dims = {**PRESETS[preset], **overrides}
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "head_dim": dims["head_dim"],
        "hidden_act": "silu",
        "hidden_size": dims["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": dims["intermediate_size"],
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": dims["num_attention_heads"],
        "num_hidden_layers": dims["num_hidden_layers"],
        "num_key_value_heads": dims["num_key_value_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0,
        "tie_word_embeddings": dims.get("tie_word_embeddings", True),
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0",
        "use_cache": True,
        "vocab_size": T.vocab_size,
    }


def weight_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor in a Llama checkpoint, in the order Hugging Face writes them."""
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    out = [("model.embed_tokens.weight", (cfg["vocab_size"], h))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "mlp.down_proj.weight", (h, i)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, q)),
            (p + "self_attn.q_proj.weight", (q, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
        ]
    out.append(("model.norm.weight", (h,)))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (cfg["vocab_size"], h)))
    return out


def _random_tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random weights scaled so activations and logits stay O(1) (distinct greedy choices)."""
    if name.endswith("norm.weight"):
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / np.sqrt(shape[1]))


def _to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (as torch does)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], dtype: str,
                      produce: Iterator[np.ndarray]) -> None:
    """Streams tensors into a safetensors file without holding them all in memory."""
    code, size = {"float32": ("F32", 4), "bfloat16": ("BF16", 2)}[dtype]
    header, offset = {}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for (name, shape), arr in zip(tensors, produce, strict=True):
            if arr.shape != shape:
                raise RuntimeError(f"{name}: produced shape {arr.shape}, declared {shape}")
            f.write((_to_bf16_bits(arr) if dtype == "bfloat16" else arr.astype(np.float32)).tobytes())


def make_tiny_llasa(out: str | Path, preset: str = "tiny-h64", seed: int = 0, dtype: str = "float32",
                    shards: int = 1, **overrides) -> Path:
    """Writes a random-weight Llasa checkpoint folder and returns its path.

    The folder is written under a temporary name and renamed at the end (nothing half-written is left).

    Args:
        out: destination folder; must not exist or be empty.
        preset: "tiny-h64", "tiny-h128" (small, real head layouts), "1b" or "3b" (real shapes).
        seed: RNG seed of the weights.
        dtype: "float32" or "bfloat16" (what real Llasa checkpoints store).
        shards: number of safetensors shards (>1 also writes model.safetensors.index.json).
        overrides: config fields to change (e.g. num_hidden_layers=4, tie_word_embeddings=False).
    """
    from llasa_rt.bundle.writer import staged_folder

    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', not {dtype!r}")
    cfg = model_config(preset, **overrides)
    with staged_folder(out, required="tokenizer_config.json") as tmp:
        _write_checkpoint(tmp, cfg, seed, dtype, shards)
    return Path(out)


def _write_checkpoint(out: Path, cfg: dict, seed: int, dtype: str, shards: int) -> None:
    cfg["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
        "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0.dev0"}, indent=2) + "\n")

    tensors = weight_shapes(cfg)
    rng = np.random.default_rng(seed)
    produce = (_random_tensor(rng, name, shape) for name, shape in tensors)
    if shards <= 1:
        write_safetensors(out / "model.safetensors", tensors, dtype, produce)
    else:
        per = -(-len(tensors) // shards)
        weight_map, total = {}, 0
        for s in range(shards):
            part = tensors[s * per:(s + 1) * per]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out / fname, part, dtype, (next(produce) for _ in part))
            for name, shape in part:
                weight_map[name] = fname
                total += int(np.prod(shape)) * (4 if dtype == "float32" else 2)
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")

    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": {"content": "<|begin_of_text|>", "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False},
        "eos_token": {"content": "<|eot_id|>", "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False},
        "pad_token": "<|eot_id|>"}, indent=2) + "\n")
