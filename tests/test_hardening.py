"""Classes of defect that lose data, touch files outside a bundle, crash, or stand in a new user's way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import llasa_rt
from llasa_rt.bundle import Bundle, VoiceEntry
from llasa_rt.bundle.voices import prepare_store, remove_voice, store_voice
from llasa_rt.errors import BundleError
from llasa_rt.text import split_text

EXE = [sys.executable, "-m", "llasa_rt.cli"]


def clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def set_manifest(bundle: Path, change) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").unlink()  # it may be a hard link to the fixture's
    (bundle / "manifest.json").write_text(json.dumps(m))


def add_tiny_voice(bundle: Path, name: str = "v") -> None:
    store_voice(Bundle.open(bundle, verify="fast"), name, np.arange(10, dtype=np.int32),
                VoiceEntry(file="", sha256="", transcript="Ten codes.", num_codes=10, seconds=0.2))


# ---- files outside the bundle -------------------------------------------------------------------------------------
def test_remove_never_deletes_outside_the_bundle(full_bundle, tmp_path):
    b = clone(full_bundle, tmp_path / "b")
    add_tiny_voice(b)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    set_manifest(b, lambda m: m["voices"]["v"].update(file="../victim.txt"))
    with pytest.raises(BundleError, match="not a plain path inside the bundle"):
        remove_voice(b, "v")
    r = subprocess.run([*EXE, "voice", "remove", "--bundle", str(b), "--name", "v"], capture_output=True, text=True)
    assert r.returncode == 2 and "inside the bundle" in r.stderr and "Traceback" not in r.stderr
    assert victim.read_text() == "keep me"


def test_symlinks_that_leave_the_bundle_are_refused_on_read_write_and_remove(full_bundle, tmp_path):
    b = clone(full_bundle, tmp_path / "b")
    add_tiny_voice(b)
    outside = tmp_path / "outside.npz"
    shutil.copy(b / "voices" / "v.npz", outside)
    (b / "voices" / "v.npz").unlink()
    (b / "voices" / "v.npz").symlink_to(outside)  # read and remove through it
    with pytest.raises(BundleError, match="outside the bundle"):
        Bundle.open(b, verify="fast")
    with pytest.raises(BundleError, match="outside the bundle"):
        remove_voice(b, "v")
    assert outside.is_file()
    (b / "voices" / "v.npz").unlink()
    shutil.copy(outside, b / "voices" / "v.npz")
    remove_voice(b, "v")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(b / "voices")
    (b / "voices").symlink_to(elsewhere)  # write through a folder link
    opened = Bundle.open(b, verify="fast")
    with pytest.raises(BundleError, match="outside the bundle"):
        prepare_store(opened, "w", "Some words.", overwrite=False)
    with pytest.raises(BundleError, match="outside the bundle"):
        store_voice(opened, "w", np.arange(3, dtype=np.int32),
                    VoiceEntry(file="", sha256="", transcript="x", num_codes=3, seconds=0.06))
    assert list(elsewhere.iterdir()) == [] and "w" not in Bundle.open(b, verify="fast").manifest.voices


# ---- interrupted exports ------------------------------------------------------------------------------------------
def test_sigterm_during_export_leaves_nothing_and_stale_partials_are_cleaned(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    p = subprocess.Popen([*EXE, "export", "--model", str(tiny_checkpoint("h128")), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".bundle.partial-*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".bundle.partial-*")), "the export never staged its folder"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the partial folder is gone, no bundle appeared

    # What SIGKILL (or a power cut) leaves: a partial folder of a process that no longer exists.
    stale = tmp_path / ".bundle.partial-999999999-abcd"
    stale.mkdir()
    (stale / "lm.onnx.data").write_bytes(b"0" * 1000)
    mine = tmp_path / ".bundle.partial-notes"  # not our naming: never touched
    mine.mkdir()
    r = subprocess.run([*EXE, "export", "--model", str(tiny_checkpoint("h128")), "--out", str(out), "--no-verify"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"removed '{stale}', left by an interrupted earlier run" in r.stderr
    assert not stale.exists() and mine.is_dir() and (out / "manifest.json").is_file()


# ---- broken output streams ----------------------------------------------------------------------------------------
def _speak_raw(bundle: Path, shell_redirect: str) -> subprocess.CompletedProcess:
    cmd = " ".join([*EXE, "speak", "-b", str(bundle), "'Hello there.'", "--output-raw", "--max-new-tokens", "150"])
    return subprocess.run(["bash", "-c", cmd + " " + shell_redirect], capture_output=True, text=True)


def test_full_closed_and_early_closed_output_streams(full_bundle):
    full = _speak_raw(full_bundle, "> /dev/full")
    assert full.returncode == 2, full.stderr
    assert "cannot write to standard output (No space left on device)" in full.stderr
    assert "Traceback" not in full.stderr and "terminate called" not in full.stderr
    closed = _speak_raw(full_bundle, ">&-")
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr
    assert "Traceback" not in closed.stderr
    early = subprocess.run(["bash", "-c", " ".join([*EXE, "speak", "-b", str(full_bundle), "'Hello there.'",
                                                    "--output-raw", "--max-new-tokens", "600"])
                            + " | head -c 100 > /dev/null; exit ${PIPESTATUS[0]}"], capture_output=True, text=True)
    assert early.returncode == 0 and "Traceback" not in early.stderr and "Exception" not in early.stderr


# ---- file modes ---------------------------------------------------------------------------------------------------
def test_output_files_get_the_usual_mode(full_bundle, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "x.wav"
        r = subprocess.run([*EXE, "speak", "-b", str(full_bundle), "hi", "-o", str(out), "--max-new-tokens", "3"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o644)
        llasa_rt.Engine(full_bundle).speak("hi", max_new_tokens=3).save(out)  # overwriting keeps the usual mode
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        b = clone(full_bundle, tmp_path / "b")
        add_tiny_voice(b)
        assert stat.S_IMODE((b / "voices" / "v.npz").stat().st_mode) == 0o644
        assert stat.S_IMODE((b / "manifest.json").stat().st_mode) == 0o644
        assert stat.S_IMODE(full_bundle.stat().st_mode) == 0o755  # a staged bundle folder, renamed into place
    finally:
        os.umask(old)


# ---- writability is checked before slow work ----------------------------------------------------------------------
def test_voice_add_into_unwritable_bundle_fails_before_encoding(full_bundle, tmp_path, monkeypatch, capsys):
    """Tests run as root (permissions do not bind root), so the refusal of the write probe is simulated."""
    import soundfile as sf

    from llasa_rt.cli import main

    b = clone(full_bundle, tmp_path / "b")
    wav = tmp_path / "ref.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(32000) / 10.0).astype(np.float32), 16000)
    real = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".llasa-rt-write-test"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    before = sorted(p.name for p in b.rglob("*"))
    code = main(["voice", "add", "--bundle", str(b), "--name", "a", "--wav", str(wav), "--text", "Hello."])
    err = capsys.readouterr().err
    assert code == 2 and "is not writable (Permission denied)" in err and "loading PyTorch" not in err
    assert err.strip().count("\n") == 0
    assert sorted(p.name for p in b.rglob("*")) == before


# ---- text without spaces ------------------------------------------------------------------------------------------
def test_cjk_and_space_free_text_is_split_within_the_budget(full_bundle):
    cjk = "这是一个很长的句子，没有任何空格，但是有中文的逗号和句号。" * 20 + "じゃあ、また明日！" * 10
    pieces = split_text(cjk, 200)
    assert len(pieces) > 1 and all(len(p) <= 200 for p in pieces)
    assert "".join(pieces) == cjk  # nothing lost, nothing added between CJK pieces
    word = "x" * 10_000
    pieces = split_text(word, 200)
    assert all(len(p) <= 200 for p in pieces) and "".join(pieces) == word
    engine = llasa_rt.Engine(full_bundle, threads=2, verify="fast")
    audio = engine.speak(cjk[:900], max_new_tokens=2, seed=1)  # used to be refused ("turn on splitting")
    assert audio.timings["pieces"] == len(split_text(cjk[:900], 200)) >= 4


# ---- a new user's first hour: the README's offline smoke test -----------------------------------------------------
@pytest.mark.slow
def test_three_commands_give_a_first_wav_offline(tmp_path):
    run = lambda *a: subprocess.run([*EXE, *map(str, a)], capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    r = run("make-tiny", "tiny-llasa", "--codec", "tiny-xcodec2")
    assert r.returncode == 0, r.stderr
    assert "writing a random tiny-h64 Llasa checkpoint" in r.stderr
    r = run("export", "--model", "tiny-llasa", "--codec", "tiny-xcodec2", "--out", "tiny-bundle")
    assert r.returncode == 0, r.stderr
    r = run("speak", "-b", "tiny-bundle", "Hello.", "--max-new-tokens", "50", "-o", "hello.wav")
    assert r.returncode == 0, r.stderr
    import soundfile as sf

    audio, rate = sf.read(tmp_path / "hello.wav")
    assert rate == 16000 and len(audio) == 50 * 320
