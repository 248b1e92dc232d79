"""The layering the architecture promises: facts defined once, import directions, no torch on the runtime path."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Llasa's token-layout numbers: speech base, END, START, code count, head rows, vocabulary.
LAYOUT_NUMBERS = {128264, 128261, 128260, 65536, 65537, 193800}
LAYOUT_SOURCE = ROOT / "python" / "llasa_rt" / "layout.py"
CODE_FOLDERS = ["python", "export", "engines", "calibration", "bench", "csrc", "runtime"]


def _python_numbers(path: Path) -> list[tuple[int, str]]:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.NUMBER and tok.string.isdigit() and int(tok.string) in LAYOUT_NUMBERS:
            out.append((tok.start[0], tok.line.strip()))
    return out


def _cpp_numbers(path: Path) -> list[tuple[int, str]]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("//", 1)[0]
        if any(int(n) in LAYOUT_NUMBERS for n in re.findall(r"\b\d+\b", code)):
            out.append((i, line.strip()))
    return out


def test_token_layout_numbers_have_one_source():
    """128264 (speech base), 128261 (END), 65,536 codes, ... are spelled only in llasa_rt/layout.py; everything
    else (exporter, runtime, C++ defaults, bindings, benches) reads them from there or from the manifest."""
    found = []
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path == LAYOUT_SOURCE or path.suffix not in (".py", ".cc", ".h") or "out" in path.parts:
                continue
            numbers = _python_numbers(path) if path.suffix == ".py" else _cpp_numbers(path)
            rel = path.relative_to(ROOT).as_posix()
            found += [f"{rel}:{n}: {line}" for n, line in numbers]
    assert not found, "token layout numbers outside llasa_rt/layout.py:\n" + "\n".join(found)


def test_layout_source_defines_the_published_ids():
    from llasa_rt.layout import LLASA_TOKENS as T

    assert (T.speech_base_id, T.speech_count, T.end_id, T.start_id, T.vocab_size) == (128264, 65536, 128261, 128260,
                                                                                       193800)
    assert T.head_rows == 65537 and T.head_token_ids()[-1] == T.end_id
    assert T.markers["<|SPEECH_GENERATION_END|>"] == 128261


def _imports(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r"^\s*(?:from|import)\s+(llasa_rt\.[\w.]+|\.+[\w.]*)", text, re.M))


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("python/llasa_rt", ("llasa_rt.export", "llasa_rt.engines", "llasa_rt.calibration")),
    ("export", ("llasa_rt.calibration", "llasa_rt.engine", "llasa_rt.commands")),
])
def test_imports_go_one_way(folder, forbidden):
    """The runtime never imports the exporters (torch); export never imports calibration, Engine or the CLI.
    (The CLI's export and voice-add commands load llasa_rt.export lazily, inside the command.)"""
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.parent.name == "commands":
            continue
        for name in _imports(path):
            if name.startswith(forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def _no_torch(code: str) -> None:
    probe = code + "\nbad = [m for m in ('torch', 'transformers', 'onnx') if m in sys.modules]\nassert not bad, bad\n"
    r = subprocess.run([sys.executable, "-c", "import sys\n" + probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_runtime_modules_load_no_torch():
    _no_torch("import llasa_rt, llasa_rt.engine, llasa_rt.bundle, llasa_rt.bundle.voices, llasa_rt.backends, "
              "llasa_rt.backends.ort, llasa_rt.evaluation.drift, llasa_rt.codec, llasa_rt.cli, llasa_rt.options, "
              "llasa_rt.verifiers, llasa_rt.verifiers.base, llasa_rt.verifiers.text, llasa_rt.verifiers.ge2e, "
              "llasa_rt.verifiers.speaker, llasa_rt.verifiers.asr, llasa_rt.verifiers.score, "
              "llasa_rt.verifiers.alignment, llasa_rt.verifiers.store, llasa_rt.commands.verifier")



def test_voice_list_and_remove_load_no_torch(full_bundle, tmp_path):
    """`llasa-rt voice list` and `voice remove` are runtime commands: no torch, no transformers, no onnx."""
    import shutil

    from llasa_rt.bundle import Bundle, VoiceEntry
    from llasa_rt.bundle.voices import store_voice

    copy = tmp_path / "b"
    shutil.copytree(full_bundle, copy)
    import numpy as np

    store_voice(Bundle.open(copy, verify="fast"), "v", np.arange(10, dtype=np.int32),
                VoiceEntry(file="", sha256="", transcript="Ten codes.", num_codes=10, seconds=0.2))
    _no_torch(f"from llasa_rt.cli import main\nassert main(['voice', 'list', '--bundle', {str(copy)!r}]) == 0\n"
              f"assert main(['voice', 'remove', '--bundle', {str(copy)!r}, '--name', 'v']) == 0")
    assert not (copy / "voices" / "v.npz").exists()
