"""The GE2E speaker verifier (trained weights from the resemblyzer wheel) on real English speech: parity with
resemblyzer's own `VoiceEncoder.embed_utterance`, and same-speaker pairs scoring above different-speaker pairs."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from llasa_rt.bundle import Bundle, VoiceEntry
from llasa_rt.bundle.voices import store_voice
from llasa_rt.verifiers import ScoreContext, load_verifier
from llasa_rt.verifiers.store import embed_recording

SEG = 4 * 16000  # 4 s segments


@pytest.fixture(scope="module")
def ge2e(verifier_bundle):
    return load_verifier(Bundle.open(verifier_bundle), "ge2e")


@pytest.fixture(scope="module")
def encoder():
    """resemblyzer's own encoder and volume normalisation (torch), the reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation warning
        resemblyzer = pytest.importorskip("resemblyzer", reason="resemblyzer is part of the `test` extra")
        from resemblyzer.audio import normalize_volume
    return resemblyzer.VoiceEncoder("cpu", verbose=False), normalize_volume


def segments(wav: np.ndarray, count: int) -> list[np.ndarray]:
    return [wav[i * SEG:(i + 1) * SEG] for i in range(min(count, len(wav) // SEG))]


@pytest.mark.parametrize("seconds", [0.2, 2.3, 9.96])
def test_parity_with_resemblyzer_embed_utterance(ge2e, encoder, real_speech, seconds):
    """ONNX graph + numpy front end vs VoiceEncoder.embed_utterance(normalize_volume(wav, -30, increase_only))
    on every real recording (0.2 s, 2.3 s, 10 s): cosine >= 0.9999 (measured >= 0.9999999)."""
    model, normalize_volume = encoder
    clips = [wav[: int(seconds * 16000)] for wav in real_speech.values()]
    ours, valid = ge2e.embed(clips)
    assert valid.all()
    for clip, emb in zip(clips, ours, strict=True):
        ref = model.embed_utterance(normalize_volume(clip, -30, increase_only=True))
        cosine = float(emb @ ref / np.linalg.norm(ref))
        assert cosine >= 0.9999, (seconds, cosine)


def test_front_end_mel_equals_librosa(ge2e, encoder, real_speech):
    """The numpy mel spectrogram equals resemblyzer's librosa one (relative 1e-5)."""
    from resemblyzer.audio import wav_to_mel_spectrogram

    wav = ge2e.ge2e.gain(real_speech["beckett"][:40000])
    want = wav_to_mel_spectrogram(wav)
    got = ge2e.ge2e.mel(wav, want.shape[0])
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_all_windows_of_a_call_run_in_one_session_run(ge2e, real_speech):
    clips = [real_speech["two_cities"][:n] for n in (16000, 50000, 3200, 120000)]
    before = ge2e.runs
    batch = ge2e.embed(clips)[0]
    assert ge2e.runs == before + 1
    for clip, row in zip(clips, batch, strict=True):
        np.testing.assert_allclose(ge2e.embed([clip])[0][0], row, atol=1e-6)


def test_same_speaker_pairs_score_higher_than_different_speakers(ge2e, real_speech, capsys):
    """4 s segments of the moonshine-voice recordings. two_cities is one narrator; endgame_nagg_nell and clone-test
    are other speakers. Every same-narrator pair beats every pair across speakers, by a clear margin."""
    same_spk = segments(real_speech["two_cities"], 10)
    others = {"endgame": segments(real_speech["endgame_nagg_nell"], 7),
              "clone-test": segments(real_speech["clone-test"], 1), "beckett": segments(real_speech["beckett"], 2)}
    emb = {k: ge2e.embed(v)[0] for k, v in {"two_cities": same_spk, **others}.items()}
    same = [float(a @ b) for a, b in itertools.combinations(emb["two_cities"], 2)]
    diff = {k: [float(a @ b) for a in emb["two_cities"] for b in emb[k]] for k in others}
    with capsys.disabled():
        print(f"\nGE2E same speaker (two_cities, {len(same)} pairs): min {min(same):.3f} mean {np.mean(same):.3f}")
        for k, v in diff.items():
            print(f"GE2E two_cities vs {k} ({len(v)} pairs): max {max(v):.3f} mean {np.mean(v):.3f}")
    clear = diff["endgame"] + diff["clone-test"]
    assert min(same) > max(clear) + 0.1
    assert np.mean(same) > np.mean(clear) + 0.3
    assert np.mean(same) > np.mean(diff["beckett"])


def test_score_against_a_voice_embedded_from_its_recording(bundle_copy, real_speech):
    """A voice whose reference embedding comes from a real recording: the same speaker's other speech scores
    higher than another speaker's, through ScoreContext(voice=...)."""
    bundle = Bundle.open(bundle_copy, verify="fast")
    reference = real_speech["two_cities"][:SEG]
    embeddings = embed_recording(bundle, reference)
    assert set(embeddings) == {"ge2e", "wavlm", "unispeech"}
    assert embeddings["ge2e"].source == "recording"
    store_voice(bundle, "narrator", np.zeros(5, np.int32), VoiceEntry(
        file="", sha256="", transcript="It was the best of times.", num_codes=5, seconds=4.0, embeddings=embeddings))
    verifier = load_verifier(Bundle.open(bundle_copy), "ge2e")
    later = real_speech["two_cities"][5 * SEG:6 * SEG]
    other = real_speech["endgame_nagg_nell"][:SEG]
    scores = verifier.score([reference, later, other], ScoreContext(text="", voice="narrator"))
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert scores[1] > 0.8 > 0.6 > scores[2]
