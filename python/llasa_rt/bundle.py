"""Engine bundles: a folder with `manifest.json` that says everything the runtime needs.

A bundle is written by `llasa_rt.engines.bundle_writer` (atomically: a temporary folder renamed at
the end) and read here. Loading checks the format version, that every file the manifest names is
present, and (unless ``verify="fast"``) the sha256 of every file. Nothing here imports torch.

Layout::

    BUNDLE/
      manifest.json          what is in the bundle (see `Manifest`)
      lm.onnx, lm.onnx.data  the Llasa LM graph (+ external weights)
      tokenizer.json         the Hugging Face tokenizer of the checkpoint
      codec_decoder.onnx     X-Codec2 decoder (when exported with --codec)
      voices/<name>.npz      reference voices (codes int32, transcript)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError

FORMAT_NAME = "llasa-rt-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# Llasa's token layout (shared/research/llasa-spec.md §1.2): ids are fixed by how the checkpoint was built.
SPEECH_BASE_ID = 128264
SPEECH_COUNT = 65536
SPEECH_START_ID = 128260
SPEECH_END_ID = 128261
VOCAB_SIZE = 193800
MARKER_TOKENS = {
    "<|TEXT_GENERATION_START|>": 128256,
    "<|TEXT_GENERATION_END|>": 128257,
    "<|TEXT_UNDERSTANDING_START|>": 128258,
    "<|TEXT_UNDERSTANDING_END|>": 128259,
    "<|SPEECH_GENERATION_START|>": 128260,
    "<|SPEECH_GENERATION_END|>": 128261,
    "<|SPEECH_UNDERSTANDING_START|>": 128262,
    "<|SPEECH_UNDERSTANDING_END|>": 128263,
}
# Rows of the exported LM head: rows 0..65535 are <|s_0|>..<|s_65535|>, row 65536 is END.
HEAD_ROWS = SPEECH_COUNT + 1
END_ROW = SPEECH_COUNT


def head_token_ids() -> np.ndarray:
    """Vocabulary id of each head row: <|s_0|>..<|s_65535|> (128264..193799), then END (128261)."""
    return np.concatenate([np.arange(SPEECH_BASE_ID, SPEECH_BASE_ID + SPEECH_COUNT), [SPEECH_END_ID]]).astype(np.int64)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Returns the hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class GraphEntry:
    """One ONNX graph of a bundle and how it was made."""

    files: dict[str, str]  # file name (relative to the bundle) -> sha256; the first is the graph itself
    backend: str  # "onnxruntime" or "tensorrt"
    precision: str  # "fp32", "fp16", "int8" or "int4"
    opset: int  # ONNX opset of the default domain
    details: dict[str, Any] = field(default_factory=dict)  # graph-specific facts (flavour, io names, ...)

    @property
    def path_name(self) -> str:
        """Name of the graph file itself."""
        return next(iter(self.files))

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "backend": self.backend, "precision": self.precision, "opset": self.opset,
                **({"details": self.details} if self.details else {})}

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> GraphEntry:
        try:
            return cls(files=dict(d["files"]), backend=str(d["backend"]), precision=str(d["precision"]),
                       opset=int(d["opset"]), details=dict(d.get("details", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"manifest.json: graph '{name}' is malformed ({e!r}); re-export the bundle") from e


@dataclass
class Manifest:
    """The parsed `manifest.json` of a bundle. Field names mirror the JSON keys."""

    llasa_rt_version: str
    graphs: dict[str, GraphEntry]
    model: dict[str, Any]  # num_layers, num_kv_heads, head_dim, hidden_size, max_context, kv_dtype, ...
    audio: dict[str, Any]  # sample_rate, hop_length, tokens_per_second
    tokens: dict[str, Any]  # speech_base_id, speech_count, start_id, end_id, head_rows, markers, vocab_size
    prompt: dict[str, Any]  # date, prefix, suffix (the chat template rendered around the text)
    generation: dict[str, Any]  # default sampling options
    sources: dict[str, Any] = field(default_factory=dict)  # where each part came from (ids, revisions, hashes)
    voices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {file, sha256, transcript, ...}
    verifiers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {file, sha256, kind, ...}
    files: dict[str, str] = field(default_factory=dict)  # other files (tokenizer.json, ...) -> sha256
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "llasa_rt_version": self.llasa_rt_version,
            "sources": self.sources,
            "graphs": {k: g.to_json() for k, g in self.graphs.items()},
            "files": self.files,
            "model": self.model,
            "audio": self.audio,
            "tokens": self.tokens,
            "prompt": self.prompt,
            "generation": self.generation,
            "voices": self.voices,
            "verifiers": self.verifiers,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT_NAME:
            raise BundleError(f"manifest.json is not a llasa-rt manifest (format={d.get('format')!r})")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is not supported by this llasa-rt (reads version {FORMAT_VERSION}); "
                "re-export the bundle with this version of llasa-rt"
            )
        try:
            return cls(
                format_version=version,
                llasa_rt_version=str(d["llasa_rt_version"]),
                graphs={k: GraphEntry.from_json(k, g) for k, g in d["graphs"].items()},
                model=dict(d["model"]),
                audio=dict(d["audio"]),
                tokens=dict(d["tokens"]),
                prompt=dict(d["prompt"]),
                generation=dict(d["generation"]),
                sources=dict(d.get("sources", {})),
                voices=dict(d.get("voices", {})),
                verifiers=dict(d.get("verifiers", {})),
                files=dict(d.get("files", {})),
            )
        except KeyError as e:
            raise BundleError(f"manifest.json lacks the field {e.args[0]!r}; re-export the bundle") from e

    def all_files(self) -> dict[str, str]:
        """Every file the manifest names (graphs, tokenizer, voices, verifiers) -> its sha256."""
        out: dict[str, str] = {}
        for g in self.graphs.values():
            out.update(g.files)
        out.update(self.files)
        for kind in (self.voices, self.verifiers):
            for entry in kind.values():
                out[entry["file"]] = entry["sha256"]
        return out


class Bundle:
    """An opened engine bundle: its folder and its checked manifest."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path, verify: str = "full") -> Bundle:
        """Opens and checks a bundle folder.

        Args:
            path: the bundle folder.
            verify: "full" checks every file's sha256 (a few seconds per GB); "fast" checks only that
                every file is present with a plausible size.

        Raises:
            BundleError: with what is wrong and how to fix it.
        """
        if verify not in ("full", "fast"):
            raise BundleError(f"verify must be 'full' or 'fast', not {verify!r}")
        root = Path(path)
        if not root.exists():
            raise BundleError(f"bundle '{root}' does not exist; create one with `llasa-rt export --out {root} ...`")
        if not root.is_dir():
            raise BundleError(f"bundle '{root}' is a file, not a bundle folder; pass the folder that holds "
                              "manifest.json")
        mpath = root / MANIFEST_NAME
        if not mpath.is_file():
            raise BundleError(f"'{root}' has no {MANIFEST_NAME}: it is not a llasa-rt bundle (or its export did not "
                              "finish); re-run `llasa-rt export`")
        try:
            raw = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"{mpath} is unreadable or not JSON ({e}); re-export the bundle") from e
        if not isinstance(raw, dict):
            raise BundleError(f"{mpath} does not hold a JSON object; re-export the bundle")
        manifest = Manifest.from_json(raw)
        bundle = cls(root, manifest)
        bundle.check_files(verify)
        return bundle

    def check_files(self, verify: str = "full") -> None:
        """Checks that every file the manifest names is present (and, with verify="full", its sha256)."""
        for name, digest in self.manifest.all_files().items():
            p = self.root / name
            if not p.is_file():
                raise BundleError(f"bundle '{self.root}' is missing {name}; re-export the bundle")
            if verify == "full" and sha256_file(p) != digest:
                raise BundleError(f"bundle '{self.root}': {name} does not match its sha256 in manifest.json "
                                  "(corrupt or modified); re-export the bundle or copy it again")

    def path(self, name: str) -> Path:
        """Absolute path of a file in the bundle."""
        return self.root / name

    def graph(self, name: str) -> GraphEntry:
        """The manifest entry of graph `name` ("lm", "codec_decoder", ...)."""
        try:
            return self.manifest.graphs[name]
        except KeyError:
            have = ", ".join(sorted(self.manifest.graphs)) or "none"
            hint = " (export it with --codec)" if name == "codec_decoder" else ""
            raise BundleError(f"bundle '{self.root}' has no '{name}' graph{hint}; it has: {have}") from None
