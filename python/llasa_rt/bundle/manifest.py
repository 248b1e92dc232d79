"""The typed manifest of a bundle: `manifest.json` as dataclasses, validated field by field on load.

One schema serves the reader (`Bundle.open`) and every writer (export, codec export, voices, verifiers):
each section is a dataclass with `to_json` / `from_json`, and `from_json` refuses a value of the wrong type
or range with a one-line `BundleError` naming the field. File names are checked to stay inside the bundle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import BundleError, InputError
from ..layout import TokenLayout
from ..options import GenerationOptions
from .fields import FIX, Fields, check_relative

FORMAT_NAME = "llasa-rt-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "tensorrt")  # the `backend` a graph is built for
PRECISIONS = ("fp32", "fp16", "int8", "int4")
KV_DTYPES = {"float32": 4, "float16": 2}  # KV cache element type -> bytes
MAX_CONTEXT = 131072
LM_GRAPH = "lm"
LM_PORTABLE_GRAPH = "lm.portable"  # the standard-operator LM graph (export --target portable)
PORTABLE_FLAVOUR = "portable"  # details.flavour of a standard-operator LM graph
CODEC_GRAPH = "codec_decoder"
# details.flavour of an ONNX Runtime LM graph: one graph with GroupQueryAttention (the default when absent), or
# `num_layers + 1` segment graphs (details.segments, in order) with llasa-rt's attention kernel between them.
LM_FUSED, LM_LAYERED = "ort-cpu", "ort-cpu-layered"


def is_lm_graph(name: str) -> bool:
    """An LM graph entry: "lm" (ONNX Runtime flavour) or "lm.<variant>" (portable graph, TensorRT plan, ...)."""
    return name == LM_GRAPH or name.startswith(LM_GRAPH + ".")


@dataclass
class ModelFacts:
    """The LM's shape, as the exporter read it from the checkpoint."""

    num_layers: int  # decoder layers
    hidden_size: int  # model width
    num_attention_heads: int  # query heads
    num_kv_heads: int  # key/value heads (grouped-query attention)
    head_dim: int  # features per head
    intermediate_size: int  # MLP width
    vocab_size: int  # embedding rows
    max_context: int  # longest prompt + speech the graph serves
    kv_dtype: str  # "float32" or "float16": KV cache element type the graph reads and writes
    rms_norm_eps: float  # RMSNorm epsilon
    tied_embeddings: bool  # the head shares the embedding table
    embed_block_size: int | None = None  # quantised embeddings: block size

    def kv_bytes_per_slot(self) -> int:
        """Bytes of K and V cache one candidate slot takes at full context."""
        return 2 * self.num_layers * self.num_kv_heads * self.max_context * self.head_dim * KV_DTYPES[self.kv_dtype]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["embed_block_size"] is None:
            del d["embed_block_size"]
        return d

    @classmethod
    def from_json(cls, f: Fields) -> ModelFacts:
        facts = cls(
            num_layers=f.integer("num_layers", 1, 1024), hidden_size=f.integer("hidden_size", 1, 1 << 20),
            num_attention_heads=f.integer("num_attention_heads", 1, 4096),
            num_kv_heads=f.integer("num_kv_heads", 1, 4096), head_dim=f.integer("head_dim", 1, 4096),
            intermediate_size=f.integer("intermediate_size", 1, 1 << 22),
            vocab_size=f.integer("vocab_size", 1, 1 << 24), max_context=f.integer("max_context", 16, MAX_CONTEXT),
            kv_dtype=f.text("kv_dtype", choices=tuple(KV_DTYPES)), rms_norm_eps=f.number("rms_norm_eps", 0.0, 1.0),
            tied_embeddings=f.flag("tied_embeddings"),
            embed_block_size=f.integer("embed_block_size", 1, 1 << 16) if f.has("embed_block_size") else None,
        )
        if facts.num_attention_heads % facts.num_kv_heads:
            raise f.fail("num_kv_heads", f"({facts.num_kv_heads}) must divide num_attention_heads "
                                         f"({facts.num_attention_heads})")
        return facts


@dataclass
class AudioFacts:
    """The codec's audio: 16 kHz, 320 samples (one code) per hop for X-Codec2."""

    sample_rate: int  # samples per second
    hop_length: int  # samples per code
    tokens_per_second: int  # codes per second

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> AudioFacts:
        return cls(sample_rate=f.integer("sample_rate", 1000, 384000), hop_length=f.integer("hop_length", 1, 1 << 16),
                   tokens_per_second=f.integer("tokens_per_second", 1, 1000))


