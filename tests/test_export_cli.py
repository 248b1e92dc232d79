"""`llasa-rt export` / `info` / `make-tiny` from the command line, including bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from llasa_rt.bundle import Bundle
from llasa_rt.cli import main
from llasa_rt.errors import BundleError


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_writes_a_complete_bundle(tiny_bundle):
    bundle = Bundle.open(tiny_bundle("h64", "fp32"))
    m = bundle.manifest
    assert set(m.graphs) == {"lm"}
    assert {"lm.onnx", "lm.onnx.data", "tokenizer.json"} <= set(m.all_files())
    assert m.model.num_layers == 2 and m.model.head_dim == 64 and m.model.num_kv_heads == 8
    assert m.tokens.speech_base_id == 128264 and m.tokens.end_id == 128261  # Llasa's published ids
    assert m.tokens.head_rows_json() == [{"row": 0, "token": 128264, "count": 65536},
                                     {"row": 65536, "token": 128261, "count": 1}]
    assert m.generation.temperature == 0.8 and m.generation.top_p == 1.0
    assert m.sources["lm"]["files"]["config.json"]


def test_info_prints_and_verifies(tiny_bundle, capsys):
    code, out, _ = run_cli(["info", tiny_bundle("h64", "fp32")], capsys)
    assert code == 0
    assert "graph       lm: lm.onnx" in out and "all sha256 match" in out


def test_info_detects_a_corrupt_file(tiny_bundle, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle("h64", "fp32"), copy)
    with open(copy / "tokenizer.json", "ab") as f:
        f.write(b" ")
    code, _, err = run_cli(["info", copy], capsys)
    assert code == 2 and "tokenizer.json does not match its sha256" in err
    code, _, _ = run_cli(["info", "--fast", copy], capsys)  # presence-only check passes
    assert code == 0
    (copy / "lm.onnx.data").unlink()
    code, _, err = run_cli(["info", "--fast", copy], capsys)
    assert code == 2 and "missing lm.onnx.data" in err


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "does not exist"),
    ("file", "is a file"),
    ("no_manifest", "has no manifest.json"),
    ("bad_json", "not JSON"),
    ("future", "format version 99 is not supported"),
])
def test_bundle_open_errors(setup, message, tmp_path, tiny_bundle):
    path = tmp_path / "b"
    if setup == "file":
        path.write_text("x")
    elif setup != "missing":
        shutil.copytree(tiny_bundle("h64", "fp32"), path)
        if setup == "no_manifest":
            (path / "manifest.json").unlink()
        elif setup == "bad_json":
            (path / "manifest.json").write_text("{not json")
        elif setup == "future":
            m = json.loads((path / "manifest.json").read_text())
            m["format_version"] = 99
            (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=message):
        Bundle.open(path)


def _no_partials(folder) -> bool:
    return not any(".partial-" in p.name for p in folder.iterdir())


def test_refuses_non_empty_output_and_overwrites_only_bundles(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(["export", "--model", tiny_checkpoint("h64"), "--out", out], capsys)
    assert code == 2 and "is not empty; pass --overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite never deletes a folder of the user's files: only a bundle (or an empty folder) is replaced.
    code, _, err = run_cli(["export", "--model", tiny_checkpoint("h64"), "--out", out, "--overwrite", "--no-verify"],
                           capsys)
    assert code == 2 and "not a llasa-rt bundle" in err and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    code, _, _ = run_cli(["export", "--model", tiny_checkpoint("h64"), "--out", out, "--no-verify"], capsys)
    assert code == 0 and (out / "manifest.json").is_file()
    (out / "extra.txt").write_text("x")  # a bundle with one more file is still a bundle
    code, _, _ = run_cli(["export", "--model", tiny_checkpoint("h64"), "--out", out, "--overwrite", "--no-verify"],
                         capsys)
    assert code == 0 and not (out / "extra.txt").exists() and (out / "manifest.json").is_file()
    assert _no_partials(tmp_path)


def test_unknown_precision_is_refused(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", str(tiny_checkpoint("h64")), "--out", str(tmp_path / "o"), "--precision", "int3"])
    assert e.value.code == 2
    assert "invalid choice: 'int3'" in capsys.readouterr().err
    from llasa_rt.export.bundle_export import export_bundle

    with pytest.raises(BundleError, match="unknown precision 'bf8'"):
        export_bundle(str(tiny_checkpoint("h64")), tmp_path / "o", precision="bf8")
    assert not (tmp_path / "o").exists()


def _broken_copy(src, dst, how: str):
    shutil.copytree(src, dst)
    if how == "vocab":
        cfg = json.loads((dst / "config.json").read_text())
        cfg["vocab_size"] = 128256
        (dst / "config.json").write_text(json.dumps(cfg))
    elif how == "arch":
        cfg = json.loads((dst / "config.json").read_text())
        cfg["model_type"], cfg["architectures"] = "qwen2", ["Qwen2ForCausalLM"]
        (dst / "config.json").write_text(json.dumps(cfg))
    elif how == "tokenizer":
        tok = json.loads((dst / "tokenizer.json").read_text())
        for entry in tok["added_tokens"]:
            if entry["content"] == "<|s_0|>":
                entry["content"] = "<|speech_0|>"
        (dst / "tokenizer.json").write_text(json.dumps(tok))
    elif how == "no_tokenizer":
        (dst / "tokenizer.json").unlink()
    elif how == "no_weights":
        (dst / "model.safetensors").unlink()
    elif how == "no_config":
        (dst / "config.json").unlink()


@pytest.mark.parametrize(("how", "message"), [
    ("vocab", "vocab_size 128256 < 193800"),
    ("arch", "model_type='qwen2'"),
    ("tokenizer", "does not have Llasa's token layout: <|s_0|>"),
    ("no_tokenizer", "has no tokenizer.json"),
    ("no_weights", "has no *.safetensors weights"),
    ("no_config", "has no config.json"),
])
def test_not_a_llasa_checkpoint(how, message, tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    _broken_copy(tiny_checkpoint("h64"), bad, how)
    code, _, err = run_cli(["export", "--model", bad, "--out", tmp_path / "out"], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and _no_partials(tmp_path)


def test_failure_half_way_leaves_no_partial_bundle(tiny_checkpoint, tmp_path, monkeypatch):
    """A crash after lm.onnx is written (here: the prompt step) removes the staged folder."""
    from llasa_rt.export import bundle_export

    def boom(*a, **k):
        raise RuntimeError("simulated failure half-way")

    monkeypatch.setattr(bundle_export, "render_prompt", boom)
    with pytest.raises(RuntimeError, match="half-way"):
        bundle_export.export_bundle(str(tiny_checkpoint("h64")), tmp_path / "out", verify=False, log=lambda m: None)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_offline_hub_id_gives_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["export", "--model", "HKUSTAudio/Llasa-1B", "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert "could not get 'HKUSTAudio/Llasa-1B' from the Hugging Face hub" in err
    assert "--model /path/to/folder" in err


def test_make_tiny_cli_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "t"
    r = subprocess.run([sys.executable, "-m", "llasa_rt.cli", "make-tiny", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from llasa_rt.export.checkpoint import check_llasa, resolve

    ckpt = check_llasa(resolve(str(out), []))
    assert ckpt.config["vocab_size"] == 193800
    r = subprocess.run([sys.executable, "-m", "llasa_rt.cli", "make-tiny", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "is not empty" in r.stderr


def test_console_script_is_installed():
    exe = shutil.which("llasa-rt")
    assert exe, "the llasa-rt console script is not on PATH"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("llasa-rt ")


def test_export_with_codec_writes_both_graphs_and_info_lists_them(tiny_checkpoint, tiny_codec, tmp_path, capsys):
    out = tmp_path / "full"
    code, _, err = run_cli(["export", "--model", tiny_checkpoint("h64"), "--codec", tiny_codec, "--out", out,
                            "--precision", "int8"], capsys)
    assert code == 0, err
    m = Bundle.open(out).manifest
    assert set(m.graphs) == {"lm", "codec_decoder"}
    assert m.graphs["codec_decoder"].precision == "fp32"
    assert m.sources["codec"]["model_safetensors_sha256"]
    assert m.sources["codec"]["id"] == str(tiny_codec.resolve())  # absolute: `voice add` works from anywhere
    code, text, _ = run_cli(["info", out], capsys)
    assert code == 0 and "graph       codec_decoder: codec_decoder.onnx" in text


def test_bad_codec_fails_before_the_lm_is_built(tiny_checkpoint, tmp_path, capsys):
    code, _, err = run_cli(["export", "--model", tiny_checkpoint("h64"), "--codec", tmp_path, "--out",
                            tmp_path / "o"], capsys)
    assert code == 2 and "has no config.json: it is not an X-Codec2 checkpoint" in err
    assert not (tmp_path / "o").exists()
