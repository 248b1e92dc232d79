"""Verifiers in a bundle: adding your own graph, listing, removing, voice embeddings, and bad input (unknown,
missing or corrupt verifier, a speaker verifier without a voice, ...) ending in one line (CLI: exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper

from llasa_rt.bundle import Bundle, VoiceEntry
from llasa_rt.bundle.voices import store_voice
from llasa_rt.cli import main
from llasa_rt.errors import BundleError, InputError
from llasa_rt.verifiers import ScoreContext, list_verifiers, load_verifier
from llasa_rt.verifiers.store import add_verifier, custom_details, embed_voices, remove_verifier


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, message: str) -> None:
    assert message in err, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mean_power_graph(path: Path, with_lengths: bool = True, output: str = "score") -> Path:
    """A user verifier: score = mean(audio^2) over each item's own samples (zero padding adds nothing)."""
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", "T"])]
    nodes = [helper.make_node("Mul", ["audio", "audio"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["total"], keepdims=0)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("audio_lengths", TensorProto.INT64, ["B"]))
        nodes += [helper.make_node("Cast", ["audio_lengths"], ["n"], to=TensorProto.FLOAT),
                  helper.make_node("Div", ["total", "n"], [output])]
    else:
        nodes.append(helper.make_node("Identity", ["total"], [output]))
    graph = helper.make_graph(nodes, "mean_power", inputs,
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["B"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def noise(n: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# ---- the exported bundle ------------------------------------------------------------------------------------------
def test_bundle_lists_and_info_shows_the_verifiers(verifier_bundle, capsys):
    bundle = Bundle.open(verifier_bundle)  # every verifier file's sha256 checked
    assert list_verifiers(bundle) == ["ge2e", "hubert", "unispeech", "wav2vec2", "wavlm"]
    kinds = {n: e.kind for n, e in bundle.manifest.verifiers.items()}
    assert kinds == {"ge2e": "speaker", "hubert": "asr", "unispeech": "speaker", "wav2vec2": "asr",
                     "wavlm": "speaker"}
    ge2e = bundle.manifest.verifiers["ge2e"]
    assert ge2e.file == "verifiers/ge2e.onnx" and ge2e.details["front_end"]["n_fft"] == 400
    assert ge2e.details["source"]["pretrained_pt_sha256"]
    # the voice that existed before the verifiers was embedded from its codes (decoded by the bundle's codec)
    alice = bundle.manifest.voices["alice"].embeddings
    assert set(alice) == {"ge2e", "wavlm", "unispeech"} and {e.source for e in alice.values()} == {"codes"}
    assert len(alice["ge2e"].vector) == 256 and abs(np.linalg.norm(alice["ge2e"].vector) - 1) < 1e-6
    code, out, _ = run_cli(["verifier", "list", "--bundle", verifier_bundle], capsys)
    assert code == 0 and "ge2e\tspeaker, GE2E, 256-dim, voices embedded: alice" in out
    assert "hubert\tasr, HubertForCTC, 32 tokens, batching pad_mask" in out
    code, out, _ = run_cli(["info", verifier_bundle, "--fast"], capsys)
    assert code == 0 and "verifier    wav2vec2: asr, Wav2Vec2ForCTC" in out


def test_scores_from_the_cli(verifier_bundle, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(24000), 24000)  # resampled to 16 kHz on reading
    code, out, _ = run_cli(["verifier", "score", "--bundle", verifier_bundle, "--name", "ge2e", "--voice", "alice",
                            "--text", "hi", wav], capsys)
    assert code == 0 and out.endswith(f"\t{wav}\n") and -1 <= float(out.split()[0]) <= 1
    code, out, _ = run_cli(["verifier", "score", "--bundle", verifier_bundle, "--name", "hubert", "--text", "hi",
                            "--json", wav], capsys)
    row = json.loads(out)
    assert code == 0 and {"score", "transcript", "wer", "reference"} <= set(row) and row["reference"] == "hi"


# ---- user graphs --------------------------------------------------------------------------------------------------
def test_add_a_user_score_verifier_and_remove_it(bundle_copy, tmp_path, capsys):
    graph = mean_power_graph(tmp_path / "power.onnx")
    code, out, _ = run_cli(["verifier", "add", "--bundle", bundle_copy, "--name", "power", "--onnx", graph,
                            "--batching", "pad_mask"], capsys)
    assert code == 0 and "added verifier 'power' (score)" in out
    verifier = load_verifier(Bundle.open(bundle_copy), "power")
    clips = [noise(16000, 1), noise(5000, 2, 0.5), np.zeros(0, np.float32)]
    scores = verifier.score(clips, ScoreContext(text="anything"))
    assert verifier.graph.runs == 1
    np.testing.assert_allclose(scores[:2], [np.mean(c.astype(np.float64) ** 2) for c in clips[:2]], rtol=1e-5)
    assert scores[2] == 0.0  # empty audio: the entry's empty_score
    code, _, _ = run_cli(["verifier", "remove", "--bundle", bundle_copy, "--name", "power"], capsys)
    assert code == 0 and not (bundle_copy / "verifiers" / "power.onnx").exists()
    assert "power" not in Bundle.open(bundle_copy).manifest.verifiers


def test_a_user_graph_without_lengths_runs_per_length(bundle_copy, tmp_path):
    graph = mean_power_graph(tmp_path / "sum.onnx", with_lengths=False)
    add_verifier(bundle_copy, "energy", graph, "score", custom_details(graph, "score"))
    verifier = load_verifier(Bundle.open(bundle_copy), "energy")
    clips = [noise(100, 1), noise(200, 2), noise(100, 3)]
    scores = verifier.score(clips, ScoreContext(text=""))
    assert verifier.graph.runs == 2 and verifier.graph.batching == "length_buckets"
    np.testing.assert_allclose(scores, [np.sum(c.astype(np.float64) ** 2) for c in clips], rtol=1e-5)


def test_a_user_speaker_verifier_gets_voice_embeddings(bundle_copy, tmp_path):
    """A speaker graph of the waveform contract: its dimension is read from the graph, voices are embedded."""
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", "T"])]
    nodes = [helper.make_node("Abs", ["audio"], ["a"]), helper.make_node("ReduceMean", ["a", "ax"], ["m"]),
             helper.make_node("ReduceMax", ["a", "ax"], ["x"]), helper.make_node("Concat", ["m", "x"], ["embedding"],
                                                                                  axis=1)]
    g = helper.make_graph(nodes, "stats", inputs, [helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                                                  ["B", "D"])],
                          [helper.make_tensor("ax", TensorProto.INT64, [1], [1])])
    path = tmp_path / "stats.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    details = custom_details(path, "speaker")
    assert details["embedding_dim"] == 2
    add_verifier(bundle_copy, "stats", path, "speaker", details)
    bundle = Bundle.open(bundle_copy)
    assert bundle.manifest.voices["alice"].embeddings["stats"].source == "codes"
    verifier = load_verifier(bundle, "stats")
    assert verifier.score([noise(8000)], ScoreContext(text="", voice="alice")).shape == (1,)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: mean_power_graph(p, output="value"), "has no output `score` [B]"),
    (lambda p: (p.write_bytes(b"not onnx at all"), p)[1], "ONNX Runtime cannot load"),
])
def test_a_graph_that_breaks_the_contract_is_refused_and_changes_nothing(bundle_copy, tmp_path, capsys, make,
                                                                         message):
    graph = make(tmp_path / "bad.onnx")
    before = snapshot(bundle_copy)
    code, _, err = run_cli(["verifier", "add", "--bundle", bundle_copy, "--name", "bad", "--onnx", graph], capsys)
    assert code == 2
    one_line(err, message)
    assert snapshot(bundle_copy) == before