def tokens_to_json(t: TokenLayout) -> dict[str, Any]:
    return {"speech_base_id": t.speech_base_id, "speech_count": t.speech_count, "start_id": t.start_id,
            "end_id": t.end_id, "vocab_size": t.vocab_size, "end_row": t.end_row, "head_rows": t.head_rows_json(),
            "markers": dict(t.markers)}


def tokens_from_json(f: Fields) -> TokenLayout:
    big = 1 << 24
    markers = f.obj("markers", {})
    layout = TokenLayout(
        speech_base_id=f.integer("speech_base_id", 0, big), speech_count=f.integer("speech_count", 1, big),
        start_id=f.integer("start_id", 0, big), end_id=f.integer("end_id", 0, big),
        vocab_size=f.integer("vocab_size", 1, big),
        markers={k: markers.integer(k, 0, big) for k in markers.data},
    )
    if layout.speech_base_id + layout.speech_count > layout.vocab_size:
        raise f.fail("speech_count", f"({layout.speech_count}) from speech_base_id {layout.speech_base_id} does not "
                                     f"fit vocab_size {layout.vocab_size}")
    if f.has("end_row") and f.integer("end_row", 0, big) != layout.end_row:
        raise f.fail("end_row", f"must be speech_count ({layout.end_row})")
    if f.has("head_rows") and f.data["head_rows"] != layout.head_rows_json():
        raise f.fail("head_rows", f"must be {layout.head_rows_json()} (speech codes, then END)")
    return layout


@dataclass
class PromptTemplate:
    """The checkpoint's chat template rendered around the text at export (the runtime never runs Jinja)."""

    prefix: str  # rendered template before the text
    suffix: str  # rendered template after the text (ends with <|SPEECH_GENERATION_START|>)
    date: str  # the date pinned into the template
    template_sha256: str = ""  # hash of the template it was rendered from
    voice_text_separator: str = " "  # voice cloning: "<reference transcript><sep><target text>"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> PromptTemplate:
        return cls(prefix=f.text("prefix"), suffix=f.text("suffix"), date=f.text("date", ""),
                   template_sha256=f.text("template_sha256", ""),
                   voice_text_separator=f.text("voice_text_separator", " "))


_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "min_new_tokens", "max_new_tokens")


def generation_to_json(g: GenerationOptions, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(g, k) for k in _SAMPLING if getattr(g, k) is not None}
    if source:
        out["source"] = source
    return out


def generation_from_json(f: Fields) -> tuple[GenerationOptions, str]:
    values = {k: f.data[k] for k in _SAMPLING if f.has(k)}
    try:
        return GenerationOptions(**values), f.text("source", "")
    except InputError as e:
        raise BundleError(f"manifest.json: generation: {e}; {FIX}") from None


@dataclass
class GraphEntry:
    """One graph of a bundle and how it was made."""

    files: dict[str, str]  # file name (relative to the bundle) -> sha256; the first is the graph itself
    backend: str  # "onnxruntime", "onnxruntime-cuda" or "tensorrt"
    precision: str  # "fp32", "fp16", "int8" or "int4"
    opset: int  # ONNX opset of the default domain (0 for a TensorRT plan)
    details: dict[str, Any] = field(default_factory=dict)  # graph-specific facts (flavour, io names, ...)

    @property
    def path_name(self) -> str:
        """Name of the graph file itself."""
        return next(iter(self.files))

    @property
    def layered(self) -> bool:
        """An LM cut into segment graphs around llasa-rt's attention kernel (details.flavour LM_LAYERED)."""
        return self.details.get("flavour") == LM_LAYERED

    @property
    def segments(self) -> list[str]:
        """A layered LM's segment files, in order (checked on load against files and model.num_layers)."""
        return list(self.details.get("segments", [])) if self.layered else []

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "backend": self.backend, "precision": self.precision, "opset": self.opset,
                **({"details": self.details} if self.details else {})}

    @classmethod
    def from_json(cls, f: Fields) -> GraphEntry:
        return cls(files=f.files("files"), backend=f.text("backend", choices=BACKENDS),
                   precision=f.text("precision", choices=PRECISIONS), opset=f.integer("opset", 0, 100),
                   details=f.mapping("details"))


