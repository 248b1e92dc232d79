"""Reading a reference recording for a voice prompt: decode, downmix, resample to 16 kHz, cap, reject silence.

Numpy + soundfile only. Every problem is an InputError that names the file and the fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from llasa_rt.errors import InputError

TARGET_RATE = 16000
MAX_SECONDS = 10.0  # Llasa's context is 2048 tokens; a 10 s prompt already takes 500 of them
MIN_SECONDS = 0.5
SILENCE_PEAK = 1e-3  # peak below -60 dBFS counts as silence


@dataclass
class PromptAudio:
    wav: np.ndarray  # float32 mono at 16 kHz
    sample_rate_in: int  # rate of the file
    channels_in: int  # channels of the file
    resampled: bool
    truncated: bool

    @property
    def seconds(self) -> float:
        return len(self.wav) / TARGET_RATE


def resample(wav: np.ndarray, rate_in: int, rate_out: int = TARGET_RATE, zeros: int = 16) -> np.ndarray:
    """Band-limited resampling with a Kaiser-windowed sinc (`zeros` zero crossings each side), in numpy.

    Output sample n sits at time n / rate_out; the filter cuts at the lower of the two Nyquist rates.
    """
    if rate_in == rate_out:
        return wav.astype(np.float32, copy=False)
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    cutoff = min(1.0, up / down)  # relative to the input Nyquist rate
    n_out = int(np.ceil(len(wav) * up / down))
    half = int(np.ceil(zeros / cutoff))
    beta = 8.6  # Kaiser window shape: ~90 dB stop-band attenuation
    out = np.empty(n_out, dtype=np.float64)
    x = wav.astype(np.float64)
    taps = np.arange(-half + 1, half + 1)
    block = 4096
    for b0 in range(0, n_out, block):
        n = np.arange(b0, min(n_out, b0 + block))
        centre = n * down / up  # position in input samples
        base = np.floor(centre).astype(np.int64)
        idx = base[:, None] + taps[None, :]
        dist = idx - centre[:, None]
        arg = np.clip(dist / half, -1.0, 1.0)
        win = np.i0(beta * np.sqrt(1.0 - arg**2)) / np.i0(beta)
        kernel = cutoff * np.sinc(cutoff * dist) * win
        valid = (idx >= 0) & (idx < len(x))
        samples = np.where(valid, x[np.clip(idx, 0, len(x) - 1)], 0.0)
        out[n] = np.sum(samples * kernel, axis=1)
    return out.astype(np.float32)


def load_prompt_audio(path: str | Path, max_seconds: float = MAX_SECONDS) -> PromptAudio:
    """Reads `path` and returns 16 kHz mono float32 audio of at most `max_seconds`, saying what it changed."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"reference audio '{path}' does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError for non-audio files
        raise InputError(f"'{path}' is not a readable audio file ({type(e).__name__}); pass a WAV/FLAC/OGG "
                         "recording of the reference speaker") from e
    if data.size == 0 or data.shape[0] == 0:
        raise InputError(f"'{path}' holds no audio samples; pass a recording of a few seconds of speech")
    if not np.all(np.isfinite(data)):
        raise InputError(f"'{path}' contains NaN or infinite samples; re-export the recording")
    channels = data.shape[1]
    wav = data.mean(axis=1) if channels > 1 else data[:, 0]
    if channels > 1:
        print(f"llasa-rt: {path.name}: mixed {channels} channels down to mono", file=sys.stderr)
    truncated = False
    limit_in = round(max_seconds * rate)
    if len(wav) > limit_in:
        print(f"llasa-rt: {path.name}: using the first {max_seconds:g} s of {len(wav) / rate:.1f} s (a longer prompt "
              "would crowd out the text and the generated speech in the model's context)", file=sys.stderr)
        wav = wav[:limit_in]
        truncated = True
    resampled = rate != TARGET_RATE
    if resampled:
        print(f"llasa-rt: {path.name}: resampling {rate} Hz to {TARGET_RATE} Hz", file=sys.stderr)
        wav = resample(wav, int(rate))
    if len(wav) < MIN_SECONDS * TARGET_RATE:
        raise InputError(f"'{path}' is only {len(wav) / TARGET_RATE:.2f} s long; a reference voice needs at least "
                         f"{MIN_SECONDS:g} s of speech (3-10 s works best)")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        raise InputError(f"'{path}' is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); pass a recording "
                         "of the reference speaker")
    return PromptAudio(wav=wav.astype(np.float32), sample_rate_in=int(rate), channels_in=channels,
                       resampled=resampled, truncated=truncated)
