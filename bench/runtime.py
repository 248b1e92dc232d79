"""Decode throughput of the llasa-rt runtime on the Llasa-1B shape (int4), against other ways to run it.

On a random-weight bundle of the real Llasa-1B shape (bench/llasa_1b.py; int4 MatMulNBits, 65,537-row
head), each path runs in its own process, 2 threads, after a 60-token prompt:

- llasa-rt: `Engine.generate_codes` (C++ loop, sampler, KV slots; ONNX Runtime through IOBinding on
  shared buffers) with 1, 2, 4 and 8 candidates; aggregate tokens/s = candidates x steps/s; then 8
  candidates after a 600-token prompt, measured over decode steps 300-400. Once per LM flavour (--flavours):
  fused (one graph, GroupQueryAttention, fp32 KV) and layered (segment graphs around llasa-rt's attention
  kernel: the prompt's KV read once for all candidates, float16 KV), with the layered/fused ratios;
- onnxruntime-genai `og.Generator` on the same graph and weights (its logits get a sequence axis, which
  its runtime requires; it feeds the sampled row back as a token id, which changes no cost);
- transformers fp32 `generate` on the source checkpoint (the official Llasa path), one stream;
- llama.cpp (llama-cpp-python 0.3.36 built from the PyPI sdist for this CPU, its own venv; optional, made by
  `bash bench/llama_cpp_setup.sh`, skipped with that hint when absent) on GGUFs converted from the same
  checkpoint: Q4_0 (head Q6_K, llama.cpp's choice), Q4_0 with the head in Q4_0, Q8_0; 1/2/4/8 sequences in one
  llama_batch per step (greedy; the prompt prefilled once, its KV shared with seq_cp), and prefill tokens/s of
  the 60-token prompt and a 500-token one (bench/llamacpp_bench.py), next to llasa-rt's prefill.

Prints tokens/s, ratios measured in this run, the time per step inside ONNX Runtime and outside it (the
C++ core, the Python glue of the backend; for the layered flavour "in ORT" is the whole step: segments and
attention kernel), and the targets: one stream >= og.Generator, and 8 candidates >= 3.5x one stream's
aggregate tokens/s. Usage:

    python bench/runtime.py [--tokens 100] [--threads 2] [--skip-transformers] [--skip-llama-cpp]
                            [--flavours fused,layered,layered-ort] [--skip-long] [--native auto|avx2|...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
from child import emit, run_child
from llamacpp_bench import QUANTS, SETUP, gguf_path, venv_python
from llasa_1b import OUT, bundle, checkpoint, prefill_rates, random_prompt, transformers_decode, vm_hwm_gb

from llasa_rt.layout import LLASA_TOKENS, LmIo

T = LLASA_TOKENS

PROMPT_LEN = 60
PREFILL_LONG_LEN = 500  # the prefill rows' long prompt
CANDIDATES = (1, 2, 4, 8)
LONG_PROMPT_LEN = 600  # a voice-cloning prompt: reference transcript + ~500 reference codes
LONG_CANDIDATES = 8
LONG_WINDOW = (300, 400)  # decode steps measured after the long prompt
# LM flavours of the llasa_rt child (export --lm-flavour); "layered-ort" is the layered bundle with
# native_decode="off" (every step on ONNX Runtime's segments instead of llasa-rt's matrix kernels)
FLAVOURS = ("fused", "layered", "layered-ort")
CPU_FLAGS = ("avx2", "fma", "f16c", "avx_vnni", "amx")  # and every avx512* flag


def prompt_ids(length: int = PROMPT_LEN) -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = [[128000], rng.integers(0, 128000, length - 2), [LLASA_TOKENS.start_id]]  # BOS, text, START
    return np.concatenate(ids).astype(np.int64)


def child_llasa_rt(b: Path, tokens: int, threads: int, long_prompt: bool = True, native: str = "auto") -> dict:
    """The bundle `b` (of either LM flavour) in the C++ loop: 1/2/4/8 candidates after PROMPT_LEN tokens, then
    LONG_CANDIDATES after LONG_PROMPT_LEN tokens over the decode steps LONG_WINDOW."""
    import llasa_rt

    engine = llasa_rt.Engine(b, threads=threads, verify="fast", native_decode=native)
    out: dict = {}

    def measure(n: int, prompt: np.ndarray, steps: int, window: tuple[int, int] | None) -> dict:
        generator = engine.lm.generator(n)
        opts, _ = engine.sampling_options(
            llasa_rt.GenerationOptions(max_new_tokens=steps, min_new_tokens=steps, seed=1), engine.max_context)
        if window is None:  # warm-up: ORT picks kernels per batch size (the long run warms up on its own steps)
            generator.generate(prompt, options=opts, num_candidates=n)
        backend = engine.lm.backend
        backend.profile, backend.run_seconds = True, []
        res = generator.generate(prompt, options=opts, num_candidates=n)
        backend.profile = False
        t = res.timings
        lo, hi = window or (0, len(t.forward_seconds))
        fwd, core = np.array(t.forward_seconds)[lo:hi], np.array(t.core_seconds)[lo:hi]
        run = np.array(backend.run_seconds[1:])[lo:hi]  # [0] is the prefill
        total = fwd.sum() + core.sum()
        return {"steps_s": len(fwd) / total, "agg_tok_s": n * len(fwd) / total, "ms_step": 1e3 * total / len(fwd),
                "ort_ms": 1e3 * run.mean(), "core_ms": 1e3 * core.mean(),
                "glue_ms": 1e3 * (fwd.sum() - run.sum()) / len(fwd)}

    for n in CANDIDATES:
        out[n] = measure(n, prompt_ids(), tokens, None)
    if long_prompt:
        out["long"] = measure(LONG_CANDIDATES, prompt_ids(LONG_PROMPT_LEN), LONG_WINDOW[1], LONG_WINDOW)
    out["flavour"] = engine.bundle.graph("lm").details.get("flavour", "ort-cpu")
    native_lm = getattr(engine.lm.backend, "native", None)
    out["native"] = native_lm.kernel if native_lm is not None else "off"
    out["kv_dtype"] = engine.lm.model.kv_dtype
    out["peak_rss_gb"] = vm_hwm_gb()
    return out


def child_og(b: Path, tokens: int, threads: int) -> dict:
    """onnxruntime-genai on the same graph: a copy of lm.onnx whose logits are [batch, 1, rows]."""
    import onnx
    import onnxruntime_genai as og
    from onnx import helper

    manifest = json.loads((b / "manifest.json").read_text())
    m = manifest["model"]
    folder = b / "og"
    folder.mkdir(exist_ok=True)
    model = onnx.load(str(b / "lm.onnx"), load_external_data=False)
    g = model.graph
    for node in g.node:
        for i, name in enumerate(node.output):
            if name == "logits":
                node.output[i] = "logits_2d"
    g.node.append(helper.make_node("Unsqueeze", ["logits_2d", "/model/constants/INT64/[1]"], ["logits"],
                                   name="/lm_head/og/Unsqueeze"))
    out = next(o for o in g.output if o.name == "logits")
    out.type.tensor_type.shape.ClearField("dim")
    for d in ("batch_size", 1, LLASA_TOKENS.head_rows):
        dim = out.type.tensor_type.shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    data = folder / "lm.onnx.data"  # the same weights file: a hard link, not a copy
    if not data.exists():
        os.link(b / "lm.onnx.data", data)
    onnx.save(model, str(folder / "lm.onnx"))
    (folder / "genai_config.json").write_text(json.dumps({
        "model": {"bos_token_id": 128000, "context_length": m["max_context"], "eos_token_id": T.end_row,
                  "pad_token_id": T.end_row, "type": "llama", "vocab_size": T.head_rows, "decoder": {
                      "session_options": {"log_id": "onnxruntime-genai", "provider_options": [],
                                          "intra_op_num_threads": threads},
                      "filename": "lm.onnx", "head_size": m["head_dim"], "hidden_size": m["hidden_size"],
                      "num_attention_heads": m["num_attention_heads"], "num_hidden_layers": m["num_layers"],
                      "num_key_value_heads": m["num_kv_heads"],
                      "inputs": {"input_ids": LmIo.INPUT_IDS, "attention_mask": LmIo.ATTENTION_MASK,
                                 "position_ids": LmIo.POSITION_IDS, "past_key_names": LmIo.past("%d", "key"),
                                 "past_value_names": LmIo.past("%d", "value")},
                      "outputs": {"logits": LmIo.LOGITS, "present_key_names": LmIo.present("%d", "key"),
                                  "present_value_names": LmIo.present("%d", "value")}}},
        "search": {"do_sample": False, "max_length": m["max_context"], "min_length": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": True, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0}}, indent=1))
    ogm = og.Model(str(folder))
    rates = []
    for _ in range(2):  # the first run warms up
        params = og.GeneratorParams(ogm)
        params.set_search_options(max_length=PROMPT_LEN + tokens + 1, min_length=PROMPT_LEN + tokens + 1)
        gen = og.Generator(ogm, params)
        gen.append_tokens(prompt_ids()[None].astype(np.int32))
        gen.generate_next_token()  # first token comes from the prefill
        t0 = time.perf_counter()
        for _ in range(tokens):
            gen.generate_next_token()
        rates.append(tokens / (time.perf_counter() - t0))
    return {"tok_s": rates[-1], "peak_rss_gb": vm_hwm_gb()}


def child_transformers(ckpt: Path, tokens: int, threads: int) -> dict:
    r = transformers_decode(ckpt, prompt_ids(), tokens, threads, sample=True)
    return {"tok_s": r["decode_tok_s"], "peak_rss_gb": r["peak_rss_gb"]}


def child_llasa_rt_prefill(b: Path, tokens: int, threads: int) -> dict:
    """Prefill tokens/s of the Engine's generator for the 60-token prompt length and the long one."""
    import llasa_rt

    return prefill_rates(llasa_rt.Engine(b, threads=threads, verify="fast"), (PROMPT_LEN, PREFILL_LONG_LEN))