def _check_portable(details: Fields, entry: GraphEntry, model: ModelFacts) -> None:
    """A portable LM entry: onnx graph, standard opset, its KV dtype and the KV inputs' static capacity."""
    if entry.backend not in ("onnxruntime", "onnxruntime-cuda"):
        raise details.fail("flavour", f"is {PORTABLE_FLAVOUR!r} (an ONNX graph) but backend is {entry.backend!r}")
    if entry.opset < 13:
        raise details.fail("flavour", f"is {PORTABLE_FLAVOUR!r}, which needs opset >= 13, but opset is {entry.opset}")
    details.text("kv_dtype", choices=tuple(KV_DTYPES))
    capacity = details.integer("kv_capacity", 16, MAX_CONTEXT)
    if capacity != model.max_context:
        raise details.fail("kv_capacity", f"({capacity}) differs from model.max_context ({model.max_context})")


EMBEDDING_SOURCES = ("recording", "codes")  # what a voice's reference embedding was computed from
MAX_EMBEDDING_DIM = 1 << 16


@dataclass
class VoiceEmbedding:
    """A voice's reference embedding for one speaker verifier (cosine similarity is measured against it)."""

    vector: list[float]  # the embedding (L2-normalised)
    verifier_sha256: str  # sha256 of the verifier graph that made it: a replaced graph makes it stale
    source: str  # "recording" (the voice's own recording, at `voice add`) or "codes" (its codes, decoded)

    def to_json(self) -> dict[str, Any]:
        return {"vector": self.vector, "verifier_sha256": self.verifier_sha256, "source": self.source}

    @classmethod
    def from_json(cls, f: Fields) -> VoiceEmbedding:
        vector = f.data.get("vector")
        if (not isinstance(vector, list) or not 1 <= len(vector) <= MAX_EMBEDDING_DIM
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in vector)):
            raise f.fail("vector", f"must be a list of 1 to {MAX_EMBEDDING_DIM} finite numbers")
        return cls(vector=[float(v) for v in vector], verifier_sha256=f.sha256("verifier_sha256"),
                   source=f.text("source", choices=EMBEDDING_SOURCES))


@dataclass
class VoiceEntry:
    """A reference voice: `voices/<name>.npz` (codes + transcript) and what it was made from."""

    file: str  # relative path of the .npz
    sha256: str  # of the .npz
    transcript: str  # what is said in the recording
    num_codes: int  # X-Codec2 codes (50 per second)
    seconds: float  # length of the (possibly cut) recording
    source_sha256: str = ""  # of the recording it was encoded from
    sample_rate_in: int = 0  # the recording's own rate
    resampled: bool = False  # resampled to 16 kHz
    truncated: bool = False  # cut to the 10 s limit
    embeddings: dict[str, VoiceEmbedding] = field(default_factory=dict)  # speaker verifier name -> embedding

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["embeddings"] = {k: e.to_json() for k, e in self.embeddings.items()}
        if not d["embeddings"]:
            del d["embeddings"]  # bundles without speaker verifiers keep the manifest they always had
        return d

    @classmethod
    def from_json(cls, f: Fields) -> VoiceEntry:
        embeddings = f.obj("embeddings", {})
        return cls(file=f.file("file"), sha256=f.sha256("sha256"), transcript=f.text("transcript"),
                   num_codes=f.integer("num_codes", 1, 1 << 20), seconds=f.number("seconds", 0.0, 1e6),
                   source_sha256=f.text("source_sha256", ""), sample_rate_in=f.integer("sample_rate_in", 0, 1 << 24, 0),
                   resampled=f.flag("resampled", False), truncated=f.flag("truncated", False),
                   embeddings={k: VoiceEmbedding.from_json(embeddings.obj(k)) for k in embeddings.data})


