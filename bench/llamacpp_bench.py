"""llama.cpp (llama-cpp-python) on the bench's random Llasa-1B-shape checkpoint: conversion, quantisation and the
decode/prefill measurement that bench/runtime.py prints next to llasa-rt.

An optional bench dependency, never needed by users or CI: `bash bench/llama_cpp_setup.sh` makes its own venv
(bench/out/llamacpp-venv) with llama-cpp-python 0.3.36 built from the PyPI sdist for this CPU, and the GGUF files.
Three commands, each run by the interpreter that has what it needs (this file imports neither llasa_rt nor torch
at module level):

    python bench/llamacpp_bench.py convert CONVERTER CKPT OUT.gguf     # main venv (torch, transformers) + sdist gguf-py
    bench/out/llamacpp-venv/bin/python bench/llamacpp_bench.py quantize F16.gguf OUTDIR
    bench/out/llamacpp-venv/bin/python bench/llamacpp_bench.py bench MODEL.gguf --threads 2 ...  (JSON on the last line)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "llamacpp-venv"
SETUP = "bash bench/llama_cpp_setup.sh"
# name -> (llama_ftype, output.weight type or None for llama.cpp's own choice: Q6_K for Q4_0, Q8_0 for Q8_0)
QUANTS = {"q4_0": (2, None), "q8_0": (7, None), "q4_0-head-q4_0": (2, 2)}


def gguf_path(name: str, out: Path = OUT) -> Path:
    """bench/out/llasa-1b-random-<name>.gguf (name: f16 or a key of QUANTS)."""
    return out / f"llasa-1b-random-{name}.gguf"


def venv_python() -> Path | None:
    """The llama venv's interpreter, or None when `bash bench/llama_cpp_setup.sh` has not been run."""
    py = VENV / "bin" / "python"
    return py if py.is_file() else None


# ---- convert (main venv) ------------------------------------------------------------------------------------------
def convert(converter: Path, ckpt: Path, out: Path) -> None:
    """Runs the sdist's convert_hf_to_gguf.py on `ckpt` (f16 GGUF). Its BPE pre-tokenizer check hashes how the
    tokenizer splits a fixed text; the bench checkpoint's small Llama-3-style tokenizer hashes to no known model,
    so the pre-tokenizer is set to Llama 3's ("llama-bpe"). Decode speed does not depend on the tokenizer. The
    converter tries a SentencePiece vocabulary first (importing sentencepiece before looking for tokenizer.model);
    without tokenizer.model that attempt is skipped as it would be with sentencepiece installed."""
    sys.path.insert(0, str(converter.parent))
    from conversion.base import TextModel  # the sdist's conversion package (next to convert_hf_to_gguf.py)

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
    if not (ckpt / "tokenizer.model").is_file():
        def no_sentencepiece(self: TextModel) -> None:
            raise FileNotFoundError("no tokenizer.model")

        TextModel._set_vocab_sentencepiece = no_sentencepiece
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", converter)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.argv = [str(converter), str(ckpt), "--outtype", "f16", "--outfile", str(out)]
    module.main()


# ---- quantize (llama venv) ----------------------------------------------------------------------------------------
def quantize(f16: Path, outdir: Path, threads: int) -> None:
    """Writes the GGUF files of QUANTS next to the f16 one (skipping those that exist)."""
    import llama_cpp as L

    for name, (ftype, head) in QUANTS.items():
        target = gguf_path(name, outdir)
        if target.is_file():
            continue
        p = L.llama_model_quantize_default_params()
        p.nthread, p.ftype = threads, ftype
        if head is not None:
            p.output_tensor_type = head
        t0 = time.perf_counter()
        tmp = target.with_suffix(".tmp")
        if L.llama_model_quantize(str(f16).encode(), str(tmp).encode(), p) != 0:
            raise SystemExit(f"llama_model_quantize failed for {name}")
        tmp.rename(target)
        print(f"quantised {target.name} in {time.perf_counter() - t0:.0f} s", flush=True)


