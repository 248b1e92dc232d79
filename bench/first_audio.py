"""Prefill speed and time to first audio of llasa-rt on the Llasa-1B shape (int4 bundle with the X-Codec2 decoder).

Random weights with the real shapes (bench/speak.py's bundle: bench/llasa_1b.py checkpoint + bench/codec_setup.py
codec). Rows:

- prefill tokens/s of 60-, 250- and 500-token prompts: the C++ Generator's own prefill timing
  (`prefill_forward_seconds + prefill_core_seconds`: one ONNX Runtime run over the whole prompt + sampling the
  first token), best of 2 after a warm-up run at that length;
- time to first audio of `Engine.speak_stream` (default StreamingConfig: the first chunk is 1 s of audio, so it
  covers the prefill, 50 decode steps and one codec run) for a plain sentence and for the same sentence spoken in
  a cloned voice: the voice prompt carries a reference transcript and 500 reference codes (10 s). `llasa-rt voice
  add` needs the X-Codec2 encoder, which a random offline bundle does not have, so the voice is stored in a copy
  of the bundle directly (`llasa_rt.bundle.voices.store_voice`, as the tests do) with random codes; the prompt it
  makes is the one a real voice of that length makes.

Usage:

    python bench/first_audio.py [--threads 2] [--precision int4] [--flavours fused,layered]

Each LM flavour (`export --lm-flavour`) runs in its own process; the layered one runs prompts and steps on
llasa-rt's own kernels where the CPU has AVX-512 VNNI (native decode), the ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
from child import emit, run_child
from llasa_1b import OUT, prefill_rates
from speak import bundle_with_codec

from llasa_rt.layout import LLASA_TOKENS as T

TEXT = "The quick brown fox jumps over the lazy dog, and the children watch from the garden."
VOICE_TRANSCRIPT = ("This is the reference recording of the speaker, read slowly and clearly in a quiet room, so "
                    "that the model hears how this voice sounds.")
VOICE_CODES = 500
PREFILL_LENGTHS = (60, 250, 500)


def voice_bundle(b: Path) -> Path:
    """A copy of bundle `b` (weights hard-linked) with a voice "ref" of VOICE_CODES random codes."""
    from llasa_rt.bundle import Bundle
    from llasa_rt.bundle.manifest import VoiceEntry
    from llasa_rt.bundle.voices import store_voice

    v = OUT / f"{b.name}-voice"
    if (v / "manifest.json").is_file() and "ref" in Bundle.open(v, verify="fast").manifest.voices:
        return v
    shutil.rmtree(v, ignore_errors=True)
    v.mkdir(parents=True)
    for f in b.iterdir():
        if f.is_file():
            (shutil.copy2 if f.name == "manifest.json" else os.link)(f, v / f.name)
    codes = np.random.default_rng(0).integers(0, T.speech_count, VOICE_CODES).astype(np.int32)
    store_voice(Bundle.open(v, verify="fast"), "ref", codes,
                VoiceEntry(file="", sha256="", transcript=VOICE_TRANSCRIPT, num_codes=VOICE_CODES,
                           seconds=VOICE_CODES / 50))
    return v


def child(bundle: str, threads: int) -> dict:
    import llasa_rt

    engine = llasa_rt.Engine(bundle, threads=threads, verify="fast")
    out: dict = {"prefill": prefill_rates(engine, PREFILL_LENGTHS)}
    engine.speak("Warm up.", max_new_tokens=20, seed=0)
    for name, voice in (("plain", None), ("cloned", "ref")):
        prompt, _, _ = engine.prepare(TEXT, engine._voice(voice), llasa_rt.GenerationOptions(seed=1))
        firsts = []
        for _ in range(2):
            t0 = time.perf_counter()
            stream = engine.speak_stream(TEXT, voice=voice, max_new_tokens=200, min_new_tokens=200, seed=1)
            first = next(iter(stream))
            firsts.append(time.perf_counter() - t0)
            stream.close()
        out[name] = {"prompt_tokens": len(prompt), "first_audio_s": min(firsts), "first_chunk_s": len(first) / 16000}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int4", choices=["fp32", "int8", "int4"])
    ap.add_argument("--flavours", default="fused,layered", help="LM flavours, each in its own process")
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        emit(child(a.child, a.threads))
        return
    flavours = [f for f in a.flavours.split(",") if f]
    if not flavours or any(f not in ("fused", "layered") for f in flavours):
        raise SystemExit("--flavours takes a comma-separated list of fused, layered")
    results = {}
    for flavour in flavours:
        b = voice_bundle(bundle_with_codec(a.precision, flavour))
        r = results[flavour] = run_child(__file__, ["--child", str(b), "--threads", str(a.threads)])
        print(f"\nllasa-rt {a.precision} {flavour}, Llasa-1B shape + X-Codec2 decoder, random weights, "
              f"{a.threads} threads")
        print("| prompt tokens | prefill tok/s |")
        print("|---|---|")
        for n, v in r["prefill"].items():
            print(f"| {n} | {v:.1f} |")
        print("\n| speak_stream | prompt tokens | first audio s | first chunk s |")
        print("|---|---|---|---|")
        for name in ("plain", "cloned"):
            x = r[name]
            what = "plain sentence" if name == "plain" else f"cloned voice ({VOICE_CODES} reference codes)"
            print(f"| {what} | {x['prompt_tokens']} | {x['first_audio_s']:.2f} | {x['first_chunk_s']:.2f} |")
        print(f"cloned / plain first audio: {r['cloned']['first_audio_s'] / r['plain']['first_audio_s']:.2f}x")
    if len(results) == 2:
        f, g = results["fused"], results["layered"]
        prefill = ", ".join(f"{n}: {g['prefill'][n] / f['prefill'][n]:.2f}x" for n in f["prefill"])
        print(f"\nlayered / fused prefill tok/s by prompt tokens: {prefill}; first audio fused / layered: plain "
              f"{f['plain']['first_audio_s'] / g['plain']['first_audio_s']:.2f}x, cloned "
              f"{f['cloned']['first_audio_s'] / g['cloned']['first_audio_s']:.2f}x")


if __name__ == "__main__":
    main()