# ---- bad input ----------------------------------------------------------------------------------------------------
def test_unknown_verifier(verifier_bundle, capsys):
    with pytest.raises(InputError, match=r"has no verifier 'nope' \(verifiers: ge2e, hubert, unispeech, wav2vec2, "
                                         r"wavlm\)"):
        load_verifier(Bundle.open(verifier_bundle, verify="fast"), "nope")
    code, _, err = run_cli(["verifier", "score", "--bundle", verifier_bundle, "--name", "nope", "--text", "x",
                            "a.wav"], capsys)
    assert code == 2
    one_line(err, "has no verifier 'nope'")


def test_verifier_missing_from_the_bundle(bundle_copy, capsys):
    (bundle_copy / "verifiers" / "hubert.onnx").unlink()
    with pytest.raises(BundleError, match=r"is missing verifiers/hubert\.onnx"):
        load_verifier(_manifest_only(bundle_copy), "hubert")
    code, _, err = run_cli(["verifier", "list", "--bundle", bundle_copy], capsys)
    assert code == 2
    one_line(err, "is missing verifiers/hubert.onnx")


def _manifest_only(folder: Path) -> Bundle:
    """A Bundle whose files were not checked on opening (as a long-running process holding it would see)."""
    from llasa_rt.bundle.reader import read_manifest

    return Bundle(folder, read_manifest(folder))


