"""Native decode steps against ONNX Runtime's segment graphs on one layered int4/int8 bundle: top-1 agreement and
KL divergence of the next-token distributions over the same steps (both quantise activations to int8 per block, each
with its own rounding, so on random weights they differ a little; judge on the real checkpoint).

    python bench/native_fidelity.py [BUNDLE] [--rows 8] [--steps 32] [--kernel avx512vnni]

BUNDLE defaults to the random Llasa-1B layered int4 bundle of bench/llasa_1b.py (exported on first use).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from llasa_1b import bundle, random_prompt

from llasa_rt.backends import plain_lm
from llasa_rt.bundle import LM_GRAPH, Bundle
from llasa_rt.layout import LLASA_TOKENS


def softmax(x: np.ndarray) -> np.ndarray:
    p = np.exp(x - x.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--kernel", default="auto", help="native_decode of the native side (auto, avx512vnni, avx2, ...)")
    a = ap.parse_args()
    b = Bundle.open(Path(a.bundle) if a.bundle else bundle("int4", flavour="layered"), verify="fast")
    entry, model = b.graph(LM_GRAPH), b.manifest.lm_model(LM_GRAPH)
    native = plain_lm(b.root, entry, model, 2, native_decode=a.kernel)
    if native.graphs.native is None:
        raise SystemExit(f"no native decode steps for this bundle with native_decode={a.kernel!r} on this CPU "
                         "(an int4/int8 layered bundle and an AVX-512 VNNI CPU, or --kernel avx2)")
    ort = plain_lm(b.root, entry, model, 2, native_decode="off")
    rng = np.random.default_rng(0)
    for lm in (native, ort):
        lm.reset(a.rows)
    prompt = np.repeat(random_prompt(60, 0).reshape(1, -1), a.rows, axis=0)
    native.step(prompt), ort.step(prompt)  # the prompt runs on the segments in both
    kl, top = [], []
    for _ in range(a.steps):
        ids = LLASA_TOKENS.speech_base_id + rng.integers(0, LLASA_TOKENS.speech_count, (a.rows, 1))
        x, y = native.step(ids).astype(np.float64), ort.step(ids).astype(np.float64)
        p, q = softmax(x), softmax(y)
        kl.append(float((q * (np.log(q + 1e-300) - np.log(p + 1e-300))).sum(axis=1).mean()))
        top.append(float((x.argmax(axis=1) == y.argmax(axis=1)).mean()))
    print(f"{b.root.name}: native ({native.graphs.native.kernel}) vs ONNX Runtime segments, {a.steps} steps x "
          f"{a.rows} rows: top-1 {np.mean(top):.3f}, KL(ort || native) mean {np.mean(kl):.4f} max {np.max(kl):.4f}")


if __name__ == "__main__":
    main()
