"""Errors that llasa-rt raises on purpose: each names the problem and the fix.

The CLI prints these as one line (no traceback); the Python API lets them propagate.
"""

from __future__ import annotations


class LlasaError(Exception):
    """Base class of every error llasa-rt raises for bad input, files or options."""


class CheckpointError(LlasaError):
    """A Hugging Face checkpoint is missing, unreadable or not a Llasa / X-Codec2 checkpoint."""


class BundleError(LlasaError):
    """An engine bundle is missing, incomplete, corrupt or built for something else."""


class InputError(LlasaError, ValueError):
    """A request (text, voice, option value) cannot be served as given."""