def test_corrupt_verifier_file(bundle_copy, capsys):
    path = bundle_copy / "verifiers" / "ge2e.onnx"
    data = bytearray(path.read_bytes())
    path.unlink()
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_verifier(_manifest_only(bundle_copy), "ge2e")
    # truncated, with a manifest that claims it is fine: ONNX Runtime refuses it in one line
    path.unlink()
    path.write_bytes(bytes(data[:1000]))
    from llasa_rt.bundle import sha256_file

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["verifiers"]["ge2e"]["sha256"] = sha256_file(path)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["verifier", "score", "--bundle", bundle_copy, "--name", "ge2e", "--voice", "alice",
                            "--text", "x", "a.wav"], capsys)
    assert code == 2
    one_line(err, "ONNX Runtime cannot load ge2e.onnx")


def test_speaker_verifier_without_a_reference_voice(verifier_bundle, tmp_path, capsys):
    verifier = load_verifier(Bundle.open(verifier_bundle, verify="fast"), "ge2e")
    assert verifier.needs_voice
    with pytest.raises(InputError, match=r"needs a reference voice; pass voice=NAME.*llasa-rt voice add"):
        verifier.score([noise(16000)], ScoreContext(text="hi"))
    with pytest.raises(InputError, match=r"has no voice 'bob' \(voices: alice\)"):
        verifier.score([noise(16000)], ScoreContext(text="hi", voice="bob"))
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(16000), 16000)
    code, _, err = run_cli(["verifier", "score", "--bundle", verifier_bundle, "--name", "wavlm", "--text", "x", wav],
                           capsys)
    assert code == 2
    one_line(err, "speaker verifier 'wavlm' needs a reference voice")


def test_voice_added_before_its_verifier_is_embedded_on_request(bundle_copy, capsys):
    bundle = Bundle.open(bundle_copy, verify="fast")
    codes = np.random.default_rng(5).integers(0, 65536, 40).astype(np.int32)
    store_voice(bundle, "bob", codes, VoiceEntry(file="", sha256="", transcript="Hi.", num_codes=40, seconds=0.8))
    verifier = load_verifier(Bundle.open(bundle_copy), "ge2e")
    with pytest.raises(InputError, match=r"voice 'bob' has no reference embedding for speaker verifier 'ge2e'.*"
                                         r"llasa-rt verifier embed"):
        verifier.score([noise(16000)], ScoreContext(text="hi", voice="bob"))
    code, out, _ = run_cli(["verifier", "embed", "--bundle", bundle_copy], capsys)
    assert code == 0 and "ge2e: embedded bob" in out
    bundle = Bundle.open(bundle_copy)
    assert bundle.manifest.voices["bob"].embeddings["ge2e"].source == "codes"
    assert load_verifier(bundle, "ge2e").score([noise(16000)], ScoreContext(text="hi", voice="bob")).shape == (1,)
    assert embed_voices(bundle_copy) == {"ge2e": [], "unispeech": [], "wavlm": []}  # nothing stale left


