"""Audio results and writing them to files or raw PCM, without half-written files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle.writer import usual_mode
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
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{path}': folder '{parent}' does not exist")
    if path.is_dir():
        raise InputError(f"cannot write '{path}': it is a folder; give a file name such as '{path / 'speech.wav'}'")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    except OSError as e:
        raise InputError(f"cannot write '{path}': {e.strerror} in folder '{parent}'; choose a writable "
                         "folder") from None
    os.close(fd)
    try:
        usual_mode(Path(tmp))  # mkstemp makes it private; give it the mode any new file gets
        sf.write(tmp, np.asarray(samples, dtype=np.float32), sample_rate, format=fmt[0], subtype=fmt[1])
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, InputError):
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1]
            raise InputError(f"cannot write '{path}': {reason} (is the disk full?); nothing was written") from None
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
        seed: the sampling seed that reproduces it (pass it back with the same options and text).
        report: with a search, what it did per piece: every candidate's scores, which one was chosen, timings.
    """

    samples: np.ndarray
    sample_rate: int
    codes: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    text: str = ""
    seed: int | None = None
    report: dict | None = None

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