def run_llama_cpp(tokens: int, threads: int) -> dict | None:
    """llama.cpp rows per GGUF (None when the llama venv or the GGUFs are missing: the hint is printed)."""
    py = venv_python()
    missing = [n for n in QUANTS if not gguf_path(n).is_file()]
    if py is None or missing:
        print(f"llama.cpp rows skipped: no {'venv' if py is None else ', '.join(missing) + ' GGUF'}; make them "
              f"with `{SETUP}` (optional, ~40 min build on 2 cores)")
        return None
    script = str(Path(__file__).resolve().parent / "llamacpp_bench.py")
    ids = {"--prompt": prompt_ids(), "--long-prompt": random_prompt(PREFILL_LONG_LEN)}
    args = [a for k, v in ids.items() for a in (k, ",".join(str(int(t)) for t in v))]
    return {n: run_child(script, ["bench", str(gguf_path(n)), *args, "--tokens", str(tokens), "--threads",
                                  str(threads), "--sequences", ",".join(map(str, CANDIDATES))], python=str(py))
            for n in QUANTS}


def cpu_features() -> str:
    """The CPU model and the SIMD flags that decide which kernels run (from /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    shown = [f for f in flags if f.startswith(CPU_FLAGS) or f.startswith("avx512")]
    return f"{model}, {os.cpu_count()} logical CPUs; flags: {' '.join(shown) or 'none of ' + ' '.join(CPU_FLAGS)}"


def print_llama_cpp(ll: dict, ours: dict, pre: dict) -> None:
    """llama.cpp rows and every ratio llasa-rt / llama.cpp (same candidates/sequences, same prompt)."""
    names = {"q4_0": "Q4_0 (head Q6_K)", "q4_0-head-q4_0": "Q4_0, head Q4_0", "q8_0": "Q8_0"}
    print(f"\nllama.cpp (llama-cpp-python, GGUF of the same checkpoint, full {ll['q4_0']['n_vocab']}-row head; "
          f"greedy), aggregate tok/s over 1/2/4/8 sequences in one batch:")
    print(f"  built with: {ll['q4_0']['system_info'].strip()}")
    print(f"{'path':38s} " + " ".join(f"{n:>8d}" for n in CANDIDATES) + "   8 vs 1")
    print(f"{'llasa-rt int4':38s} " + " ".join(f"{ours[n]['agg_tok_s']:8.2f}" for n in CANDIDATES) +
          f" {ours[8]['agg_tok_s'] / ours[1]['agg_tok_s']:8.2f}x")
    for key, r in ll.items():
        print(f"{'llama.cpp ' + names[key]:38s} " + " ".join(f"{r[n]['agg_tok_s']:8.2f}" for n in CANDIDATES) +
              f" {r[8]['agg_tok_s'] / r[1]['agg_tok_s']:8.2f}x")
    for key, r in ll.items():
        print(f"{'llasa-rt / llama.cpp ' + names[key]:38s} " +
              " ".join(f"{ours[n]['agg_tok_s'] / r[n]['agg_tok_s']:7.2f}x" for n in CANDIDATES))
    print(f"\nprefill tok/s {'':24s} {PROMPT_LEN:>8d} {PREFILL_LONG_LEN:>8d} tokens")
    print(f"{'llasa-rt int4':38s} {pre[PROMPT_LEN]:8.1f} {pre[PREFILL_LONG_LEN]:8.1f}")
    for key, r in ll.items():
        print(f"{'llama.cpp ' + names[key]:38s} {r['prefill_short']['tok_s']:8.1f} "
              f"{r['prefill_long']['tok_s']:8.1f}")
    for key, r in ll.items():
        print(f"{'llasa-rt / llama.cpp ' + names[key]:38s} {pre[PROMPT_LEN] / r['prefill_short']['tok_s']:7.2f}x "
              f"{pre[PREFILL_LONG_LEN] / r['prefill_long']['tok_s']:7.2f}x")
    target = ours[1]["agg_tok_s"] / ll["q4_0"][1]["agg_tok_s"]
    print(f"target: one stream vs llama.cpp Q4_0 = {target:.2f}x (target >= 1.20): "
          f"{'met' if target >= 1.2 else 'NOT met'}")


CHILDREN = {"llasa_rt": child_llasa_rt, "og": child_og, "transformers": child_transformers,
            "llasa_rt_prefill": child_llasa_rt_prefill}


def run(kind: str, path: Path, tokens: int, threads: int, *extra: str) -> dict:
    return run_child(__file__, ["--child", kind, "--path", str(path), "--tokens", str(tokens), "--threads",
                                str(threads), *extra])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100, help="decode steps per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int4", choices=["int4", "int8", "fp32"])
    ap.add_argument("--skip-transformers", action="store_true", help="skip the slow transformers fp32 baseline")
    ap.add_argument("--skip-llama-cpp", action="store_true", help="skip the llama.cpp rows")
    ap.add_argument("--bundle", help="benchmark this bundle instead of the random Llasa-1B one")
    ap.add_argument("--flavours", default=",".join(FLAVOURS),
                    help="LM flavours of the llasa_rt path, side by side (default fused,layered)")
    ap.add_argument("--skip-long", action="store_true",
                    help=f"skip {LONG_CANDIDATES} candidates after a {LONG_PROMPT_LEN}-token prompt")
    ap.add_argument("--native", default="auto",
                    help="the layered flavour's Engine(native_decode=...): auto, or a kernel (avx2 measures the AVX2 "
                         "kernel on an AVX-512 machine)")
    ap.add_argument("--child", choices=list(CHILDREN))
    ap.add_argument("--path")
    a = ap.parse_args()
    if a.child:
        extra = {"long_prompt": not a.skip_long, "native": a.native} if a.child == "llasa_rt" else {}
        emit(CHILDREN[a.child](Path(a.path), a.tokens, a.threads, **extra))
        return

    print(f"CPU: {cpu_features()}")
    flavours = [f for f in a.flavours.split(",") if f]
    if not flavours or any(f not in FLAVOURS for f in flavours):
        raise SystemExit(f"--flavours takes a comma-separated list of {', '.join(FLAVOURS)}")
    if a.bundle and len(flavours) > 1:
        raise SystemExit("--bundle benchmarks one bundle: give its flavour alone with --flavours")
    bundles = {f: Path(a.bundle) if a.bundle else bundle(a.precision, flavour=f.split("-")[0]) for f in flavours}
    skip_long = ("--skip-long",) if a.skip_long else ()
    results = {f: run("llasa_rt", bundles[f], a.tokens, a.threads, *skip_long,
                      "--native", "off" if f == "layered-ort" else a.native) for f in flavours}
    b = bundles[flavours[0]]
    ours = results[flavours[0]]
    og_res = (run("og", b, a.tokens, a.threads)
              if ours["flavour"] == "ort-cpu" and importlib.util.find_spec("onnxruntime_genai") else None)
    if og_res is None:
        print("onnxruntime-genai rows skipped: `pip install onnxruntime-genai==0.18.0` (bench only; it keeps the "
              "installed onnxruntime >= 1.31); they run on the fused flavour")
    hf = None if a.skip_transformers else run("transformers", checkpoint(OUT), a.tokens, a.threads)
    ll = None if a.skip_llama_cpp or a.bundle else run_llama_cpp(a.tokens, a.threads)
    pre = {f: run("llasa_rt_prefill", bundles[f], a.tokens, a.threads) for f in flavours if f != "layered-ort"}

    one = ours[1]["agg_tok_s"]
    lm = json.loads((b / "manifest.json").read_text())["graphs"]["lm"]
    print(f"\n{b.name}: {lm['precision']} (block {lm['details'].get('block_size')}, head "
          f"{lm['details'].get('head_bits')}-bit), {PROMPT_LEN}-token prompt, {a.tokens} decode steps, "
          f"{a.threads} threads")
    print(f"{'path':44s} {'tok/s':>8s} {'vs 1 stream':>11s} {'ms/step':>8s} {'in ORT':>7s} {'core':>6s} {'glue':>6s}")
    for f in flavours:
        r1 = results[f][1]["agg_tok_s"]
        label = f"llasa-rt {f} (KV {results[f]['kv_dtype']}, native {results[f]['native']})"
        rows = [(n, f"{label}, {n} cand.") for n in CANDIDATES]
        if "long" in results[f]:
            rows.append(("long", f"{label}, {LONG_CANDIDATES} cand. {LONG_PROMPT_LEN}-tok prompt"))
        for key, name in rows:
            r = results[f][key]
            print(f"{name:44s} {r['agg_tok_s']:8.2f} {r['agg_tok_s'] / r1:10.2f}x "
                  f"{r['ms_step']:8.1f} {r['ort_ms']:7.1f} {r['core_ms']:6.2f} {r['glue_ms']:6.2f}")
    keys = [*CANDIDATES, *(["long"] if "long" in results[flavours[0]] else [])]
    for f in flavours[1:]:
        ratios = ", ".join(f"{k if k != 'long' else f'{LONG_CANDIDATES} @ {LONG_PROMPT_LEN}'}: "
                           f"{results[f][k]['agg_tok_s'] / results[flavours[0]][k]['agg_tok_s']:.2f}x" for k in keys)
        print(f"{f} / {flavours[0]} aggregate tok/s by candidates: {ratios}")
    if og_res:
        print(f"{'onnxruntime-genai og.Generator, 1 stream':44s} {og_res['tok_s']:8.2f} "
              f"{og_res['tok_s'] / one:10.2f}x")
    if hf:
        print(f"{'transformers fp32 generate, 1 stream':38s} {hf['tok_s']:8.2f} {hf['tok_s'] / one:10.2f}x")
    rss = ", ".join(f"llasa-rt {f} {results[f]['peak_rss_gb']:.2f} GB" for f in flavours)
    print(f"\npeak RSS: {rss} (KV for 8 candidates included)"
          + (f", og {og_res['peak_rss_gb']:.2f} GB" if og_res else "")
          + (f", transformers {hf['peak_rss_gb']:.2f} GB" if hf else ""))
    if og_res:
        print(f"target 1: one stream vs og.Generator = {one / og_res['tok_s']:.2f}x (target >= 1.00): "
              f"{'met' if one >= og_res['tok_s'] else 'NOT met'}")
    for f in flavours:
        agg8 = results[f][8]["agg_tok_s"] / results[f][1]["agg_tok_s"]
        print(f"target 2 ({f}): 8 candidates vs one stream = {agg8:.2f}x (target >= 3.50): "
              f"{'met' if agg8 >= 3.5 else 'NOT met'}")
    if "long" in results[flavours[0]]:
        base = results[flavours[0]]["long"]["agg_tok_s"]
        for f in flavours[1:]:
            gain = results[f]["long"]["agg_tok_s"] / base
            print(f"target 3 ({f} vs {flavours[0]}): {LONG_CANDIDATES} candidates after a {LONG_PROMPT_LEN}-token "
                  f"prompt, steps {LONG_WINDOW[0]}-{LONG_WINDOW[1]} = {gain:.2f}x (target >= 2.00): "
                  f"{'met' if gain >= 2.0 else 'NOT met'}")
    if hf:
        print(f"one stream vs transformers fp32: {one / hf['tok_s']:.1f}x")
    for f in pre:
        print(f"llasa-rt {f} prefill tok/s: {PROMPT_LEN} tokens {pre[f][PROMPT_LEN]:.1f}, {PREFILL_LONG_LEN} tokens "
              f"{pre[f][PREFILL_LONG_LEN]:.1f}")
    if ll:
        for f in pre:
            print(f"\nllasa-rt {f}:")
            print_llama_cpp(ll, results[f], pre[f])


if __name__ == "__main__":
    main()
