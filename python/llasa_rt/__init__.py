"""llasa-rt: Llasa text-to-speech on CPUs and edge devices.

The runtime path (`import llasa_rt`) needs only numpy, onnxruntime, tokenizers and soundfile; it never
imports torch or transformers. Exporters live in `llasa_rt.export` (extra `export`).
"""

from __future__ import annotations

from ._version import __version__
from .errors import BundleError, CheckpointError, InputError, LlasaError

__all__ = ["BundleError", "CheckpointError", "InputError", "LlasaError", "__version__"]
