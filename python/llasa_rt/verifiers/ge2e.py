"""The GE2E front end in numpy: resemblyzer's volume normalisation, librosa mel spectrogram and partial utterances.

Reproduces `resemblyzer.VoiceEncoder.embed_utterance(normalize_volume(wav, -30, increase_only=True))` with the
network in ONNX Runtime (`export/verifiers_ge2e.py`): the same mel frames (librosa.feature.melspectrogram with
n_fft 400, hop 160, 40 Slaney mel bands, periodic Hann window, centred with zero padding, power 2), the same
windows (160 frames every 77, the last dropped below 75 % coverage), averaged and L2-normalised. resemblyzer's
silence trimming (webrtcvad) is not applied: generated candidates are scored as they are.

Every partial utterance has exactly 160 frames, so the windows of ALL audios of a call go through the network in one
run without padding (`batching: "partials"`).
"""

from __future__ import annotations

import numpy as np

from ..bundle.fields import Fields

INT16_MAX = 2**15 - 1


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) with Slaney scale and area normalisation: [n_mels, bins]."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


class Ge2eFrontEnd:
    """Audio -> partial-utterance mel windows [W, frames, n_mels], with the settings of a manifest entry."""

    def __init__(self, f: Fields, sample_rate: int) -> None:
        self.gain_dbfs = f.number("gain_dbfs", -100.0, 0.0)
        self.n_fft = f.integer("n_fft", 16, 1 << 14)
        self.hop = f.integer("hop_length", 1, 1 << 14)
        self.n_mels = f.integer("n_mels", 1, 512)
        fmin, fmax = f.number("fmin", 0.0, sample_rate / 2), f.number("fmax", 1.0, sample_rate / 2)
        self.power = f.number("power", 0.5, 4.0)
        f.text("mel_scale", choices=("slaney",))
        if not f.flag("center"):
            raise f.fail("center", "must be true (the GE2E front end centres its frames)")
        self.frames = f.integer("partial_frames", 1, 10000)
        rate = f.number("partial_rate", 0.01, 1000.0)
        self.coverage = f.number("min_coverage", 0.01, 1.0)
        self.step = int(np.round((sample_rate / rate) / self.hop))
        if not 0 < self.step <= self.frames:
            raise f.fail("partial_rate", f"gives a step of {self.step} frames; it must be in [1, partial_frames]")
        self.filters = mel_filters(sample_rate, self.n_fft, self.n_mels, fmin, fmax).astype(np.float64)
        n = np.arange(self.n_fft)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.n_fft)  # periodic Hann (scipy fftbins=True)

    def gain(self, wav: np.ndarray) -> np.ndarray:
        """Raises the volume to `gain_dbfs` (never lowers it), as resemblyzer.audio.normalize_volume."""
        rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2)))
        if rms <= 0.0:
            return wav  # silence stays silence
        change = self.gain_dbfs - 20.0 * np.log10(rms / INT16_MAX)
        if change <= 0:
            return wav
        return (wav * (10.0 ** (change / 20.0))).astype(np.float32)

    def starts(self, n_samples: int) -> list[int]:
        """First frame of each partial utterance (VoiceEncoder.compute_partial_slices)."""
        n_frames = int(np.ceil((n_samples + 1) / self.hop))
        starts = list(range(0, max(1, n_frames - self.frames + self.step + 1), self.step))
        coverage = (n_samples - starts[-1] * self.hop) / (self.frames * self.hop)
        if coverage < self.coverage and len(starts) > 1:
            starts.pop()
        return starts

    def mel(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """The first `n_frames` power-mel frames of `wav` (centred, zero padded) as float32 [n_frames, n_mels]."""
        half = self.n_fft // 2
        need = (n_frames - 1) * self.hop + self.n_fft  # samples of the padded signal those frames read
        padded = np.zeros(max(need, wav.size + 2 * half), dtype=np.float64)
        padded[half: half + wav.size] = wav
        frames = np.lib.stride_tricks.sliding_window_view(padded[:need], self.n_fft)[:: self.hop][:n_frames]
        spectrum = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** self.power
        return (spectrum @ self.filters.T).astype(np.float32)

    def partials(self, wav: np.ndarray) -> np.ndarray:
        """All partial-utterance windows of one audio: float32 [W, partial_frames, n_mels]."""
        wav = self.gain(wav)
        starts = self.starts(wav.size)
        end = (starts[-1] + self.frames) * self.hop
        if end >= wav.size:  # resemblyzer zero-pads the waveform to the end of the last window
            wav = np.pad(wav, (0, end - wav.size))
        mel = self.mel(wav, starts[-1] + self.frames)
        return np.stack([mel[s: s + self.frames] for s in starts])