@dataclass
class VerifierEntry:
    """A verifier: its graph `verifiers/<name>.onnx` (or model files) and its contract (kind, front end, ...).

    `details` holds the kind's settings (sample_rate, front_end, batching, min_samples, vocabulary, ...; see
    docs/verifiers.md); `llasa_rt.verifiers` validates them when the verifier is loaded. `files` lists further
    files the verifier needs (e.g. an alignment verifier's acoustic model) with their sha256.
    """

    file: str  # relative path of the graph (or main model file)
    sha256: str  # of that file
    kind: str  # what it scores: "speaker", "asr", "score", "alignment"
    details: dict[str, Any] = field(default_factory=dict)  # sample rate, front-end settings, ...
    files: dict[str, str] = field(default_factory=dict)  # further files (relative path -> sha256)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "kind": self.kind, **self.details,
                **({"files": self.files} if self.files else {})}

    @classmethod
    def from_json(cls, f: Fields) -> VerifierEntry:
        rest = {k: v for k, v in f.data.items() if k not in ("file", "sha256", "kind", "files")}
        return cls(file=f.file("file"), sha256=f.sha256("sha256"), kind=f.text("kind"), details=rest,
                   files=f.files("files") if f.has("files") else {})


def _check_lm_flavour(entry: GraphEntry, model: ModelFacts, f: Fields) -> None:
    """A layered LM names num_layers + 1 segment files, all among its files; a fused one names none."""
    flavour = entry.details.get("flavour", LM_FUSED)
    if entry.backend != "onnxruntime":
        return
    if flavour not in (LM_FUSED, LM_LAYERED):
        raise f.fail("details.flavour", f"must be {LM_FUSED!r} or {LM_LAYERED!r}, not {flavour!r}")
    segments = entry.details.get("segments")
    prefill = entry.details.get("prefill")
    if prefill is not None and (flavour != LM_FUSED or not isinstance(prefill, str) or prefill not in entry.files
                                or prefill == entry.path_name):
        raise f.fail("details.prefill", f"must name the prefill graph, one of the {LM_FUSED!r} LM's files other "
                                        "than its first")
    if flavour == LM_FUSED:
        if segments is not None:
            raise f.fail("details.segments", f"belongs to a {LM_LAYERED!r} LM, but the flavour is {flavour!r}")
        return
    if (not isinstance(segments, list) or len(segments) != model.num_layers + 1
            or not all(isinstance(s, str) and s in entry.files for s in segments)):
        raise f.fail("details.segments", f"must list the {model.num_layers + 1} segment files (model.num_layers + 1) "
                                         "of the layered LM, each one of its files")
    if entry.path_name != segments[0]:
        raise f.fail("files", f"must start with the first segment {segments[0]!r}")


