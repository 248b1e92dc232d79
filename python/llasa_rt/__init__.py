"""llasa-rt: Llasa text-to-speech on CPUs and edge devices.

    import llasa_rt
    engine = llasa_rt.Engine("llasa-1b-int4")
    engine.speak("Hello there.").save("hello.wav")

The runtime path (`import llasa_rt`) needs only numpy, onnxruntime, tokenizers and soundfile; it never
imports torch or transformers. Exporters live in `llasa_rt.export` (extra `export`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import BundleError, CheckpointError, InputError, LlasaError
from .options import GenerationOptions

if TYPE_CHECKING:
    from .audio import Audio
    from .engine import Engine, Generation
    from .search import Search

__all__ = ["Audio", "BundleError", "CheckpointError", "Engine", "Generation", "GenerationOptions", "InputError",
           "LlasaError", "Search", "__version__"]


def __getattr__(name: str) -> Any:
    # Engine pulls in onnxruntime and the compiled core: load it on first use, not on `import llasa_rt`.
    if name in ("Engine", "Generation"):
        from . import engine

        return getattr(engine, name)
    if name == "Audio":
        from .audio import Audio

        return Audio
    if name == "Search":
        from .search import Search

        return Search
    raise AttributeError(f"module 'llasa_rt' has no attribute {name!r}")
