"""Bad input, across the CLI and the Python API: each case ends in one clear line (CLI: exit 2; API: an
LlasaError subclass), never a traceback, and leaves no file behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import llasa_rt
from llasa_rt.cli import main
from llasa_rt.errors import BundleError, InputError, LlasaError


# ---- helpers ------------------------------------------------------------------------------------------------------
def clone(src: Path, dst: Path) -> Path:
    """A copy of a bundle whose big files are hard links (edit files only through `rewrite`)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def rewrite(path: Path, data: bytes) -> None:
    """Replaces a (possibly hard-linked) file without touching the original's content."""
    path.unlink()
    path.write_bytes(data)


def edit_manifest(bundle: Path, change) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    rewrite(bundle / "manifest.json", json.dumps(m).encode())


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def run_cli(args: list, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    _, err = capsys.readouterr()
    return code, err


def assert_one_line(err: str, message: str) -> None:
    assert message in err, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err


# ---- the CLI ------------------------------------------------------------------------------------------------------
def _set(path: list, value):
    def change(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _voice_entry(file: str, sha: str | None = "0" * 64):
    def change(m):
        entry = {"file": file, "transcript": "hi", "num_codes": 3, "seconds": 0.06}
        if sha is not None:
            entry["sha256"] = sha
        m["voices"]["v"] = entry
    return change


MANIFEST_EDITS = [
    (_set(["graphs"], []), "graphs must be a JSON object"),
    (_set(["graphs"], {}), "graphs is empty"),
    (_voice_entry("voices/v.npz", sha=None), "voices.v.sha256 is missing"),
    (_voice_entry("../victim.txt"), "not a plain path inside the bundle"),
    (_voice_entry("/etc/passwd"), "not a plain path inside the bundle"),
    (_set(["model", "max_context"], 10**9), "model.max_context must be an integer in [16, 131072]"),
    (_set(["model", "num_layers"], "2"), "model.num_layers must be an integer"),
    (_set(["model", "kv_dtype"], "bfloat16"), "model.kv_dtype must be one of float32, float16"),
    (_set(["model", "num_kv_heads"], 7), "must divide num_attention_heads"),
    (_set(["tokens", "end_row"], 5), "tokens.end_row must be speech_count"),
    (_set(["generation", "temperature"], "hot"), "generation: temperature must be a number"),
    (_set(["generation", "top_p"], 0), "generation: top_p must be a number in (0, 1]"),
    (_set(["graphs", "lm", "backend"], "cuda"), "graphs.lm.backend must be one of"),
    (_set(["graphs", "lm", "files"], {"lm.onnx": "abc"}), "64-digit lowercase hex sha256"),
    (_set(["files"], {"../tokenizer.json": "0" * 64}), "not a plain path inside the bundle"),
    (_set(["format_version"], 99), "bundle format version 99 is not supported"),
    (_set(["prompt"], {}), "prompt is missing or empty, but the bundle has an LM graph"),
    (_set(["audio", "sample_rate"], -1), "audio.sample_rate must be an integer"),
]


@pytest.mark.parametrize(("change", "message"), MANIFEST_EDITS)
def test_hand_edited_manifest_is_refused_on_load(full_bundle, tmp_path, capsys, change, message):
    b = clone(full_bundle, tmp_path / "b")
    edit_manifest(b, change)
    before = files_under(tmp_path)
    code, err = run_cli(["speak", "-b", b, "hi", "-o", tmp_path / "x.wav", "--fast-load"], capsys)
    assert code == 2
    assert_one_line(err, message)
    assert files_under(tmp_path) == before
    with pytest.raises(BundleError) as info:
        llasa_rt.Engine(b, verify="fast")
    assert message in str(info.value)


GRAPH_DAMAGE = [
    ("lm.onnx", lambda d, b: d[: len(d) // 2], "ONNX Runtime cannot load lm.onnx"),
    ("lm.onnx.data", lambda d, b: d[: len(d) // 2], "ONNX Runtime cannot load lm.onnx"),
    ("lm.onnx", lambda d, b: (b / "codec_decoder.onnx").read_bytes(), "has no input 'input_ids'"),
    ("codec_decoder.onnx", lambda d, b: d[:1000], "ONNX Runtime cannot load codec_decoder.onnx"),
]


@pytest.mark.parametrize(("name", "damage", "message"), GRAPH_DAMAGE)
def test_damaged_graphs_under_fast_load_give_one_line(full_bundle, tmp_path, capsys, name, damage, message):
    b = clone(full_bundle, tmp_path / "b")
    rewrite(b / name, damage((b / name).read_bytes(), b))
    code, err = run_cli(["speak", "-b", b, "hi", "-o", tmp_path / "x.wav", "--fast-load"], capsys)
    assert code == 2
    assert_one_line(err, message)
    assert "llasa-rt info" in err or "re-export" in err
    code, err = run_cli(["speak", "-b", b, "hi", "-o", tmp_path / "x.wav"], capsys)  # full check: the hash
    assert code == 2
    assert_one_line(err, f"{name} does not match its sha256")
    assert not (tmp_path / "x.wav").exists()


def test_wrong_num_layers_is_caught_against_the_graph(full_bundle, tmp_path, capsys):
    b = clone(full_bundle, tmp_path / "b")
    edit_manifest(b, _set(["model", "num_layers"], 3))
    code, err = run_cli(["speak", "-b", b, "hi", "-o", tmp_path / "x.wav", "--fast-load"], capsys)
    assert code == 2
    assert_one_line(err, "has 2 layers but manifest.json says model.num_layers = 3")


SPEAK_CASES = [
    (["", "-o", "{out}"], "text is empty"),
    (["   \n ", "-o", "{out}"], "text is empty"),
    (["say <|eot_id|> now", "-o", "{out}"], "control token '<|eot_id|>'"),
    (["word " * 3000, "--no-split", "-o", "{out}"], "too many for the model's 2048-token context"),
    (["hi", "--voice", "ghost", "-o", "{out}"], "has no voice 'ghost'"),
    (["hi", "--voice", "../x", "-o", "{out}"], "has no voice '../x'"),
    (["hi", "--top-p", "2", "-o", "{out}"], "top_p must be a number in (0, 1]"),
    (["hi", "--top-p", "0", "-o", "{out}"], "top_p must be a number in (0, 1]"),
    (["hi", "--temperature", "-1", "-o", "{out}"], "temperature must be a number in [0, 100]"),
    (["hi", "--temperature", "nan", "-o", "{out}"], "temperature must be a number"),
    (["hi", "--top-k", "-1", "-o", "{out}"], "top_k must be an integer"),
    (["hi", "--min-p", "1.5", "-o", "{out}"], "min_p must be a number in [0, 1]"),
    (["hi", "--repetition-penalty", "0", "-o", "{out}"], "repetition_penalty must be a number in (0, 100]"),
    (["hi", "--candidates", "0", "-o", "{out}"], "num_candidates must be an integer in [1, 64]"),
    (["hi", "--candidates", "65", "-o", "{out}"], "num_candidates must be an integer in [1, 64]"),
    (["hi", "--max-new-tokens", "0", "-o", "{out}"], "max_new_tokens must be an integer"),
    (["hi", "--max-new-tokens", "99999", "-o", "{out}"], "does not fit"),
    (["hi", "--seed", "-1", "-o", "{out}"], "seed must be an integer in [0, 18446744073709551615]"),
    (["hi", "--seed", str(2**64), "-o", "{out}"], "seed must be an integer in [0, 18446744073709551615]"),
    (["hi", "-o", "{dir}/x.mp3"], "use a .wav, .flac or .ogg"),
    (["hi", "-o", "{dir}/missing/x.wav"], "does not exist"),
    (["hi", "-o", "{dir}/folder.wav", "--max-new-tokens", "3"], "it is a folder"),
    (["hi", "--threads", "0", "-o", "{out}"], "threads must be an integer in [1, 256]"),
    (["hi", "--threads", "1000", "-o", "{out}"], "threads must be an integer in [1, 256]"),
    (["hi", "--output-raw", "--candidates", "2"], "--output-raw streams one candidate"),
]


@pytest.mark.parametrize(("args", "message"), SPEAK_CASES)
def test_speak_bad_input(full_bundle, tmp_path, capsys, args, message):
    (tmp_path / "folder.wav").mkdir()
    before = files_under(tmp_path)
    args = [a.format(out=tmp_path / "out.wav", dir=tmp_path) for a in args]
    code, err = run_cli(["speak", "-b", full_bundle, *args], capsys)
    assert code == 2
    assert_one_line(err, message)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(("bundle", "message"), [
    ("missing", "does not exist"),
    ("file", "is a file, not a bundle folder"),
    ("empty", "has no manifest.json"),
    ("notjson", "is unreadable or not JSON"),
])
def test_speak_bad_bundle(tmp_path, capsys, bundle, message):
    path = tmp_path / bundle
    if bundle == "file":
        path.write_text("x")
    elif bundle == "empty":
        path.mkdir()
    elif bundle == "notjson":
        path.mkdir()
        (path / "manifest.json").write_text("{nope")
    code, err = run_cli(["speak", "-b", path, "hi", "-o", tmp_path / "x.wav"], capsys)
    assert code == 2
    assert_one_line(err, message)
    assert not (tmp_path / "x.wav").exists()


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)
        self.closed = False

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize(("data", "message"), [
    (b"Hello \xff there", "standard input is not valid UTF-8: byte 0xff at offset 6"),
    (b"caf\xc3", "not valid UTF-8: byte 0xc3 at offset 3"),
    (b"", "text is empty"),
])
def test_speak_stdin_bad_bytes(full_bundle, tmp_path, capsys, monkeypatch, data, message):
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    code, err = run_cli(["speak", "-b", full_bundle, "-o", tmp_path / "x.wav"], capsys)
    assert code == 2
    assert_one_line(err, message)
    assert not (tmp_path / "x.wav").exists()


def test_speak_output_write_failures(full_bundle, tmp_path, capsys, monkeypatch):
    """A folder that refuses files, and a full disk: one line, nothing left (simulated: tests run as root)."""
    import tempfile

    import soundfile

    failures = [
        (tempfile, "mkstemp", PermissionError(13, "Permission denied"), "Permission denied in folder"),
        (soundfile, "write", OSError(28, "No space left on device"), "No space left on device"),
    ]
    for module, name, error, message in failures:
        def fail(*a, error=error, **k):
            raise error

        with monkeypatch.context() as m:
            m.setattr(module, name, fail)
            code, err = run_cli(["speak", "-b", full_bundle, "hi", "-o", tmp_path / "x.wav", "--max-new-tokens",
                                 "3"], capsys)
        assert code == 2
        assert_one_line(err, message)
    assert list(tmp_path.iterdir()) == []


EXPORT_CASES = [
    (["--model", "{ckpt}", "--out", "{dir}/new", "--max-context", "5"], "max_context must be in [16, 131072]"),
    (["--model", "{dir}/nowhere", "--out", "{dir}/new"], "nowhere"),
    (["--model", "{ckpt}", "--out", "{dir}/mine", "--overwrite"], "holds files that are not a llasa-rt bundle"),
    (["--model", "{ckpt}", "--out", "{dir}/mine"], "is not empty; pass --overwrite"),
    (["--model", "{ckpt}", "--out", "{dir}/afile"], "exists and is a file"),
    (["--model", "{ckpt}", "--out", "{dir}/new", "--max-context", "1000000"], "max_context must be in [16, 131072]"),
]


@pytest.mark.parametrize(("args", "message"), EXPORT_CASES)
def test_export_bad_input(tiny_checkpoint, tmp_path, capsys, args, message):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    (tmp_path / "afile").write_text("x")
    before = files_under(tmp_path)
    args = [a.format(dir=tmp_path, ckpt=tiny_checkpoint("h64")) for a in args]
    code, err = run_cli(["export", "--no-verify", *args], capsys)
    assert code == 2
    assert_one_line(err.strip().splitlines()[-1], message)
    assert files_under(tmp_path) == before
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "years of work"


def test_export_refuses_to_replace_the_current_folder(full_bundle, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    b = clone(full_bundle, tmp_path / "b")
    monkeypatch.chdir(b)
    code, err = run_cli(["export", "--model", tiny_checkpoint("h64"), "--out", ".", "--overwrite"], capsys)
    assert code == 2
    assert_one_line(err, "is the current folder or holds it")
    assert (b / "manifest.json").is_file()


def test_voice_commands_bad_input(full_bundle, tmp_path, capsys):
    b = clone(full_bundle, tmp_path / "b")
    wav = tmp_path / "ref.wav"
    import soundfile as sf

    sf.write(wav, 0.1 * np.sin(np.arange(32000) / 10.0).astype(np.float32), 16000)
    cases = [
        (["voice", "add", "--bundle", b, "--name", "a", "--wav", wav, "--text", "Hi <|s_5|> there"],
         "control token '<|s_5|>'"),
        (["voice", "add", "--bundle", b, "--name", "a", "--wav", wav, "--text", "   "], "the transcript is empty"),
        (["voice", "add", "--bundle", b, "--name", "a/b", "--wav", wav, "--text", "Hi"], "is not allowed"),
        (["voice", "add", "--bundle", b, "--name", "a", "--wav", tmp_path / "no.wav", "--text", "Hi"], "no.wav"),
        (["voice", "add", "--bundle", b, "--name", "a", "--wav", wav, "--text", "x" * 3000], "limit 2000"),
        (["voice", "remove", "--bundle", b, "--name", "ghost"], "has no voice 'ghost'"),
        (["voice", "list", "--bundle", tmp_path / "none"], "does not exist"),
    ]
    before = files_under(tmp_path)
    for args, message in cases:
        code, err = run_cli(args, capsys)
        assert code == 2, args
        assert_one_line(err, message)
        assert "loading PyTorch" not in err  # refused before the slow part
    assert files_under(tmp_path) == before


def test_compare_bad_input(tiny_bundle, tmp_path, capsys):
    ref = tiny_bundle("h64", "fp32")
    bad = tmp_path / "p.txt"
    bad.write_bytes(b"Hello\n\xfe\xffworld\n")
    cases = [
        (["--steps", "0"], "--steps must be an integer in [1, 100000]"),
        (["--steps", "5000"], "more than the 2048-token context; use at most --steps"),
        (["--prompts", bad], "not valid UTF-8: byte 0xfe at offset 6"),
        (["--prompts", tmp_path / "none.txt"], "does not exist"),
        (["--threads", "0"], "--threads must be an integer in [1, 256]"),
    ]
    for args, message in cases:
        code, err = run_cli(["compare", ref, ref, *args], capsys)
        assert code == 2, args
        assert_one_line(err.splitlines()[-1] if err.strip() else err, message)
    code, err = run_cli(["compare", ref, tmp_path / "none"], capsys)
    assert code == 2 and "does not exist" in err


def test_make_tiny_bad_input(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, err = run_cli(["make-tiny", tmp_path / "full"], capsys)
    assert code == 2
    assert_one_line(err, "is not empty; choose another folder")
    assert "--overwrite" not in err
    code, err = run_cli(["make-tiny", tmp_path / "a", "--seed", "-1"], capsys)
    assert code == 2 and "--seed must be in" in err
    code, err = run_cli(["make-tiny", tmp_path / "a", "--codec", tmp_path / "full"], capsys)
    assert code == 2 and "is not empty" in err and not (tmp_path / "a").exists()


# ---- the Python API -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(full_bundle):
    return llasa_rt.Engine(full_bundle, threads=2)


API_CASES = [
    (lambda e: e.speak("a\ud800b"), InputError, "invalid character U+D800 at position 1"),
    (lambda e: e.speak("nul\x00byte"), InputError, "invalid character U+0000"),
    (lambda e: e.speak(123), InputError, "text must be a string, not int"),
    (lambda e: e.speak(b"bytes"), InputError, "text must be a string, not bytes"),
    (lambda e: e.speak("hi", max_chars=5), InputError, "max_chars must be an integer in [20,"),
    (lambda e: e.speak("hi", max_new_tokens="10"), InputError, "max_new_tokens must be an integer"),
    (lambda e: e.speak("hi", pause=1e9), InputError, "pause must be a number in [0, 10]"),
    (lambda e: e.speak("hi", pause=-1), InputError, "pause must be a number in [0, 10]"),
    (lambda e: e.speak("hi", top_k=2.7), InputError, "top_k must be an integer"),
    (lambda e: e.speak("hi", top_k=True), InputError, "top_k must be an integer in [0, 2147483648], not the boolean"),
    (lambda e: e.speak("hi", seed=2**64), InputError, "seed must be an integer in [0, 18446744073709551615]"),
    (lambda e: e.speak("hi", seed=-3), InputError, "seed must be an integer"),
    (lambda e: e.speak("hi", seed=1.5), InputError, "seed must be an integer"),
    (lambda e: e.speak("hi", temperature=float("nan")), InputError, "temperature must be a number"),
    (lambda e: e.speak("hi", temperature="0.5"), InputError, "temperature must be a number"),
    (lambda e: e.speak("hi", split="yes"), InputError, "split must be True or False"),
    (lambda e: e.speak("hi", bogus=1), InputError, "unknown option(s) bogus"),
    (lambda e: e.speak("hi", "fast"), InputError, "options must be a llasa_rt.GenerationOptions"),
    (lambda e: e.speak("hi", min_new_tokens=10, max_new_tokens=5), InputError, "min_new_tokens (10) is larger"),
    (lambda e: e.speak("hi", voice=3), InputError, "voice must be the name"),
    (lambda e: e.speak("x" * 1_000_001), InputError, "more than the 1,000,000 one call takes"),
    (lambda e: e.speak_stream("hi", num_candidates=2), InputError, "streams one candidate"),
    (lambda e: e.speak_stream("hi", tokens_per_callback=0), InputError, "tokens_per_callback must be"),
    (lambda e: e.generate_codes("hi", slots=0), InputError, "slots must be an integer in [1, 64]"),
    (lambda e: e.generate_codes("hi", callback_every=-1), InputError, "callback_every must be an integer"),
    (lambda e: e.generate_codes("hi", num_candidates=True), InputError, "num_candidates must be an integer"),
    (lambda e: e.decode(np.array([70000])), InputError, "code 70000 is out of range 0..65535"),
    (lambda e: e.decode(np.array([1.5])), InputError, "codec codes must be integers"),
    (lambda e: llasa_rt.Engine(e.bundle.root, threads=True), InputError, "threads must be an integer"),
    (lambda e: llasa_rt.Engine(e.bundle.root, threads=1000), InputError, "threads must be an integer in [1, 256]"),
    (lambda e: llasa_rt.Engine(e.bundle.root, verify="quick"), BundleError, "verify must be 'full' or 'fast'"),
    (lambda e: llasa_rt.Engine(e.bundle.root, providers=["NoSuchExecutionProvider"]), InputError,
     "are not available in this onnxruntime"),
    (lambda e: llasa_rt.Engine(e.bundle.root, providers="CPUExecutionProvider"), InputError,
     "providers must be a non-empty list"),
    (lambda e: llasa_rt.GenerationOptions(num_candidates=None), InputError, "num_candidates must be an integer"),
]


@pytest.mark.parametrize(("call", "error", "message"), API_CASES)
def test_api_bad_input(engine, call, error, message):
    with pytest.raises(error) as info:
        call(engine)
    assert isinstance(info.value, LlasaError)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_api_accepts_numpy_integers_and_full_seed_range(engine):
    a = engine.speak("hi", seed=np.int64(3), max_new_tokens=np.int32(4))
    assert a.seed == 3 and len(a.codes) == 4
    top = 2**64 - 1
    b = engine.speak("hi", seed=top, max_new_tokens=6)
    again = engine.speak("hi", llasa_rt.GenerationOptions(seed=top, max_new_tokens=6))
    assert b.seed == top and b.codes.tolist() == again.codes.tolist()  # exact, not rounded through a float
    c = engine.speak("hi", seed=2**63 + 1, max_new_tokens=6)
    assert c.seed == 2**63 + 1


def test_audio_save_bad_suffix(tmp_path):
    audio = llasa_rt.Audio(samples=np.zeros(10, np.float32), sample_rate=16000, codes=np.zeros(0, np.int32))
    with pytest.raises(InputError, match="unknown audio suffix"):
        audio.save(tmp_path / "x.mp3")
    assert list(tmp_path.iterdir()) == []