def test_stale_embedding_after_a_replaced_graph(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["voices"]["alice"]["embeddings"]["wavlm"]["verifier_sha256"] = "0" * 64
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    verifier = load_verifier(Bundle.open(bundle_copy), "wavlm")
    with pytest.raises(InputError, match="made by another version of verifier 'wavlm'"):
        verifier.score([noise(16000)], ScoreContext(text="", voice="alice"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["voices"]["alice"]["embeddings"]["ge2e"].update(vector="x"),
     "voices.alice.embeddings.ge2e.vector must be a list of 1 to 65536 finite numbers"),
    (lambda m: m["voices"]["alice"]["embeddings"]["ge2e"].update(source="guess"),
     "voices.alice.embeddings.ge2e.source must be one of recording, codes"),
    (lambda m: m["verifiers"]["hubert"].update(file="../outside.onnx"), "not a plain path inside the bundle"),
])
def test_hand_edited_manifest_is_refused_on_open(bundle_copy, capsys, change, message):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    change(manifest)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["info", bundle_copy, "--fast"], capsys)
    assert code == 2
    one_line(err, message)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda e: e.update(kind="emotion"), "has kind 'emotion', which this llasa-rt does not know"),
    (lambda e: e.update(sample_rate=22050), "takes 22050 Hz audio; llasa-rt verifiers take 16000 Hz"),
    (lambda e: e.update(blank_id=999), "verifiers.hubert.blank_id must be an integer in [0, 31]"),
    (lambda e: e.update(batching="maybe"), "verifiers.hubert.batching must be one of pad_mask, length_buckets"),
])
def test_malformed_verifier_entries(bundle_copy, capsys, edit, message):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    edit(manifest["verifiers"]["hubert"])
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["verifier", "score", "--bundle", bundle_copy, "--name", "hubert", "--text", "x",
                            "a.wav"], capsys)
    assert code == 2
    one_line(err, message)


def test_export_arguments_are_checked_first(bundle_copy, hf_verifier_folders, tmp_path, capsys):
    before = snapshot(bundle_copy)
    cases = [
        (["--speaker", str(hf_verifier_folders["HubertForCTC"])], "is a HubertForCTC (asr model); pass it as --asr"),
        (["--asr", str(tmp_path / "nowhere")], "is neither an existing folder nor a hub id"),
        (["--speaker", "resemblyzer"], "already has a verifier 'ge2e'"),
        (["--align", "kaldi"], "--align takes 'pocketsphinx'"),
        ([], "nothing to export"),
    ]
    for extra, message in cases:
        code, _, err = run_cli(["verifier", "export", "--bundle", bundle_copy, *extra], capsys)
        assert code == 2, extra
        one_line(err, message)
    code, _, err = run_cli(["verifier", "add", "--bundle", bundle_copy, "--name", "../x", "--onnx", "g.onnx"], capsys)
    assert code == 2
    one_line(err, "verifier name '../x' is not allowed")
    code, _, err = run_cli(["verifier", "remove", "--bundle", bundle_copy, "--name", "nope"], capsys)
    assert code == 2
    one_line(err, "has no verifier 'nope'")
    assert snapshot(bundle_copy) == before


def test_remove_drops_the_voice_embeddings_it_made(bundle_copy):
    remove_verifier(bundle_copy, "wavlm")
    bundle = Bundle.open(bundle_copy)
    assert "wavlm" not in bundle.manifest.verifiers and not (bundle_copy / "verifiers" / "wavlm.onnx").exists()
    assert set(bundle.manifest.voices["alice"].embeddings) == {"ge2e", "unispeech"}


def test_voice_add_embeds_the_recording(bundle_copy, real_speech):
    """`voice add` on a bundle with speaker verifiers stores each verifier's embedding of the recording itself."""
    from llasa_rt.export.voice import add_voice

    wav = real_speech["clone-test"][:3 * 16000]
    path = bundle_copy.parent / "ref.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    entry = add_voice(bundle_copy, "carol", path, "A test recording.")
    assert {k: e.source for k, e in entry.embeddings.items()} == {"ge2e": "recording", "wavlm": "recording",
                                                                  "unispeech": "recording"}
    verifier = load_verifier(Bundle.open(bundle_copy), "ge2e")
    other = real_speech["two_cities"][:3 * 16000]
    same, different = verifier.score([wav, other], ScoreContext(text="", voice="carol"))
    assert same == pytest.approx(1.0, abs=1e-6) and different < 0.7


