"""x-vector (WavLM, UniSpeech-SAT) and CTC (Wav2Vec2, HuBERT) verifier graphs vs transformers on tiny random models:
outputs within 1e-4, greedy CTC text identical, batches equal single runs, runs as the batching promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Processor

from llasa_rt.bundle import Bundle
from llasa_rt.verifiers import ScoreContext, load_verifier

NAMES = {"WavLMForXVector": "wavlm", "UniSpeechSatForXVector": "unispeech", "Wav2Vec2ForCTC": "wav2vec2",
         "HubertForCTC": "hubert"}
LENGTHS = [16000, 23456, 7000, 5200, 16000]


def audios(seed: int = 0, lengths=LENGTHS) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(max(lengths)) / 16000
    base = 0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t)
    return [(base[:n] + 0.05 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module")
def bundle(verifier_bundle):
    return Bundle.open(verifier_bundle)


def reference(folder, arch: str, wav: np.ndarray) -> np.ndarray:
    """transformers on one unpadded audio, through the checkpoint's own feature extractor."""
    model = getattr(transformers, arch).from_pretrained(str(folder)).eval()
    inputs = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))(wav, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return (out.embeddings if arch.endswith("XVector") else out.logits)[0].numpy()


@pytest.mark.parametrize("arch", list(NAMES))
def test_graph_equals_transformers(bundle, hf_verifier_folders, arch):
    """The bundle's graph on raw audio vs transformers (feature extractor + model) on the same audio: <= 1e-4."""
    verifier = load_verifier(bundle, NAMES[arch])
    session = verifier.session if arch.endswith("XVector") else verifier.graph.session
    output = "embedding" if arch.endswith("XVector") else "logits"
    for wav in audios()[:4]:
        got = session.run([output], {"audio": wav[None], "audio_lengths": np.array([wav.size])})[0][0]
        want = reference(hf_verifier_folders[arch], arch, wav)
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-4, (arch, wav.size, np.max(np.abs(got - want)))


@pytest.mark.parametrize("arch", ["Wav2Vec2ForCTC", "HubertForCTC"])
def test_greedy_text_equals_processor_batch_decode(bundle, hf_verifier_folders, arch):
    verifier = load_verifier(bundle, NAMES[arch])
    processor = Wav2Vec2Processor.from_pretrained(str(hf_verifier_folders[arch]))
    clips = audios(seed=1)
    ours = verifier.transcribe(clips)
    for wav, text in zip(clips, ours, strict=True):
        want = processor.batch_decode(reference(hf_verifier_folders[arch], arch, wav).argmax(-1)[None])[0]
        assert text == want
    assert any(ours), "the random model should say something"


@pytest.mark.parametrize(("arch", "batching", "runs"), [("WavLMForXVector", "length_buckets", 4),
                                                        ("UniSpeechSatForXVector", "pad_mask", 1),
                                                        ("Wav2Vec2ForCTC", "length_buckets", 4),
                                                        ("HubertForCTC", "pad_mask", 1)])
def test_a_batch_equals_single_runs(bundle, arch, batching, runs):
    """Five audios of four lengths: pad + mask runs once (layer-norm front ends), length buckets once per length
    (group-norm front ends, whose output padding would change); either way each result equals its single run."""
    verifier = load_verifier(bundle, NAMES[arch])
    assert bundle.manifest.verifiers[NAMES[arch]].details["batching"] == batching
    clips = audios(seed=2)
    graph = verifier.graph
    before = graph.runs
    if arch.endswith("XVector"):
        batch = verifier.embed(clips)[0]
        assert graph.runs - before == runs
        for wav, row in zip(clips, batch, strict=True):
            np.testing.assert_allclose(verifier.embed([wav])[0][0], row, atol=1e-5)
    else:
        batch = verifier.transcribe(clips)
        assert graph.runs - before == runs
        assert batch == [verifier.transcribe([wav])[0] for wav in clips]


@pytest.mark.parametrize("name", ["wav2vec2", "hubert"])
def test_asr_score_is_one_minus_wer(bundle, name):
    verifier = load_verifier(bundle, name)
    clips = audios(seed=3)[:2]
    heard = [row["hypothesis"] for row in verifier.details(clips, ScoreContext(text="x"))]
    assert verifier.score(clips[:1], ScoreContext(text=heard[0])).tolist() == [1.0]
    row = verifier.details(clips[:1], ScoreContext(text=heard[0] + " plus four extra words"))[0]
    words = len(heard[0].split()) + 4
    assert row["metric"] == "wer" and row["wer"] == pytest.approx(4 / words)
    assert row["score"] == pytest.approx(1 - 4 / words)
    assert verifier.score(clips[:1], ScoreContext(text="")).tolist() == [0.0 if heard[0] else 1.0]


@pytest.mark.parametrize("name", ["ge2e", "wavlm", "unispeech", "wav2vec2", "hubert"])
def test_empty_and_short_audio_get_defined_scores(bundle, name):
    """0 samples, 1 sample, 0.2 s and silence, mixed with normal audio: a score per audio, never an exception;
    empty audio gets the kind's floor (-1 for speaker, 0 for asr)."""
    verifier = load_verifier(bundle, name)
    clips = [np.zeros(0, np.float32), np.ones(1, np.float32) * 0.1, audios(lengths=[3200])[0],
             np.zeros(16000, np.float32), audios(lengths=[20000])[0]]
    scores = verifier.score(clips, ScoreContext(text="Hello there.", voice="alice"))
    assert scores.dtype == np.float64 and scores.shape == (5,) and np.all(np.isfinite(scores))
    floor = -1.0 if verifier.kind == "speaker" else 0.0
    assert scores[0] == floor
    assert np.all(scores >= floor) and np.all(scores <= 1.0)
