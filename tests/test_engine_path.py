"""`Engine(path)` takes what a user has in hand: a bundle folder or an LM graph file inside it, which picks the LM
entry (and its backend) from the manifest; anything else is refused with one line that says the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from llasa_rt import Engine
from llasa_rt.backends.ort import OrtLmBackend
from llasa_rt.backends.portable import PortableLmBackend
from llasa_rt.bundle import LM_GRAPH, LM_PORTABLE_GRAPH, Bundle
from llasa_rt.errors import BundleError

EXE = shutil.which("llasa-rt")


@pytest.fixture(scope="module")
def both_bundle(tiny_checkpoint, tiny_codec, tmp_path_factory):
    """Tiny LM exported with --target both (lm.onnx + lm.portable.onnx) and the tiny codec."""
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("both") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, precision="fp32", target="both", codec=str(tiny_codec),
                         log=lambda m: None)


@pytest.fixture(scope="module")
def portable_only(tiny_checkpoint, tmp_path_factory):
    from llasa_rt.export.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("portable-only") / "bundle"
    return export_bundle(str(tiny_checkpoint("h64")), out, precision="fp16", target="portable", log=lambda m: None)


def _greedy(engine: Engine) -> np.ndarray:
    return engine.generate_codes("Hello there, how are you?", temperature=0, max_new_tokens=25, seed=1).codes


def test_folder_and_graph_files_pick_their_lm(both_bundle):
    runs = {}
    for given, graph, backend in [(both_bundle, LM_GRAPH, OrtLmBackend),
                                  (both_bundle / "lm.onnx", LM_GRAPH, OrtLmBackend),
                                  (both_bundle / "lm.portable.onnx", LM_PORTABLE_GRAPH, PortableLmBackend),
                                  (both_bundle / "manifest.json", LM_GRAPH, OrtLmBackend)]:
        engine = Engine(given, threads=1)
        assert engine.lm_graph == graph
        engine.lm.generator(1)
        assert type(engine.lm.backend) is backend
        runs[str(given)] = _greedy(engine)
    first = runs[str(both_bundle)]
    assert len(first) == 25 and len(set(first.tolist())) > 3
    for codes in runs.values():  # both fp32 graphs are the model: the same greedy codes
        np.testing.assert_array_equal(codes, first)


def test_portable_only_bundle_runs_its_portable_lm(portable_only):
    engine = Engine(portable_only, threads=1)
    assert engine.lm_graph == LM_PORTABLE_GRAPH and engine.model.kv_dtype == "float16"
    codes = engine.generate_codes("Hi.", temperature=0.8, max_new_tokens=10, seed=3, num_candidates=2).codes
    assert len(codes) == 10


def test_bad_paths_are_refused_with_the_fix(both_bundle, tmp_path):
    with pytest.raises(BundleError, match=r"does not exist; bundle .* has these LM graphs: .*lm.onnx"):
        Engine(both_bundle / "lm.int4.onnx")
    with pytest.raises(BundleError, match=r"is not an LM graph of bundle .*; pass the bundle folder or one of"):
        Engine(both_bundle / "codec_decoder.onnx")
    stray = tmp_path / "model.onnx"
    stray.write_bytes(b"not a graph")
    with pytest.raises(BundleError, match=r"is a file, not a bundle folder, and no manifest\.json is next to it"):
        Engine(stray)
    with pytest.raises(BundleError, match="does not exist; pass a bundle folder made by `llasa-rt export`"):
        Engine(tmp_path / "nowhere" / "lm.onnx")
    copy = tmp_path / "copy"
    shutil.copytree(both_bundle, copy)
    (copy / "notes.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"'.*notes.onnx' is not listed in manifest.json of bundle"):
        Engine(copy / "notes.onnx")


def test_a_plan_without_tensorrt_says_what_to_do(both_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as on any machine without it
    copy = tmp_path / "copy"
    shutil.copytree(both_bundle, copy)
    (copy / "lm.plan").write_bytes(b"plan")
    with pytest.raises(BundleError) as e:
        Engine(copy / "lm.plan")
    msg = str(e.value)
    assert "\n" not in msg
    assert "install TensorRT on an NVIDIA GPU machine and run `llasa-rt build-engine`" in msg
    assert f"{copy}/lm.onnx or {copy}/lm.portable.onnx instead" in msg
    with pytest.raises(BundleError, match="build it with `llasa-rt build-engine`"):
        Engine(both_bundle / "lm.plan")


def test_manifest_checks_the_portable_entry(portable_only, tmp_path):
    def broken(change) -> None:
        copy = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(portable_only, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        change(manifest["graphs"][LM_PORTABLE_GRAPH])
        (copy / "manifest.json").write_text(json.dumps(manifest))
        Bundle.open(copy, verify="fast")

    with pytest.raises(BundleError, match=r"details\.kv_capacity \(1024\) differs from model\.max_context \(2048\)"):
        broken(lambda g: g["details"].update(kv_capacity=1024))
    with pytest.raises(BundleError, match=r"details.kv_dtype must be one of"):
        broken(lambda g: g["details"].update(kv_dtype="int8"))
    with pytest.raises(BundleError, match="but backend is 'tensorrt'"):
        broken(lambda g: g.update(backend="tensorrt"))


def test_export_refuses_a_quantised_portable_graph(tiny_checkpoint, tmp_path):
    from llasa_rt.export.bundle_export import export_bundle

    with pytest.raises(BundleError, match="portable LM graph is fp32 or fp16"):
        export_bundle(str(tiny_checkpoint("h64")), tmp_path / "b", precision="int4", target="portable")
    assert not (tmp_path / "b").exists()


def test_cli_speaks_with_a_graph_file_and_refuses_a_bad_one(both_bundle, tmp_path):
    out = tmp_path / "a.wav"
    r = subprocess.run([EXE, "speak", "--bundle", str(both_bundle / "lm.portable.onnx"), "Hello.", "-o", str(out),
                        "--seed", "5", "--max-new-tokens", "20"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    data, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and len(data) == 20 * 320
    r = subprocess.run([EXE, "speak", "--bundle", str(both_bundle / "tokenizer.json"), "Hello.", "-o", str(out)],
                       capture_output=True, timeout=300)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "is not an LM graph of bundle" in lines[0]


def test_compare_takes_graph_files(both_bundle, capsys):
    from llasa_rt.cli import main
    from llasa_rt.evaluation.drift import measure_drift

    report = measure_drift(both_bundle / "lm.onnx", both_bundle / "lm.portable.onnx", ["Hello there."], steps=8)
    print(report)
    assert report.top1_agreement == 1.0 and 0.0 < report.max_abs_logit_diff <= 1e-4
    assert main(["compare", str(both_bundle), str(both_bundle / "lm.portable.onnx"), "--steps", "2"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out


def test_request_batching_on_the_portable_graph_equals_solo_runs(both_bundle):
    """The server's loop (Scheduler -> forward_rows) over the portable graph: requests joining at different steps,
    with prompts of different lengths, get what they get alone."""
    from llasa_rt import GenerationOptions
    from llasa_rt.batching import RequestBatcher

    engine = Engine(both_bundle / "lm.portable.onnx", threads=1)
    requests = [("The first request starts alone.", dict(seed=1, temperature=0.8, max_new_tokens=30), 0),
                ("A second, greedy one with a longer prompt arrives later on.",
                 dict(seed=2, temperature=0.0, max_new_tokens=20, min_new_tokens=20), 3),
                ("Third: two candidates.", dict(seed=3, temperature=1.0, num_candidates=2, max_new_tokens=15), 5)]
    batcher = RequestBatcher(engine, max_batch=5, prefill_chunk=8)
    handles, step = {}, 0
    while len(handles) < len(requests) or batcher.scheduler.running or batcher.scheduler.queued:
        for i, (text, opts, at) in enumerate(requests):
            if at == step and i not in handles:
                handles[i] = batcher.submit(text, GenerationOptions(**opts))
        batcher.step()
        step += 1
        assert step < 300
    for i, (text, opts, _) in enumerate(requests):
        alone = engine.generate_codes(text, GenerationOptions(**opts))
        got = handles[i].wait(timeout=0)
        assert [c.tokens.tolist() for c in got.candidates] == [c.codes.tolist() for c in alone.candidates], i
    assert any(handles[i].result.timings["shared_rows"] > 0 for i in handles)
