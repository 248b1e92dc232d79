"""The bench's optional comparison rows: without the llama.cpp venv bench/runtime.py prints how to make it and goes
on; the CPU line names the SIMD flags; child processes can run under another interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import child
import llamacpp_bench
from llasa_1b import random_prompt

import runtime
from llasa_rt.layout import LLASA_TOKENS


def test_llama_cpp_rows_are_skipped_with_the_setup_command_when_the_venv_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "venv_python", lambda: None)
    assert runtime.run_llama_cpp(tokens=5, threads=1) is None
    out = capsys.readouterr().out
    assert "llama.cpp rows skipped" in out and llamacpp_bench.SETUP in out


def test_llama_cpp_rows_are_skipped_when_a_gguf_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runtime, "venv_python", lambda: Path(sys.executable))
    monkeypatch.setattr(runtime, "gguf_path", lambda name: tmp_path / f"{name}.gguf")
    (tmp_path / "q8_0.gguf").write_bytes(b"")
    assert runtime.run_llama_cpp(tokens=5, threads=1) is None
    out = capsys.readouterr().out
    assert "q4_0, q4_0-head-q4_0 GGUF" in out


def test_cpu_line_names_the_model_and_only_simd_flags():
    line = runtime.cpu_features()
    assert "logical CPUs; flags:" in line
    flags = line.split("flags:")[1].split()
    assert all(f.startswith(runtime.CPU_FLAGS) or f.startswith("avx512") or f in ("none", "of")
               or f in runtime.CPU_FLAGS for f in flags)
    assert "sse2" not in flags


def test_run_child_uses_the_given_interpreter(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import json, sys\nprint('noise')\nprint(json.dumps({'exe': sys.executable, '3': 1}))\n")
    res = child.run_child(str(script), [], python=sys.executable)
    assert res == {"exe": sys.executable, 3: 1}


def test_random_prompt_is_bos_text_start():
    p = random_prompt(500)
    assert p.shape == (500,) and p.dtype == np.int64
    assert p[-1] == LLASA_TOKENS.start_id and (p[1:-1] < LLASA_TOKENS.start_id).all()
