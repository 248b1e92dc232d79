"""Shared setup of the LM benchmarks: a random-weight checkpoint of the real Llasa-1B shape and bundles
exported from it, cached under bench/out/ (not committed; made once, reused by later runs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from llasa_rt.layout import LLASA_TOKENS

OUT = Path(__file__).resolve().parent / "out"


def checkpoint(out: Path = OUT) -> Path:
    """bench/out/llasa-1b-random: 16 layers, hidden 2048, 32/8 heads, head_dim 64, vocab 193,800, bf16."""
    from llasa_rt.export.tiny import make_tiny_llasa

    ckpt = out / "llasa-1b-random"
    if not (ckpt / "config.json").is_file():
        print(f"writing a random-weight Llasa-1B-shaped checkpoint to {ckpt} ...", flush=True)
        make_tiny_llasa(ckpt, "1b", seed=0, dtype="bfloat16")
    return ckpt


def bundle(precision: str, out: Path = OUT, flavour: str = "fused") -> Path:
    """bench/out/llasa-1b-random-<precision>[-layered]: the exported LM bundle (no codec) of that LM flavour
    (layered: float16 KV, the export default)."""
    from llasa_rt.export.bundle_export import export_bundle

    b = out / (f"llasa-1b-random-{precision}" + ("" if flavour == "fused" else f"-{flavour}"))
    if not (b / "manifest.json").is_file():
        t0 = time.perf_counter()
        export_bundle(str(checkpoint(out)), b, precision=precision, overwrite=True, verify=False, log=lambda m: None,
                      lm_flavour=flavour)
        print(f"exported {precision} {flavour} in {time.perf_counter() - t0:.0f} s", flush=True)
    return b


def transformers_decode(ckpt: Path, prompt, tokens: int, threads: int, sample: bool) -> dict:
    """transformers fp32 `generate` on `ckpt`: decode tokens/s (generate of tokens+1 minus the prefill's
    generate of 1) and the prefill time. `sample`: do_sample with the model card's temperature 0.8."""
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(threads)
    model = LlamaForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    ids = torch.as_tensor(prompt)[None]
    kw = dict(attention_mask=torch.ones_like(ids), pad_token_id=LLASA_TOKENS.end_id, eos_token_id=None,
              do_sample=sample,
              **(dict(temperature=0.8, top_p=1.0) if sample else {}))
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, **kw)
        total = time.perf_counter() - t0
    return {"decode_tok_s": tokens / (total - prefill), "prefill_s": prefill, "peak_rss_gb": vm_hwm_gb()}


def random_prompt(n: int, seed: int = 0) -> np.ndarray:
    """BOS, n - 2 random text-range ids, START: an n-token prompt (cost does not depend on which ids)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[128000], rng.integers(0, 128000, n - 2), [LLASA_TOKENS.start_id]]).astype(np.int64)


def prefill_rates(engine: object, lengths: tuple[int, ...]) -> dict[int, float]:
    """Prefill tokens/s of the Engine's C++ Generator for random prompts of these lengths: one ONNX Runtime run
    over the prompt + sampling the first token, best of 2 after a warm-up run at that length."""
    import llasa_rt

    generator = engine.lm.generator(1)
    opts, _ = engine.sampling_options(llasa_rt.GenerationOptions(max_new_tokens=1, seed=1), engine.max_context)
    rates = {}
    for n in lengths:
        prompt = random_prompt(n)
        times = []
        for _ in range(3):  # the first run at a new length warms up
            t = generator.generate(prompt, options=opts, num_candidates=1).timings
            times.append(t.prefill_forward_seconds + t.prefill_core_seconds)
        rates[n] = n / min(times[1:])
    return rates


def vm_hwm_gb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it is not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError("no VmHWM in /proc/self/status")
