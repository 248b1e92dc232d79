"""`llasa-rt speak` end to end (console script in a subprocess) and voice cloning through the Engine."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

import llasa_rt

EXE = shutil.which("llasa-rt")


def speak(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, "speak", *args], input=stdin.encode() if stdin is not None else None,
                          capture_output=True, timeout=300)


def test_text_to_wav_from_argument_and_stdin(full_bundle, tmp_path):
    out = tmp_path / "a.wav"
    r = speak("--bundle", str(full_bundle), "Hello from the command line.", "-o", str(out), "--seed", "7",
              "--max-new-tokens", "40")
    assert r.returncode == 0, r.stderr.decode()
    data, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and len(data) == 40 * 320
    assert b"seed 7" in r.stderr
    out2 = tmp_path / "b.flac"
    r = speak("-b", str(full_bundle), "-o", str(out2), "--seed", "7", "--max-new-tokens", "40",
              stdin="Hello from the command line.")
    assert r.returncode == 0, r.stderr.decode()
    data2, _ = sf.read(out2, dtype="float32")
    np.testing.assert_allclose(data2, data, atol=2 / 32768)  # same seed and text: same audio (16-bit rounding)


def test_output_raw_streams_pcm16(full_bundle):
    r = speak("-b", str(full_bundle), "Raw output.", "--output-raw", "--max-new-tokens", "60", "--seed", "1")
    assert r.returncode == 0, r.stderr.decode()
    assert len(r.stdout) == 60 * 320 * 2
    pcm = np.frombuffer(r.stdout, "<i2")
    assert np.abs(pcm).max() > 0


@pytest.mark.parametrize(("args", "message"), [
    (["", "-o", "{out}"], "text is empty"),
    (["word " * 3000, "--no-split", "-o", "{out}"], "too many for the model's 2048-token context"),
    (["hi", "--voice", "ghost", "-o", "{out}"], "has no voice 'ghost'"),
    (["hi", "--top-p", "2", "-o", "{out}"], "top_p must be a number in (0, 1]"),
    (["hi", "--temperature", "-1", "-o", "{out}"], "temperature must be a number in [0, 100]"),
    (["hi", "--candidates", "0", "-o", "{out}"], "num_candidates must be"),
    (["hi", "--max-new-tokens", "99999", "-o", "{out}"], "does not fit"),
    (["hi", "-o", "{dir}/x.mp3"], "use a .wav, .flac or .ogg"),
    (["hi", "-o", "{dir}/missing/x.wav"], "does not exist"),
    (["hi", "--native-decode", "fastest", "-o", "{out}"], "native_decode must be one of auto, off"),
])
def test_bad_input_gives_a_clear_error_and_no_file(full_bundle, tmp_path, args, message):
    out = tmp_path / "out.wav"
    args = [a.format(out=out, dir=tmp_path) for a in args]
    r = speak("-b", str(full_bundle), *args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_missing_bundle(tmp_path):
    r = speak("-b", str(tmp_path / "nope"), "hi", "-o", str(tmp_path / "x.wav"))
    assert r.returncode == 2 and b"does not exist" in r.stderr and not (tmp_path / "x.wav").exists()


def test_nonsense_option_is_rejected_by_the_parser(full_bundle, tmp_path):
    r = speak("-b", str(full_bundle), "hi", "-o", str(tmp_path / "x.wav"), "--top-p", "lots")
    assert r.returncode == 2 and b"invalid float value: 'lots'" in r.stderr


@pytest.fixture(scope="module")
def voiced_bundle(full_bundle, tiny_codec, tmp_path_factory):
    from llasa_rt.export.voice import add_voice

    copy = tmp_path_factory.mktemp("voiced") / "bundle"
    shutil.copytree(full_bundle, copy)
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    wav = (0.2 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) +
           0.01 * rng.standard_normal(len(t))).astype(np.float32)
    path = copy.parent / "ref.wav"
    sf.write(path, wav, 16000)
    add_voice(copy, "ref", path, "This is the reference speaker.", codec_source=str(tiny_codec))
    return copy


def test_voice_cloning_prompt_and_output(voiced_bundle):
    engine = llasa_rt.Engine(voiced_bundle)
    from llasa_rt.bundle.voices import read_voice

    codes, transcript = read_voice(engine.bundle, "ref")
    gen = engine.generate_codes("Now in the reference voice.", voice="ref", max_new_tokens=25, seed=2)
    assert gen.prompt_ids[-len(codes):] == engine.tokens.code_to_token(codes).tolist()
    assert gen.prompt_ids == engine.prompt.build("Now in the reference voice.", voice_transcript=transcript,
                                                 voice_codes=codes)
    audio = engine.speak("Now in the reference voice.", voice="ref", max_new_tokens=25, seed=2)
    assert len(audio.samples) == 25 * 320  # the reference's own audio is not part of the output
    full = engine.codec.decode(np.concatenate([codes, audio.codes]))
    np.testing.assert_allclose(audio.samples, full[len(codes) * 320:], atol=1e-6)
    streamed = np.concatenate(list(engine.speak_stream("Now in the reference voice.", voice="ref",
                                                       max_new_tokens=25, seed=2)))
    assert len(streamed) == len(audio.samples)
