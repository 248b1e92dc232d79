"""Reference voices: codes equal the xcodec2 package's encode_code; audio is normalised; bad input changes nothing."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from llasa_rt.bundle import Bundle
from llasa_rt.bundle.voices import read_voice, remove_voice
from llasa_rt.commands import voice as voice_cmd
from llasa_rt.errors import BundleError, InputError, LlasaError
from llasa_rt.export.voice import add_voice
from llasa_rt.export.voice_audio import resample


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test signal: harmonics of a gliding pitch under a syllable-rate envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture()
def bundle(codec_bundle, tmp_path):
    """A fresh copy of the tiny codec bundle per test (voices modify it)."""
    copy = tmp_path / "bundle"
    shutil.copytree(codec_bundle, copy)
    return copy


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_voice_codes_equal_the_package_encode_code(bundle, tiny_reference, tmp_path):
    wav = speech_like(3.3)
    path = tmp_path / "ref.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    entry = add_voice(bundle, "alice", path, "  Hello there.  ")
    expected = tiny_reference.encode_code(torch.from_numpy(wav)[None])[0, 0].numpy()
    codes, transcript = read_voice(Bundle.open(bundle), "alice")
    assert codes.dtype == np.int32 and codes.shape == (166,)
    np.testing.assert_array_equal(codes, expected)
    assert transcript == "Hello there."
    assert entry.num_codes == len(codes) and entry.seconds == 3.3
    assert entry.resampled is False and entry.truncated is False and entry.sample_rate_in == 16000
    manifest = Bundle.open(bundle, verify="full").manifest  # hashes of the voice file verified
    assert manifest.voices["alice"] == entry and entry.file == "voices/alice.npz"


def test_other_rates_and_stereo_are_normalised_and_reported(bundle, tmp_path, capsys):
    mono = speech_like(2.0, rate=22050)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), 22050)
    entry = add_voice(bundle, "bob", path, "two channels")
    err = capsys.readouterr().err
    assert "resampling 22050 Hz to 16000 Hz" in err and "mixed 2 channels down to mono" in err
    assert entry.resampled is True and entry.sample_rate_in == 22050
    assert entry.num_codes == 2 * 50 + 1


def test_long_recordings_are_cut_to_ten_seconds(bundle, tmp_path, capsys):
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(12.5), 16000)
    entry = add_voice(bundle, "long", path, "a long one")
    assert "using the first 10 s of 12.5 s" in capsys.readouterr().err
    assert entry.truncated is True and entry.seconds == 10.0 and entry.num_codes == 501


def test_resampler_is_accurate():
    rate = 44100
    t = np.arange(rate) / rate
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), rate)
    ref = np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    err = (out - ref)[400:-400]
    assert len(out) == 16000 and 10 * np.log10(np.sum(ref[400:-400] ** 2) / np.sum(err**2)) > 80


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 100)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, dtype=np.float32), 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    short = tmp_path / "short.wav"
    sf.write(short, speech_like(0.2), 16000)
    good = tmp_path / "good.wav"
    sf.write(good, speech_like(1.0), 16000)
    return [
        (dict(name="x", wav_path=text, transcript="t"), "not a readable audio file"),
        (dict(name="x", wav_path=silent, transcript="t"), "silent"),
        (dict(name="x", wav_path=empty, transcript="t"), "no audio samples"),
        (dict(name="x", wav_path=short, transcript="t"), "at least 0.5 s"),
        (dict(name="x", wav_path=tmp_path / "missing.wav", transcript="t"), "does not exist"),
        (dict(name="../evil", wav_path=good, transcript="t"), "not allowed"),
        (dict(name="a/b", wav_path=good, transcript="t"), "not allowed"),
        (dict(name="a.b", wav_path=good, transcript="t"), "not allowed"),
        (dict(name="", wav_path=good, transcript="t"), "not allowed"),
        (dict(name="x", wav_path=good, transcript="   "), "transcript is empty"),
    ]


def test_bad_voice_input_is_refused_and_leaves_the_bundle_unchanged(bundle, tmp_path):
    before = snapshot(bundle)
    for kwargs, message in _bad_inputs(tmp_path):
        with pytest.raises(InputError, match=message):
            add_voice(bundle, **kwargs)
        assert snapshot(bundle) == before, kwargs
    assert not (tmp_path.parent / "evil.npz").exists()


def test_duplicate_names_need_force(bundle, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.0), 16000)
    add_voice(bundle, "same", path, "first")
    with pytest.raises(InputError, match="already has a voice 'same'"):
        add_voice(bundle, "same", path, "second")
    add_voice(bundle, "same", path, "second", overwrite=True)
    assert read_voice(Bundle.open(bundle, verify="full"), "same")[1] == "second"


def test_a_different_codec_checkpoint_is_refused(bundle, tmp_path):
    from llasa_rt.export.tiny_codec import make_tiny_xcodec2

    other = make_tiny_xcodec2(tmp_path / "other", "tiny", seed=1)
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.0), 16000)
    before = snapshot(bundle)
    with pytest.raises(BundleError, match="not the one bundle"):
        add_voice(bundle, "x", path, "t", codec_source=str(other))
    assert snapshot(bundle) == before


def test_not_a_bundle_is_refused(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.0), 16000)
    with pytest.raises(BundleError, match=r"manifest\.json"):
        add_voice(tmp_path, "x", path, "t")


def test_remove_voice(bundle, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.0), 16000)
    add_voice(bundle, "gone", path, "t")
    remove_voice(bundle, "gone")
    assert "gone" not in Bundle.open(bundle, verify="full").manifest.voices
    assert not (bundle / "voices" / "gone.npz").exists()
    with pytest.raises(InputError, match="has no voice 'gone'"):
        remove_voice(bundle, "gone")
    with pytest.raises(InputError, match="has no voice 'gone'"):
        read_voice(Bundle.open(bundle), "gone")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="llasa-rt")
    voice_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_voice_cli_add_list_remove(bundle, tmp_path, capsys):
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.5, rate=8000), 8000)
    assert _cli(["voice", "add", "--bundle", str(bundle), "--name", "carol", "--wav", str(path),
                 "--text", "Hi, I am Carol."]) == 0
    assert "added voice 'carol': 1.50 s, 76 codes (resampled to 16 kHz)" in capsys.readouterr().out
    assert _cli(["voice", "list", "--bundle", str(bundle)]) == 0
    assert "carol\t1.50 s\t76 codes\tHi, I am Carol." in capsys.readouterr().out
    assert _cli(["voice", "remove", "--bundle", str(bundle), "--name", "carol"]) == 0
    with pytest.raises(LlasaError):
        _cli(["voice", "remove", "--bundle", str(bundle), "--name", "carol"])


def test_bundle_without_a_recorded_codec_needs_the_codec_option(bundle, tmp_path):
    from llasa_rt.bundle.writer import write_manifest

    opened = Bundle.open(bundle)
    opened.manifest.sources.pop("codec")
    write_manifest(bundle, opened.manifest)
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.0), 16000)
    before = snapshot(bundle)
    with pytest.raises(InputError, match="pass --codec"):
        add_voice(bundle, "x", path, "t")
    assert snapshot(bundle) == before