def test_old_bundles_without_embeddings_still_load(full_bundle, tmp_path):
    """A bundle written before verifiers existed (no embeddings, no verifiers) opens, and its manifest is unchanged
    by a round trip through the typed schema."""
    copy = tmp_path / "old"
    shutil.copytree(full_bundle, copy)
    bundle = Bundle.open(copy)
    store_voice(bundle, "v", np.arange(10, dtype=np.int32),
                VoiceEntry(file="", sha256="", transcript="Ten codes.", num_codes=10, seconds=0.2))
    raw = json.loads((copy / "manifest.json").read_text())
    assert "embeddings" not in raw["voices"]["v"] and raw["verifiers"] == {}
    assert Bundle.open(copy).manifest.voices["v"].embeddings == {}


def test_verifiers_score_without_torch(verifier_bundle, tmp_path):
    """Loading and scoring every exported verifier kind, embedding voices and the verifier CLI (list, embed,
    score, remove) are runtime work: no torch, no transformers, no onnx."""
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(verifier_bundle, copy)
    probe = f"""
import numpy as np, soundfile as sf
from llasa_rt.bundle import Bundle
from llasa_rt.verifiers import ScoreContext, load_verifier
from llasa_rt.cli import main
bundle = Bundle.open({str(copy)!r})
audio = (0.1 * np.random.default_rng(0).standard_normal(20000)).astype(np.float32)
for name in ("ge2e", "wavlm", "hubert", "wav2vec2"):
    assert load_verifier(bundle, name).score([audio], ScoreContext(text="hi", voice="alice")).shape == (1,)
sf.write({str(tmp_path / "a.wav")!r}, audio, 16000)
assert main(["verifier", "list", "--bundle", {str(copy)!r}]) == 0
assert main(["verifier", "embed", "--bundle", {str(copy)!r}, "--force"]) == 0
assert main(["verifier", "score", "--bundle", {str(copy)!r}, "--name", "hubert", "--text", "hi",
             {str(tmp_path / "a.wav")!r}]) == 0
assert main(["verifier", "remove", "--bundle", {str(copy)!r}, "--name", "wavlm"]) == 0
bad = [m for m in ("torch", "transformers", "onnx") if m in sys.modules]
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", "import sys\n" + probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize(("audios", "context", "message"), [
    (np.zeros(100, np.float32), ScoreContext(text="x"), "takes a sequence of audios"),
    ([np.zeros((2, 100), np.float32)], ScoreContext(text="x"), "audio 0 must be a 1-D array of float samples"),
    ([np.zeros(10, np.float32), np.zeros(10, np.int16)], ScoreContext(text="x"), "convert 16-bit PCM"),
    ([np.array([0.0, np.nan], np.float32)], ScoreContext(text="x"), "audio 0 contains NaN"),
    ([np.zeros(10, np.float32)], "hello", "takes a ScoreContext"),
    ([np.zeros(10, np.float32)], ScoreContext(text=None), "ScoreContext.text must be a string"),
])
def test_bad_score_arguments(verifier_bundle, audios, context, message):
    verifier = load_verifier(Bundle.open(verifier_bundle, verify="fast"), "hubert")
    with pytest.raises(InputError, match=message):
        verifier.score(audios, context)


def test_export_from_the_cli_and_force_replaces(bundle_copy, hf_verifier_folders, capsys):
    folder = hf_verifier_folders["HubertForCTC"]
    code, out, _ = run_cli(["verifier", "export", "--bundle", bundle_copy, "--asr", folder], capsys)
    assert code == 0 and "added verifier 'HubertForCTC' (asr)" in out  # named after the folder
    code, _, err = run_cli(["verifier", "export", "--bundle", bundle_copy, "--asr", folder], capsys)
    assert code == 2
    one_line(err, "already has a verifier 'HubertForCTC'")
    code, _, _ = run_cli(["verifier", "export", "--bundle", bundle_copy, "--asr", folder, "--force"], capsys)
    assert code == 0 and Bundle.open(bundle_copy).manifest.verifiers["HubertForCTC"].kind == "asr"
    assert not [p for p in (bundle_copy / "verifiers").iterdir() if p.name.startswith(".")]  # no temporary files