@dataclass
class Manifest:
    """The parsed, checked `manifest.json`. Sections mirror the JSON keys; a codec-only bundle has no LM ones."""

    llasa_rt_version: str  # llasa-rt version that wrote the bundle
    graphs: dict[str, GraphEntry]  # "lm", "codec_decoder", ... -> entry
    audio: AudioFacts  # the codec's audio facts
    model: ModelFacts | None = None  # LM shape (bundles with an LM)
    tokens: TokenLayout | None = None  # token layout (bundles with an LM)
    prompt: PromptTemplate | None = None  # rendered chat template (bundles with an LM)
    generation: GenerationOptions = field(default_factory=GenerationOptions)  # default sampling options
    generation_source: str = ""  # where the defaults come from
    sources: dict[str, Any] = field(default_factory=dict)  # where each part came from (ids, revisions, hashes)
    voices: dict[str, VoiceEntry] = field(default_factory=dict)  # name -> voice
    verifiers: dict[str, VerifierEntry] = field(default_factory=dict)  # name -> verifier
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
            "model": self.model.to_json() if self.model else {},
            "audio": self.audio.to_json(),
            "tokens": tokens_to_json(self.tokens) if self.tokens else {},
            "prompt": self.prompt.to_json() if self.prompt else {},
            "generation": generation_to_json(self.generation, self.generation_source),
            "voices": {k: v.to_json() for k, v in self.voices.items()},
            "verifiers": {k: v.to_json() for k, v in self.verifiers.items()},
        }

    @classmethod
    def from_json(cls, d: Any) -> Manifest:
        top = Fields(d, "")
        if d.get("format") != FORMAT_NAME:
            raise BundleError(f"manifest.json is not a llasa-rt manifest (format={d.get('format')!r})")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is not supported by this llasa-rt (reads version {FORMAT_VERSION}); "
                "re-export the bundle with this version of llasa-rt"
            )
        graphs_f = top.obj("graphs")
        if not graphs_f.data:
            raise BundleError(f"manifest.json: graphs is empty (a bundle holds at least one graph); {FIX}")
        graphs = {name: GraphEntry.from_json(graphs_f.obj(name)) for name in graphs_f.data}
        has_lm = any(is_lm_graph(name) for name in graphs)

        def section(key: str, parse: Any) -> Any:
            part = top.obj(key, {})
            if not part.data:
                if has_lm:
                    raise top.fail(key, "is missing or empty, but the bundle has an LM graph")
                return None
            return parse(part)

        generation, source = generation_from_json(top.obj("generation", {}))
        voices_f, verifiers_f, files_f = top.obj("voices", {}), top.obj("verifiers", {}), top.obj("files", {})
        for name in files_f.data:
            check_relative(name, "files")
            files_f.sha256(name)
        manifest = cls(
            format_version=version,
            llasa_rt_version=top.text("llasa_rt_version"),
            graphs=graphs,
            audio=AudioFacts.from_json(top.obj("audio")),
            model=section("model", ModelFacts.from_json),
            tokens=section("tokens", tokens_from_json),
            prompt=section("prompt", PromptTemplate.from_json),
            generation=generation,
            generation_source=source,
            sources=top.mapping("sources"),
            voices={k: VoiceEntry.from_json(voices_f.obj(k)) for k in voices_f.data},
            verifiers={k: VerifierEntry.from_json(verifiers_f.obj(k)) for k in verifiers_f.data},
            files=dict(files_f.data),
        )
        if manifest.model:
            for name, entry in graphs.items():
                if is_lm_graph(name) and entry.details.get("flavour") != PORTABLE_FLAVOUR:
                    _check_lm_flavour(entry, manifest.model, graphs_f.obj(name))
        if manifest.model and manifest.tokens and manifest.model.vocab_size != manifest.tokens.vocab_size:
            raise top.fail("model.vocab_size", f"({manifest.model.vocab_size}) differs from tokens.vocab_size "
                                               f"({manifest.tokens.vocab_size})")
        for name, entry in graphs.items():
            if not (manifest.model and is_lm_graph(name) and entry.details):
                continue
            details = graphs_f.obj(name).obj("details")
            if details.has("kv_dtype"):  # an LM entry's own KV dtype (Manifest.lm_model)
                details.text("kv_dtype", choices=tuple(KV_DTYPES))
            if entry.details.get("flavour") == PORTABLE_FLAVOUR:
                _check_portable(details, entry, manifest.model)
        return manifest

    def lm_graphs(self) -> list[str]:
        """Names of the LM graph entries, in manifest order."""
        return [name for name in self.graphs if is_lm_graph(name)]

    def default_lm(self) -> str:
        """The LM entry a bundle folder runs: "lm" when present, else the first LM entry."""
        names = self.lm_graphs()
        if not names:
            self.lm_parts()  # raises: no LM
        return LM_GRAPH if LM_GRAPH in names else names[0]

    def lm_for_file(self, file_name: str) -> str | None:
        """The LM entry whose graph file is `file_name` (relative to the bundle), or None."""
        for name in self.lm_graphs():
            if self.graphs[name].path_name == file_name:
                return name
        return None

    def lm_model(self, graph: str) -> ModelFacts:
        """The model facts of LM entry `graph`: its own KV dtype (details.kv_dtype) when it records one."""
        model, _, _ = self.lm_parts()
        kv_dtype = self.graphs[graph].details.get("kv_dtype", model.kv_dtype)
        return model if kv_dtype == model.kv_dtype else replace(model, kv_dtype=kv_dtype)

    def all_files(self) -> dict[str, str]:
        """Every file the manifest names (graphs, tokenizer, voices, verifiers) -> its sha256."""
        out: dict[str, str] = {}
        for g in self.graphs.values():
            out.update(g.files)
        out.update(self.files)
        for entries in (self.voices, self.verifiers):
            for entry in entries.values():
                out[entry.file] = entry.sha256
        for verifier in self.verifiers.values():
            out.update(verifier.files)
        return out

    def lm_parts(self) -> tuple[ModelFacts, TokenLayout, PromptTemplate]:
        """The LM sections, for code that needs them all (raises if the bundle has no LM)."""
        if self.model is None or self.tokens is None or self.prompt is None:
            raise BundleError("this bundle has no LM (it holds only " + ", ".join(self.graphs) + "); export one with "
                              "`llasa-rt export --model ...`")
        return self.model, self.tokens, self.prompt

