"""The GE2E speaker encoder of the `resemblyzer` wheel (trained weights, Apache-2.0) -> a speaker verifier graph.

The graph is the network only: `mels [W, 160, 40]` (partial utterances of 160 mel frames) -> `embedding [W, 256]`
(each L2-normalised, as `VoiceEncoder.forward`). The front end stays in numpy at run time
(`llasa_rt.verifiers.ge2e`): resemblyzer's volume normalisation, its librosa mel spectrogram (not log-mel) and
`embed_utterance`'s windowing, whose settings the manifest entry records. The weights are read straight from the
wheel's `pretrained.pt`, so exporting imports neither resemblyzer nor librosa.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llasa_rt.bundle import sha256_file
from llasa_rt.errors import CheckpointError

OPSET = 17
MEL_CHANNELS, HIDDEN, LAYERS, EMBEDDING = 40, 256, 3, 256
PARTIAL_FRAMES = 160

# resemblyzer 0.1.4's front end (hparams.py, audio.py, VoiceEncoder.embed_utterance) as data for the manifest.
FRONT_END: dict[str, Any] = {
    "type": "ge2e_mel",
    "gain_dbfs": -30.0,  # preprocess_wav raises the volume to -30 dBFS (never lowers it)
    "n_fft": 400,  # 25 ms window
    "hop_length": 160,  # 10 ms step
    "n_mels": MEL_CHANNELS,
    "fmin": 0.0,
    "fmax": 8000.0,
    "power": 2.0,  # power spectrogram, not log-mel
    "mel_scale": "slaney",  # librosa's default mel scale and filter normalisation
    "center": True,  # frames centred, zero padding
    "partial_frames": PARTIAL_FRAMES,  # one partial utterance = 160 frames = 1.6 s
    "partial_rate": 1.3,  # partial utterances per second (step 77 frames)
    "min_coverage": 0.75,  # the last partial is dropped below this coverage (unless it is the only one)
}


def weights_path() -> Path:
    """The `pretrained.pt` inside the installed resemblyzer wheel (found without importing the package)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.origin:
        raise CheckpointError("--speaker resemblyzer needs the resemblyzer wheel, which ships the trained GE2E "
                              "weights: pip install 'llasa-rt[resemblyzer]'")
    path = Path(spec.origin).parent / "pretrained.pt"
    if not path.is_file():
        raise CheckpointError(f"the resemblyzer package at '{path.parent}' has no pretrained.pt; reinstall it")
    return path


def _encoder() -> Any:
    import torch
    from torch import nn

    class Ge2eEncoder(nn.Module):
        """resemblyzer's VoiceEncoder network: 3-layer LSTM, linear, ReLU, L2 norm of the last hidden state."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(MEL_CHANNELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, EMBEDDING)
            self.relu = nn.ReLU()

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = self.relu(self.linear(hidden[-1]))
            # resemblyzer divides by the norm; the floor only keeps an all-zero embedding (silence) finite.
            return raw / torch.clamp(torch.norm(raw, dim=1, keepdim=True), min=1e-12)

    return Ge2eEncoder()


def load_encoder(path: Path) -> Any:
    """The GE2E network with the weights of `path` (resemblyzer's checkpoint format: {"model_state": ...})."""
    import torch

    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
        encoder = _encoder()
        encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")}, strict=True)
    except Exception as e:  # unpickling / key / shape errors all mean the same: not this network's weights
        raise CheckpointError(f"'{path}' does not hold resemblyzer's GE2E weights ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e
    return encoder.eval()


def export_ge2e(onnx_path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Exports the wheel's GE2E encoder to `onnx_path`; returns the manifest entry's fields."""
    import torch

    from llasa_rt.backends.ort import create_session

    path = weights_path()
    encoder = load_encoder(path)
    log(f"exporting the GE2E speaker encoder from {path} (opset {OPSET})")
    example = torch.randn(2, PARTIAL_FRAMES, MEL_CHANNELS).abs()
    with torch.no_grad():
        torch.onnx.export(encoder, (example,), str(onnx_path), input_names=["mels"], output_names=["embedding"],
                          dynamic_axes={"mels": {0: "partials"}, "embedding": {0: "partials"}},
                          opset_version=OPSET, dynamo=False)
        mels = np.random.default_rng(0).gamma(0.5, 2.0, (3, PARTIAL_FRAMES, MEL_CHANNELS)).astype(np.float32)
        want = encoder(torch.from_numpy(mels)).numpy()
    got = create_session(onnx_path).run(None, {"mels": mels})[0]
    worst = float(np.max(np.abs(got - want)))
    if not worst <= 1e-4:
        raise CheckpointError(f"the exported GE2E graph differs from PyTorch by {worst:.2g} (limit 1e-4)")
    try:
        version = importlib.metadata.version("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return {"kind": "speaker", "details": {
        "sample_rate": 16000, "front_end": dict(FRONT_END), "batching": "partials", "min_samples": 0,
        "model": "GE2E", "embedding_dim": EMBEDDING, "opset": OPSET,
        "source": {"id": "resemblyzer", "version": version, "pretrained_pt_sha256": sha256_file(path)},
    }}
