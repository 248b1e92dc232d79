"""Finding, downloading and checking Hugging Face checkpoints; reading their weights lazily.

A `--model` argument is either a local folder or a hub id ("HKUSTAudio/Llasa-1B"). A hub id is
downloaded once into the Hugging Face cache (with progress bars); offline, the error says to pass a
local folder instead.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.errors import CheckpointError
from llasa_rt.layout import LLASA_TOKENS

T = LLASA_TOKENS  # Llasa's token layout

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
LM_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "*.safetensors", "model.safetensors.index.json"]


@dataclass
class Source:
    """Where a checkpoint came from: the id the user gave, the local folder, and the hub revision."""

    id: str
    path: Path
    revision: str | None  # hub commit, None for a local folder


def resolve(model: str, allow_patterns: list[str], what: str = "model",
            example: str = "HKUSTAudio/Llasa-1B") -> Source:
    """Returns the local folder of `model`: an existing folder, or a hub id downloaded (with progress bars)
    into the Hugging Face cache. `what` names the option in messages (--model, --codec)."""
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"--{what} '{model}' is a file; pass the checkpoint folder (with config.json)")
        return Source(id=str(p.resolve()), path=p.resolve(), revision=None)
    if not HUB_ID.match(model):
        raise CheckpointError(f"--{what} '{model}' is neither an existing folder nor a hub id like '{example}'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise CheckpointError("downloading from the hub needs huggingface_hub: pip install 'llasa-rt[export]', "
                              f"or pass a local folder: --{what} /path/to/folder") from e
    print(f"downloading {model} from the Hugging Face hub (once; cached afterwards) ...", file=sys.stderr, flush=True)
    try:
        folder = Path(snapshot_download(repo_id=model, allow_patterns=allow_patterns))
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(
            f"could not get '{model}' from the Hugging Face hub ({type(e).__name__}: {first}). If this machine is "
            f"offline, download the checkpoint elsewhere and pass its local folder: --{what} /path/to/folder"
        ) from e
    # Snapshot folders are named after the commit they hold.
    revision = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    return Source(id=model, path=folder, revision=revision)


@dataclass
class LlasaCheckpoint:
    """A checked Llasa LM checkpoint folder."""

    source: Source
    config: dict[str, Any]
    weight_files: list[Path]

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def head_dim(self) -> int:
        c = self.config
        return int(c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"])

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))


def read_json(path: Path, what: str, required: bool = True) -> dict[str, Any]:
    """A JSON object from a checkpoint folder; a missing file is an error (or {} when not `required`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return {}
        raise CheckpointError(f"{path.parent} has no {path.name}: it is not a Hugging Face {what} checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is unreadable or not JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def check_llasa(source: Source) -> LlasaCheckpoint:
    """Checks that a folder is a Llasa LM checkpoint (Llama + Llasa's speech-token layout)."""
    root = source.path
    cfg = read_json(root / "config.json", "Llasa")
    arch = cfg.get("architectures") or []
    if cfg.get("model_type") != "llama" or "LlamaForCausalLM" not in arch:
        raise CheckpointError(f"{root} is not a Llasa checkpoint: config.json says model_type="
                              f"{cfg.get('model_type')!r}, architectures={arch} (Llasa is LlamaForCausalLM)")
    need = T.speech_base_id + T.speech_count
    if int(cfg.get("vocab_size", 0)) < need:
        raise CheckpointError(f"{root} is not a Llasa checkpoint: vocab_size {cfg.get('vocab_size')} < {need} "
                              f"(no room for the {T.speech_count:,} speech tokens <|s_N|> at {T.speech_base_id}+N)")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if key not in cfg:
            raise CheckpointError(f"{root}/config.json lacks {key}")
    if cfg.get("hidden_act", "silu") != "silu" or cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise CheckpointError(f"{root}: unsupported Llama variant (hidden_act={cfg.get('hidden_act')}, "
                              f"attention_bias={cfg.get('attention_bias')}, mlp_bias={cfg.get('mlp_bias')})")
    check_tokenizer_layout(root / "tokenizer.json")

    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "Llasa").get("weight_map", {})
        files = sorted({root / f for f in weight_map.values()})
    else:
        files = sorted(root.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{root} has no *.safetensors weights (only safetensors checkpoints are supported)")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{root} is incomplete: missing {', '.join(missing)}")
    return LlasaCheckpoint(source=source, config=cfg, weight_files=files)


def check_tokenizer_layout(path: Path) -> None:
    """Checks that tokenizer.json has Llasa's special and speech tokens at their fixed ids."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no tokenizer.json (Llasa checkpoints ship one next to config.json)")
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} cannot be loaded by the tokenizers library ({e})") from e
    last = T.speech_count - 1
    want = {**T.markers, "<|s_0|>": T.speech_base_id, f"<|s_{last}|>": T.speech_base_id + last,
            "<|s_12345|>": T.speech_base_id + 12345, "<|begin_of_text|>": 128000, "<|eot_id|>": 128009,
            "<|start_header_id|>": 128006, "<|end_header_id|>": 128007}
    bad = [(t, i, tok.token_to_id(t)) for t, i in want.items() if tok.token_to_id(t) != i]
    if bad:
        shown = "; ".join(f"{t} is {got} (Llasa: {i})" for t, i, got in bad[:4])
        raise CheckpointError(f"{path} does not have Llasa's token layout: {shown}. Is this a Llasa checkpoint "
                              f"(speech tokens <|s_N|> = {T.speech_base_id}+N, END {T.end_id}, START {T.start_id})?")


class WeightReader:
    """Reads tensors of a (possibly sharded) safetensors checkpoint one at a time, as float32 numpy."""

    def __init__(self, files: list[Path]) -> None:
        from safetensors import safe_open

        self._handles = [safe_open(str(f), framework="pt") for f in files]
        self._where: dict[str, Any] = {}
        for h in self._handles:
            for k in h.keys():
                self._where[k] = h

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        """Tensor `name` converted to float32 (bf16/fp16 are widened exactly)."""
        h = self._where.get(name)
        if h is None:
            raise CheckpointError(f"the checkpoint has no tensor {name!r} (is it a complete Llasa checkpoint?)")
        t = h.get_tensor(name)
        return t.float().numpy()

    def get_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` of a 2-D tensor, as float32, without widening the whole tensor."""
        h = self._where.get(name)
        if h is None:
            raise CheckpointError(f"the checkpoint has no tensor {name!r} (is it a complete Llasa checkpoint?)")
        import torch

        t = h.get_tensor(name)
        return t.index_select(0, torch.as_tensor(rows, dtype=torch.long)).float().numpy()
