"""Cost of the C++ decode core itself (no model): the sampler per step, and the loop's own time per step.

    python bench/runtime_core.py [--steps 300] [--repeats 30]

1. Sampler: one step for 1 and 8 candidates over 65,537 rows, per option set, on flat logits (what a random-weight
   model gives) and peaked logits (closer to a trained model), with 1 and 2 sampler threads. Baseline in the same
   run: transformers' LogitsProcessorList (same options) + softmax + torch.multinomial on float32 tensors, i.e.
   the per-step sampling work of `generate`, with torch on 1 thread (like the core's default sampler).
2. Loop: Generator.generate with a trivial Python backend (forward does nothing, the logits buffer holds fixed
   logits) for 1 and 8 candidates. Reported: the core's own time per step (timings.core_seconds: inputs, sampling,
   bookkeeping, excluding forward) and the forward call's time (GIL re-take + Python call). Baseline: a Python loop
   doing the same per step (build inputs, call the same backend, transformers processors + multinomial).

Timings taken while other jobs share the 2 cores are noisy; the ratios come from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from llasa_rt import _core as core
from llasa_rt.layout import LLASA_TOKENS

ROWS = LLASA_TOKENS.head_rows

OPTIONS = {
    "greedy": {"temperature": 0.0},
    "temperature 0.8": {"temperature": 0.8},
    "top-p 0.95 (T 0.8)": {"temperature": 0.8, "top_p": 0.95},
    "top-k 50 (T 0.8)": {"temperature": 0.8, "top_k": 50},
}


def logits_for(kind: str, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    scale = {"flat": 1.0, "peaked": 4.0}[kind]
    return (rng.standard_normal((batch, ROWS)) * scale).astype(np.float32)


def hf_sampler(options: dict):
    """transformers' processors for `options` + softmax + multinomial (argmax for greedy), on torch tensors."""
    import torch
    from transformers.generation import logits_process as lp

    processors = lp.LogitsProcessorList()
    temperature = options.get("temperature", 1.0)
    if temperature:
        if temperature != 1.0:
            processors.append(lp.TemperatureLogitsWarper(temperature))
        if options.get("top_k"):
            processors.append(lp.TopKLogitsWarper(options["top_k"]))
        if options.get("top_p", 1.0) < 1.0:
            processors.append(lp.TopPLogitsWarper(options["top_p"]))

    def sample(input_ids, scores):
        scores = processors(input_ids, scores)
        if not temperature:
            return torch.argmax(scores, dim=-1)
        return torch.multinomial(torch.softmax(scores, dim=-1), 1)[:, 0]

    return sample


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_sampler(repeats: int) -> None:
    import torch

    print("\n## Sampler: one step over 65,537 rows (median ms)\n")
    print("| logits | options | batch | core 1 thread | core 2 threads | transformers+torch | ratio (1 thread) |")
    print("|---|---|---|---|---|---|---|")
    samplers = {t: core.testing.Sampler(rows=ROWS, threads=t) for t in (1, 2)}
    for kind in ("flat", "peaked"):
        for name, options in OPTIONS.items():
            o = core.SamplingOptions(seed=1, **options)
            hf = hf_sampler(options)
            for batch in (1, 8):
                x = logits_for(kind, batch)
                histories = [np.zeros(0, np.int32)] * batch
                uids = np.arange(batch, dtype=np.uint64)
                steps = np.zeros(batch, np.int64)
                ours = {
                    t: median_ms(lambda s=s, args=(x, histories, uids, steps, o): s.sample(*args), repeats)
                    for t, s in samplers.items()
                }
                args = (torch.zeros((batch, 1), dtype=torch.long), torch.from_numpy(x))
                theirs = median_ms(lambda hf=hf, args=args: hf(*args), repeats)
                print(f"| {kind} | {name} | {batch} | {ours[1]:.3f} | {ours[2]:.3f} | {theirs:.3f} | "
                      f"{theirs / ours[1]:.1f}x |")


class TrivialBackend(core.Backend):
    """Does nothing: the logits buffer keeps the fixed logits written once before the run."""

    def forward(self, input_ids: np.ndarray, past_len: int, logits: np.ndarray) -> None:
        return None


def bench_loop(steps: int) -> None:
    import torch

    print(f"\n## Decode loop with a trivial backend ({steps} steps, median ms per step)\n")
    print("| options | candidates | core's own time | forward call (GIL + Python) | Python loop + transformers "
          "sampling | ratio |")
    print("|---|---|---|---|---|---|")
    prompt = [128000, 9906, LLASA_TOKENS.start_id]
    for name in ("greedy", "top-p 0.95 (T 0.8)"):
        options = OPTIONS[name]
        for n in (1, 8):
            cache = core.KvCache(core.KvCacheConfig(num_layers=1, num_kv_heads=1, head_dim=8, slots=8,
                                                    max_seq_len=len(prompt) + steps + 1))
            buffers = core.StepBuffers(cache, rows=ROWS)
            logits = logits_for("flat", 8)
            logits[:, -1] = -np.inf  # No END: every run lasts `steps` tokens.
            buffers.logits[...] = logits
            backend = TrivialBackend(cache, buffers)
            generator = core.Generator(backend, core.GeneratorConfig(
                speech_token_base=LLASA_TOKENS.speech_base_id, num_speech_tokens=LLASA_TOKENS.speech_count,
                end_token_id=LLASA_TOKENS.end_id))
            o = core.SamplingOptions(seed=1, max_new_tokens=steps, **options)
            t = generator.generate(prompt, options=o, num_candidates=n).timings
            core_ms = statistics.median(t.core_seconds) * 1e3
            forward_ms = statistics.median(t.forward_seconds) * 1e3

            # Baseline: the same per-step work in Python with transformers' sampling.
            hf = hf_sampler(options)
            scores_view = torch.from_numpy(buffers.logits[:n])
            tokens = np.zeros((n, 1), np.int64)
            history = torch.zeros((n, 1), dtype=torch.long)
            per_step = []
            for step in range(min(steps, 100)):
                start = time.perf_counter()
                ids = LLASA_TOKENS.code_to_token(tokens)
                backend.forward(ids, len(prompt) + step, buffers.logits[:n])
                chosen = hf(history, scores_view.clone()).numpy()
                tokens = chosen[:, None].astype(np.int64)
                per_step.append(time.perf_counter() - start)
            base_ms = statistics.median(per_step) * 1e3
            print(f"| {name} | {n} | {core_ms:.3f} | {forward_ms:.3f} | {base_ms:.3f} | "
                  f"{base_ms / (core_ms + forward_ms):.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="decode steps per loop run")
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per sampler measurement")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"torch threads: {torch.get_num_threads()}; llasa_rt core: {core.build_info()}")
    bench_sampler(args.repeats)
    bench_loop(args.steps)


if __name__ == "__main__":
    main()
