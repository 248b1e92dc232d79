"""Prefill with and without the int8 prefill graph (`export --prefill-int8`) on the Llasa-1B shape (int4).

Each bundle runs in its own process, 2 threads: the Engine's C++ generator prefills random prompts of 60, 250 and
500 tokens (best of 2 after a warm-up at that length), then 8 candidates decode 30 steps (the decode graph must not
change). Prints tokens/s and the ratios measured in this run. The prefill bundle is exported on first use
(bench/out/llasa-1b-random-int4-prefill8). Usage:

    python bench/prefill.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from child import emit, run_child
from llasa_1b import OUT, bundle, checkpoint, prefill_rates, random_prompt

LENGTHS = (60, 250, 500)


def prefill_bundle() -> Path:
    from llasa_rt.export.bundle_export import export_bundle

    b = OUT / "llasa-1b-random-int4-prefill8"
    if not (b / "manifest.json").is_file():
        t0 = time.perf_counter()
        export_bundle(str(checkpoint(OUT)), b, precision="int4", prefill_int8=True, overwrite=True, verify=False,
                      log=lambda m: None)
        print(f"exported int4 + int8 prefill graph in {time.perf_counter() - t0:.0f} s", flush=True)
    return b


def child(b: Path, threads: int) -> dict:
    import llasa_rt

    engine = llasa_rt.Engine(b, threads=threads, verify="fast")
    out = {"prefill": prefill_rates(engine, LENGTHS)}
    generator = engine.lm.generator(8)
    opts, _ = engine.sampling_options(llasa_rt.GenerationOptions(max_new_tokens=30, min_new_tokens=30, seed=1),
                                      engine.max_context)
    generator.generate(random_prompt(60), options=opts, num_candidates=8)
    t = generator.generate(random_prompt(60), options=opts, num_candidates=8).timings
    out["decode8"] = 8 * len(t.forward_seconds) / (sum(t.forward_seconds) + sum(t.core_seconds))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        emit(child(Path(a.child), a.threads))
        return
    paths = {"int4": bundle("int4"), "int4 + int8 prefill graph": prefill_bundle()}
    res = {k: run_child(__file__, ["--child", str(p), "--threads", str(a.threads)]) for k, p in paths.items()}
    base = res["int4"]
    print(f"\nLlasa-1B shape, random weights, {a.threads} threads; prefill tokens/s by prompt length, then 8 "
          "candidates' aggregate decode tokens/s")
    print(f"{'bundle':28s} " + " ".join(f"{n:>8d}" for n in LENGTHS) + f" {'decode 8':>9s}")
    for k, r in res.items():
        print(f"{k:28s} " + " ".join(f"{r['prefill'][n]:8.1f}" for n in LENGTHS) + f" {r['decode8']:9.1f}")
    r = res["int4 + int8 prefill graph"]
    ratios = ", ".join(f"{n}: {r['prefill'][n] / base['prefill'][n]:.2f}x" for n in LENGTHS)
    print(f"prefill ratio: {ratios}; decode ratio {r['decode8'] / base['decode8']:.2f}x")
    gain = r["prefill"][500] / base["prefill"][500]
    print(f"target: 500-token prefill >= 1.5x the int4 bundle: {gain:.2f}x, {'met' if gain >= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