# ---- bench (llama venv) -------------------------------------------------------------------------------------------
class _Llama:
    """One model + context through llama-cpp-python's low-level API (llama_batch with several sequence ids)."""

    def __init__(self, model_path: Path, threads: int, n_ctx: int, n_seq: int) -> None:
        import llama_cpp as L

        self.L = L
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(str(model_path).encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp cannot load {model_path}")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, 512, 512, n_seq
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True  # one KV buffer: a prompt copied with seq_cp shares its cells (llama-batched's way)
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit("llama.cpp cannot create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(512, 0, n_seq)

    def _fill(self, items: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        self._fill(items)
        if self.L.llama_decode(self.ctx, self.batch) != 0:
            raise SystemExit("llama_decode failed")

    def prefill(self, ids: list[int]) -> None:
        """The prompt into sequence 0, in chunks of the batch size; logits of the last token only."""
        for start in range(0, len(ids), 512):
            chunk = ids[start:start + 512]
            self.decode([(t, start + j, 0, start + j == len(ids) - 1) for j, t in enumerate(chunk)])

    def argmax(self, i: int) -> int:
        import numpy as np

        return int(np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i), (self.n_vocab,)).argmax())

    def clear(self) -> None:
        self.L.llama_memory_clear(self.mem, True)


def bench(model_path: Path, prompt: list[int], long_prompt: list[int], tokens: int, threads: int,
          sequences: list[int]) -> dict:
    """Greedy decode of `tokens` steps with n sequences in one llama_batch per step (the prompt prefilled once
    into sequence 0 and its KV given to the others with llama_memory_seq_cp); aggregate tokens/s = n x steps/s,
    the argmax of every sequence's logits included. Prefill tokens/s of `prompt` and `long_prompt`."""
    import llama_cpp as L

    n_max = max(sequences)
    lm = _Llama(model_path, threads, n_ctx=max(len(prompt) + tokens + 8, len(long_prompt) + 8) * n_max,
                n_seq=n_max)
    out: dict = {"system_info": L.llama_print_system_info().decode(), "n_vocab": lm.n_vocab}

    def run(n: int, steps: int) -> float:
        lm.clear()
        lm.prefill(prompt)
        for s in range(1, n):
            L.llama_memory_seq_cp(lm.mem, 0, s, -1, -1)
        last = [lm.argmax(-1)] * n
        t0 = time.perf_counter()
        for step in range(steps):
            lm.decode([(last[s], len(prompt) + step, s, True) for s in range(n)])
            last = [lm.argmax(s) for s in range(n)]
        return time.perf_counter() - t0

    run(1, 10)  # warm-up
    for n in sequences:
        run(n, 5)  # warm-up at this batch size
        dt = run(n, tokens)
        out[n] = {"agg_tok_s": n * tokens / dt, "ms_step": 1e3 * dt / tokens}
    for name, ids in (("prefill_short", prompt), ("prefill_long", long_prompt)):
        best = float("inf")
        for _ in range(2):
            lm.clear()
            t0 = time.perf_counter()
            lm.prefill(ids)
            lm.argmax(-1)
            best = min(best, time.perf_counter() - t0)
        out[name] = {"tokens": len(ids), "tok_s": len(ids) / best}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("converter", type=Path)
    c.add_argument("ckpt", type=Path)
    c.add_argument("out", type=Path)
    q = sub.add_parser("quantize")
    q.add_argument("f16", type=Path)
    q.add_argument("outdir", type=Path)
    q.add_argument("--threads", type=int, default=2)
    b = sub.add_parser("bench")
    b.add_argument("model", type=Path)
    b.add_argument("--prompt", required=True, help="comma-separated token ids")
    b.add_argument("--long-prompt", required=True, help="comma-separated token ids")
    b.add_argument("--tokens", type=int, default=100)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--sequences", default="1,2,4,8")
    a = ap.parse_args()
    if a.cmd == "convert":
        convert(a.converter, a.ckpt, a.out)
    elif a.cmd == "quantize":
        quantize(a.f16, a.outdir, a.threads)
    else:
        ids = [int(t) for t in a.prompt.split(",")]
        long_ids = [int(t) for t in a.long_prompt.split(",")]
        res = bench(a.model, ids, long_ids, a.tokens, a.threads, [int(n) for n in a.sequences.split(",")])
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
