"""Verifier cost per call: ms for one `score()` call at batch 1 and 8, each exported verifier, with its source model
(PyTorch) timed in the same run as the baseline.

    python bench/verifiers.py [--seconds 3] [--threads 2] [--repeats 5] [--only ge2e,wavlm-base,...]

Verifiers (each in its own child process):
- ge2e: resemblyzer's GE2E (the real trained weights); baseline resemblyzer `embed_utterance` per audio;
- wavlm-base: WavLMForXVector with the shape of microsoft/wavlm-base-plus-sv (random weights; speed does not
  depend on their values); baseline transformers `WavLMForXVector` on the same batch;
- wav2vec2-base: Wav2Vec2ForCTC with the shape of facebook/wav2vec2-base-960h (group-norm front end:
  length buckets), and hubert-large: HubertForCTC with the shape of facebook/hubert-large-ls960-ft (pad + mask);
- align-en: pocketsphinx forced alignment (one audio at a time; no batching).

"batch 8" = 8 audios of the same length (as in a beam search round); "batch 8 mixed" = lengths from 0.5x to 1.5x,
which costs one run per distinct length for length-bucketed graphs. Not part of CI. Benchmark on an idle machine:
two threads on two cores collapse under any competing load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import emit, run_child

VERIFIERS = {"ge2e": ("resemblyzer", None, None), "wavlm-base": ("WavLMForXVector", "group", "base"),
             "wav2vec2-base": ("Wav2Vec2ForCTC", "group", "base"), "hubert-large": ("HubertForCTC", "layer", "large"),
             "align-en": ("pocketsphinx", None, None)}
TEXT = "It was the best of times, it was the worst of times."


def speech(seconds: float, count: int, mixed: bool, seed: int = 0) -> list[np.ndarray]:
    """Speech-like test audio (harmonics under a syllable envelope + noise), `count` clips."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        length = seconds * (0.5 + i / max(1, count - 1)) if mixed else seconds
        t = np.arange(int(length * 16000)) / 16000
        phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / 16000
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        out.append((0.2 * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def child(name: str, seconds: float, threads: int, repeats: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from llasa_rt.bundle import Bundle
    from llasa_rt.export.codec import export_codec_bundle
    from llasa_rt.export.tiny_codec import make_tiny_xcodec2
    from llasa_rt.export.verifiers import export_verifiers
    from llasa_rt.export.verifiers_tiny import make_tiny_verifier
    from llasa_rt.verifiers import ScoreContext, load_verifier

    source, norm, size = VERIFIERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle_dir = export_codec_bundle(make_tiny_xcodec2(work / "codec", "tiny", seed=0), work / "bundle", "fp32")
        t0 = time.perf_counter()
        if source == "resemblyzer":
            export_verifiers(bundle_dir, speaker="resemblyzer", speaker_name=name, log=lambda m: None)
        elif source == "pocketsphinx":
            export_verifiers(bundle_dir, align="pocketsphinx", align_name=name, log=lambda m: None)
        else:
            folder = make_tiny_verifier(work / "model", source, norm=norm, size=size, seed=0)
            kind = "speaker" if source.endswith("XVector") else "asr"
            export_verifiers(bundle_dir, **{kind: str(folder), f"{kind}_name": name}, log=lambda m: None)
        export_s = time.perf_counter() - t0
        bundle = Bundle.open(bundle_dir)
        entry = bundle.manifest.verifiers[name]
        size_mb = sum(bundle.path(f).stat().st_size for f in [entry.file, *entry.files]) / 1e6
        verifier = load_verifier(bundle, name, threads)
        if verifier.kind == "speaker":  # a reference embedding for the voice-free timing path
            def score(clips):
                return verifier.embed(clips)
        else:
            def score(clips):
                return verifier.score(clips, ScoreContext(text=TEXT))
        one, eight, mixed = speech(seconds, 1, False), speech(seconds, 8, False), speech(seconds, 8, True)
        result = {"name": name, "kind": verifier.kind, "size_mb": size_mb, "export_s": export_s,
                  "batching": entry.details.get("batching", "one at a time"),
                  "b1": timed(lambda: score(one), repeats), "b8": timed(lambda: score(eight), repeats),
                  "b8_mixed": timed(lambda: score(mixed), repeats)}
        result.update(baseline(source, work, one, eight, repeats))
    emit(result)


def baseline(source: str, work: Path, one: list, eight: list, repeats: int) -> dict:
    """The source model in PyTorch on the same audio (None where there is no PyTorch source)."""
    import torch

    if source == "resemblyzer":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import normalize_volume
        enc = VoiceEncoder("cpu", verbose=False)

        def run(clips):
            return [enc.embed_utterance(normalize_volume(c, -30, increase_only=True)) for c in clips]
    elif source == "pocketsphinx":
        return {"base_b1": None, "base_b8": None}
    else:
        import transformers
        from transformers import Wav2Vec2FeatureExtractor

        model = getattr(transformers, source).from_pretrained(str(work / "model")).eval()
        fe = Wav2Vec2FeatureExtractor.from_pretrained(str(work / "model"))

        def run(clips):
            with torch.no_grad():
                return model(**fe(clips, sampling_rate=16000, return_tensors="pt", padding=True))
    return {"base_b1": timed(lambda: run(one), repeats), "base_b8": timed(lambda: run(eight), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio length per item (default 3 s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=",".join(VERIFIERS), help="comma-separated verifiers to run")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds, args.threads, args.repeats)
        return
    print(f"verifier cost per call: {args.seconds:g} s audio per item, {args.threads} threads, median of "
          f"{args.repeats}")
    print(f"{'verifier':14} {'kind':9} {'MB':>7} {'batching':15} {'b1 ms':>8} {'b8 ms':>8} {'b8 mixed':>9} "
          f"{'ms/audio@8':>10} {'torch b1':>9} {'torch b8':>9}")
    for name in args.only.split(","):
        r = run_child(__file__, ["--child", name, "--seconds", str(args.seconds), "--threads", str(args.threads),
                                 "--repeats", str(args.repeats)])

        def fmt(v, w):
            return f"{v:>{w}.1f}" if v is not None else f"{'-':>{w}}"
        print(f"{r['name']:14} {r['kind']:9} {r['size_mb']:7.1f} {r['batching']:15} {fmt(r['b1'], 8)} "
              f"{fmt(r['b8'], 8)} {fmt(r['b8_mixed'], 9)} {fmt(r['b8'] / 8, 10)} {fmt(r['base_b1'], 9)} "
              f"{fmt(r['base_b8'], 9)}", flush=True)


if __name__ == "__main__":
    main()
