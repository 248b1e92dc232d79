"""What verifier-guided search costs, and what it buys, on the Llasa-1B shape (int4) with both verifiers.

    python bench/search.py [--threads 2] [--tokens 150] [--seed 1]

Set-up (cached under bench/out/): the random-weight Llasa-1B int4 bundle with the published X-Codec2 decoder size
(bench/speak.py), a reference voice spoken by espeak-ng, and two verifiers: the real GE2E speaker encoder from the
resemblyzer wheel ("speaker") and a CTC recogniser of HuBERT-base shape with random weights ("asr"; trained CTC
weights cannot be downloaded here, so its transcripts are noise, but its cost is real).

Rows: plain, best-of-4, best-of-8, beam 2x2 and 4x4 (C = 50), and beam 2x4 (8 live candidates), on one sentence,
with the wall time split into LM / codec / verifier time, RTF, and the ratio to the plain run in the same process.
Then the speaker similarity (GE2E, to the reference voice) of the chosen output for plain, best-of-8 and beam 4x4
over a few seeds. Random LM weights: only the ranking is meaningful, not the absolute similarities.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llasa_1b import OUT
from speak import bundle_with_codec

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
REFERENCE = "This is the voice that every candidate should sound like."


def search_bundle() -> Path:
    """bench/out/llasa-1b-search: the int4 + codec bundle (hard links) with a voice and both verifiers."""
    out = OUT / "llasa-1b-search"
    if (out / "manifest.json").is_file() and {"speaker", "asr"} <= set(_verifiers(out)):
        return out
    shutil.rmtree(out, ignore_errors=True)
    # Hard links: the bundle writer replaces files (temporary name + rename), so the source bundle never changes.
    shutil.copytree(bundle_with_codec("int4"), out, copy_function=os.link)
    wav = OUT / "reference.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), REFERENCE], check=True)
    from llasa_rt.export.verifiers import export_verifiers
    from llasa_rt.export.verifiers_tiny import make_tiny_verifier
    from llasa_rt.export.voice import add_voice

    add_voice(out, "ref", wav, REFERENCE)
    asr = OUT / "hubert-base-random"
    if not (asr / "config.json").is_file():
        shutil.rmtree(asr, ignore_errors=True)
        make_tiny_verifier(asr, "HubertForCTC", norm="group", size="base")
    export_verifiers(out, speaker="resemblyzer", asr=str(asr), speaker_name="speaker", asr_name="asr")
    return out


def _verifiers(bundle: Path) -> list[str]:
    import json

    return list(json.loads((bundle / "manifest.json").read_text()).get("verifiers", {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=150, help="codes per candidate (3 s of speech)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--similarity-seeds", type=int, default=3)
    a = ap.parse_args()

    import llasa_rt
    from llasa_rt.search import Search

    bundle = search_bundle()
    engine = llasa_rt.Engine(bundle, threads=a.threads, verify="fast")
    kw = dict(voice="ref", max_new_tokens=a.tokens, min_new_tokens=a.tokens, normalise=False)
    engine.speak("Warm up.", seed=0, voice="ref", max_new_tokens=10)
    configs = {
        "plain": None,
        "best-of-4": Search.parse("best-of-4", orm=("asr", "speaker")),
        "best-of-8": Search.parse("best-of-8", orm=("asr", "speaker")),
        "beam 2x2 (C 50)": Search.parse("beam:2x2:50", prm=("speaker",), orm=("asr", "speaker")),
        "beam 2x4 (C 50)": Search.parse("beam:2x4:50", prm=("speaker",), orm=("asr", "speaker")),
        "beam 4x4 (C 50)": Search.parse("beam:4x4:50", prm=("speaker",), orm=("asr", "speaker")),
    }
    rows = {}
    for name, search in configs.items():
        t0 = time.perf_counter()
        audio = engine.speak(TEXT, search=search, seed=a.seed, **kw)
        total = time.perf_counter() - t0
        t = audio.timings
        verifier = t.get("search_scorer_s", 0.0)
        codec = t["codec_s"] + t.get("search_codec_s", 0.0)
        rows[name] = {"total": total, "lm": t["prefill_s"] + t["decode_s"], "codec": codec, "verifier": verifier,
                      "rtf": total / audio.duration, "live": search.slots if search else 1}
    base = rows["plain"]["total"]
    print(f"\n{TEXT!r}: {a.tokens} codes ({a.tokens / 50:g} s) per candidate, Llasa-1B shape int4, published X-Codec2 "
          f"decoder, GE2E speaker + HuBERT-base-shaped CTC verifiers, {a.threads} threads")
    print("| run | live candidates | seconds | vs plain | RTF | LM s | codec s | verifier s | codec+verifier share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        share = (r["codec"] + r["verifier"]) / r["total"]
        print(f"| {name} | {r['live']} | {r['total']:.2f} | {r['total'] / base:.2f}x | {r['rtf']:.2f} | "
              f"{r['lm']:.2f} | {r['codec']:.2f} | {r['verifier']:.2f} | {100 * share:.0f}% |")

    # The error of scoring audio decoded from a window (last C + 25 codes after 25 voice codes) instead of a full
    # re-decode with the whole voice prompt in front, on the plain run's codes.
    from llasa_rt.export.codec import snr_db

    plain = engine.generate_codes(TEXT, seed=a.seed, voice="ref", max_new_tokens=a.tokens, min_new_tokens=a.tokens)
    voice = engine._voice("ref")
    full = engine._decode(plain.codes, voice)
    snrs = []
    for end in range(50, a.tokens + 1, 50):
        window = np.concatenate([voice.codes, plain.codes[:end]])[-75:]
        audio = engine.codec.decode(window)[-50 * 320:]
        snrs.append(snr_db(full[(end - 50) * 320:end * 320], audio))
    print(f"\nPRM window decode (C 50 + 25 context codes) vs full re-decode, SNR of each 1 s chunk: "
          f"{', '.join(f'{v:.1f}' for v in snrs)} dB (random decoder weights: a pessimistic figure)")

    from llasa_rt.bundle import Bundle
    from llasa_rt.verifiers import ScoreContext, load_verifier

    speaker = load_verifier(Bundle.open(bundle, verify="fast"), "speaker", a.threads)
    ctx = ScoreContext(text=TEXT, voice="ref")
    sims: dict[str, list[float]] = {"plain": [], "best-of-8": [], "beam 4x4 (C 50)": []}
    for seed in range(a.similarity_seeds):
        for name in sims:
            audio = engine.speak(TEXT, search=configs[name], seed=100 + seed, **kw)
            sims[name].append(float(speaker.score([audio.samples], ctx)[0]))
    print("\nspeaker similarity (GE2E cosine) of the chosen output to the reference voice, mean over "
          f"{a.similarity_seeds} seeds (random LM weights: only the ranking means something)")
    for name, values in sims.items():
        print(f"| {name} | {np.mean(values):.3f} | {' '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
