"""Engine bundles: a folder with `manifest.json` that says everything the runtime needs. One module, one schema.

Layout::

    BUNDLE/
      manifest.json          what is in the bundle (`manifest.Manifest`, validated on load)
      lm.onnx, lm.onnx.data  the Llasa LM graph (+ external weights), ONNX Runtime flavour
      lm.portable.onnx (+ .data)  the LM as standard ONNX operators (export --target portable|both)
      tokenizer.json         the Hugging Face tokenizer of the checkpoint
      codec_decoder.onnx     X-Codec2 decoder (when exported with --codec)
      voices/<name>.npz      reference voices (codes int32, transcript; speaker embeddings in the manifest)
      verifiers/<name>.onnx  verifier graphs (see docs/verifiers.md)

- `manifest`: the typed schema (dataclasses with validation on load);
- `reader`: `Bundle.open` (format, presence and sha256 of every file, every path inside the bundle);
- `writer`: staged (atomic) bundle folders, the manifest writer, overwrite and interruption rules;
- `voices`: reading, storing and removing reference voices.

Nothing here imports torch; exporters produce graph files and fill these dataclasses.
"""

from __future__ import annotations

from .manifest import (
    BACKENDS,
    CODEC_GRAPH,
    FORMAT_NAME,
    FORMAT_VERSION,
    LM_GRAPH,
    LM_PORTABLE_GRAPH,
    MANIFEST_NAME,
    PORTABLE_FLAVOUR,
    PRECISIONS,
    AudioFacts,
    GraphEntry,
    Manifest,
    ModelFacts,
    PromptTemplate,
    VerifierEntry,
    VoiceEmbedding,
    VoiceEntry,
    is_lm_graph,
)
from .reader import Bundle, inside, sha256_file

__all__ = [
    "BACKENDS",
    "CODEC_GRAPH",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LM_GRAPH",
    "LM_PORTABLE_GRAPH",
    "MANIFEST_NAME",
    "PORTABLE_FLAVOUR",
    "PRECISIONS",
    "AudioFacts",
    "Bundle",
    "GraphEntry",
    "Manifest",
    "ModelFacts",
    "PromptTemplate",
    "VerifierEntry",
    "VoiceEmbedding",
    "VoiceEntry",
    "inside",
    "is_lm_graph",
    "sha256_file",
]
