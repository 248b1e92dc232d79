"""Audio results and writing them to files or raw PCM, without half-written files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

# Output formats soundfile writes, by file suffix.
FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> little-endian 16-bit PCM bytes (clipped)."""
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (np.round(x * 32767.0)).astype("<i2").tobytes()


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Writes audio by file suffix (.wav, .flac, .ogg) through a temporary file renamed at the end."""
    import soundfile as sf

    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write '{path}': unknown audio suffix {path.suffix!r}; use one of "
                         f"{', '.join(FORMATS)} (or --output-raw for 16-bit PCM on stdout)")
    if path.parent and not path.parent.is_dir():
        raise InputError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(samples, dtype=np.float32), sample_rate, format=fmt[0], subtype=fmt[1])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class Audio:
    """Generated speech.

    Attributes:
        samples: float32 mono samples in [-1, 1].
        sample_rate: samples per second (16000 for X-Codec2).
        codes: the X-Codec2 codes that were decoded (int32, 50 per second), without the voice prompt's.
        timings: seconds spent per stage ("prompt", "prefill", "decode", "codec", "total") and counts.
        text: the text that was spoken.
    """

    samples: np.ndarray
    sample_rate: int
    codes: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    text: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sample_rate)

    def save(self, path: str | Path) -> Path:
        """Writes the audio; the format follows the suffix (.wav / .flac: 16-bit PCM, .ogg: Vorbis)."""
        return write_audio(path, self.samples, self.sample_rate)

    def pcm16(self) -> bytes:
        """The samples as raw little-endian 16-bit PCM."""
        return to_pcm16(self.samples)
