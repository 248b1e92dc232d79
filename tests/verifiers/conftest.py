"""Fixtures for the verifier tests: tiny random HF verifier checkpoints, the real GE2E weights (resemblyzer wheel),
real English speech (the moonshine-voice wheel's recordings and espeak-ng), and bundle copies to add verifiers to.

Nothing is downloaded; everything comes from installed packages (the `test` extra) and Debian's espeak-ng, which
.ci/run installs. A test skips, saying why, only when one of those is truly missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000
# Recordings inside the moonshine-voice wheel: (file, speaker label). two_cities is one narrator throughout.
MOONSHINE_WAVS = ["beckett", "two_cities", "endgame_nagg_nell", "clone-test"]
HF_MODELS = [("WavLMForXVector", "group"), ("UniSpeechSatForXVector", "layer"), ("Wav2Vec2ForCTC", "group"),
             ("HubertForCTC", "layer")]


def quiet(_msg: str) -> None:
    """A log function that drops progress messages."""


def clone_bundle(src: Path, dst: Path) -> Path:
    """A copy of a bundle whose graph files are hard links (the tests never edit those in place)."""
    shutil.copytree(src, dst, copy_function=os.link)
    (dst / "manifest.json").unlink()
    shutil.copyfile(src / "manifest.json", dst / "manifest.json")
    return dst


@pytest.fixture(scope="session")
def hf_verifier_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints of the four exported architectures, in the save_pretrained layout."""
    from llasa_rt.export.verifiers_tiny import make_tiny_verifier

    root = tmp_path_factory.mktemp("hf-verifiers")
    return {arch: make_tiny_verifier(root / arch, arch, norm=norm, seed=i)
            for i, (arch, norm) in enumerate(HF_MODELS)}


@pytest.fixture(scope="session")
def verifier_bundle(full_bundle, hf_verifier_folders, tmp_path_factory) -> Path:
    """The tiny LM + codec bundle with a voice "alice" and every exported verifier kind added (once per session):
    ge2e (resemblyzer), the two x-vectors, the two CTC models."""
    import numpy as np

    from llasa_rt.bundle import Bundle, VoiceEntry
    from llasa_rt.bundle.voices import store_voice
    from llasa_rt.export.verifiers import export_verifiers

    bundle = clone_bundle(full_bundle, tmp_path_factory.mktemp("verifier-bundle") / "b")
    codes = np.random.default_rng(3).integers(0, 65536, 60).astype(np.int32)
    store_voice(Bundle.open(bundle, verify="fast"), "alice", codes,
                VoiceEntry(file="", sha256="", transcript="A reference voice.", num_codes=60, seconds=1.2))
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer (the `test` extra) is not installed: pip install '.[test]'")
    export_verifiers(bundle, speaker="resemblyzer", log=quiet)
    export_verifiers(bundle, speaker=str(hf_verifier_folders["WavLMForXVector"]), speaker_name="wavlm", log=quiet)
    export_verifiers(bundle, speaker=str(hf_verifier_folders["UniSpeechSatForXVector"]), speaker_name="unispeech",
                     asr=str(hf_verifier_folders["Wav2Vec2ForCTC"]), asr_name="wav2vec2", log=quiet)
    export_verifiers(bundle, asr=str(hf_verifier_folders["HubertForCTC"]), asr_name="hubert", log=quiet)
    return bundle


@pytest.fixture()
def bundle_copy(verifier_bundle, tmp_path) -> Path:
    """A per-test copy of `verifier_bundle` (for tests that change it)."""
    return clone_bundle(verifier_bundle, tmp_path / "bundle")


def _resample(wav: np.ndarray, rate: int) -> np.ndarray:
    from llasa_rt.export.voice_audio import resample

    return resample(wav, rate, RATE) if rate != RATE else wav.astype(np.float32)


@pytest.fixture(scope="session")
def real_speech() -> dict[str, np.ndarray]:
    """The moonshine-voice wheel's English recordings, mono float32 at 16 kHz."""
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or not spec.origin:
        pytest.skip("moonshine-voice (the `test` extra, which ships real English speech) is not installed")
    assets = Path(spec.origin).parent / "assets"
    out = {}
    for name in MOONSHINE_WAVS:
        data, rate = sf.read(assets / f"{name}.wav", dtype="float32", always_2d=True)
        out[name] = _resample(data.mean(axis=1), rate)
    return out


@pytest.fixture(scope="session")
def espeak(tmp_path_factory):
    """Returns speak(text, voice="en-us") -> float32 16 kHz audio of espeak-ng reading `text`."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it: apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("espeak")
    cache: dict[tuple[str, str], np.ndarray] = {}

    def speak(text: str, voice: str = "en-us") -> np.ndarray:
        key = (text, voice)
        if key not in cache:
            path = folder / f"{len(cache)}.wav"
            subprocess.run([exe, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
            data, rate = sf.read(path, dtype="float32")
            cache[key] = _resample(data, rate)
        return cache[key]

    return speak
