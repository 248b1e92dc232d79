"""Text to speech end to end: llasa-rt vs the official Llasa path (transformers `generate` + xcodec2 decode).

Random weights with the real shapes (nothing can be downloaded here): the Llasa-1B-shaped checkpoint of
bench/llasa_1b.py and an X-Codec2 checkpoint with the published decoder size (bench/codec_setup.py). Every
path generates the same number of codes (the random model never says END by itself) for the same text:

- official: transformers fp32 `generate` (do_sample, temperature 0.8, top_p 1.0) + the `xcodec2` package's
  `decode_code` on the whole utterance (PyTorch), as the model card does;
- llasa-rt `Engine.speak` (int4 bundle, or --precision) and `Engine.speak_stream` (time to first audio).

Prints the real-time factor (compute seconds per second of audio; < 1 is faster than real time), the time to
the first audio, and ratios measured in this run. Usage:

    python bench/speak.py [--seconds 5] [--threads 2] [--precision int4] [--skip-official]

Needs the export extra and, for the official path's decoder, `bash .ci/extras.sh`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from child import emit, run_child
from codec_setup import codec_checkpoint
from llasa_1b import OUT, checkpoint

from llasa_rt.layout import LLASA_TOKENS as T

TEXT = "The quick brown fox jumps over the lazy dog, and the children watch from the garden."


def bundle_with_codec(precision: str, flavour: str = "fused") -> Path:
    """bench/out/llasa-1b-random-<precision>[-layered]-codec: the LM (of that flavour) + the X-Codec2 decoder."""
    from llasa_rt.export.bundle_export import export_bundle

    b = OUT / f"llasa-1b-random-{precision}{'' if flavour == 'fused' else '-' + flavour}-codec"
    if not (b / "manifest.json").is_file():
        codec = codec_checkpoint(None, OUT)
        export_bundle(str(checkpoint()), b, precision=precision, codec=str(codec), overwrite=True, verify=False,
                      log=lambda m: None, lm_flavour=flavour)
    return b


def child_official(tokens: int, threads: int) -> dict:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "codec"))
    from xcodec2_reference import load_reference

    torch.set_num_threads(threads)
    ckpt = checkpoint()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    model = LlamaForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    codec = load_reference(codec_checkpoint(None, OUT))
    load_s = time.perf_counter() - t0
    chat = [{"role": "user", "content": f"Convert the text to speech:<|TEXT_UNDERSTANDING_START|>{TEXT}"
                                        "<|TEXT_UNDERSTANDING_END|>"},
            {"role": "assistant", "content": "<|SPEECH_GENERATION_START|>"}]
    t0 = time.perf_counter()
    ids = tok.apply_chat_template(chat, tokenize=True, return_tensors="pt", continue_final_message=True,
                                  date_string="26 Jul 2024")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                             do_sample=True, temperature=0.8, top_p=1.0, eos_token_id=T.end_id, pad_token_id=T.end_id)
        codes = (out[0, ids.shape[1]:] - T.speech_base_id).clamp(0, T.speech_count - 1)
        lm_s = time.perf_counter() - t0
        audio = codec.decode_code(codes[None, None])
    total = time.perf_counter() - t0
    return {"total_s": total, "lm_s": lm_s, "first_audio_s": total, "audio_s": audio.shape[-1] / 16000,
            "load_s": load_s}


def child_llasa_rt(bundle: str, tokens: int, threads: int) -> dict:
    import llasa_rt

    t0 = time.perf_counter()
    engine = llasa_rt.Engine(bundle, threads=threads, verify="fast")
    load_s = time.perf_counter() - t0
    engine.speak("Warm up.", max_new_tokens=20, seed=0)
    t0 = time.perf_counter()
    audio = engine.speak(TEXT, max_new_tokens=tokens, min_new_tokens=tokens, seed=1)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    first, samples = None, 0
    for chunk in engine.speak_stream(TEXT, max_new_tokens=tokens, min_new_tokens=tokens, seed=1):
        first = first if first is not None else time.perf_counter() - t0
        samples += len(chunk)
    stream_total = time.perf_counter() - t0
    return {"total_s": total, "lm_s": audio.timings["decode_s"] + audio.timings["prefill_s"],
            "first_audio_s": total, "stream_first_audio_s": first, "audio_s": audio.duration,
            "stream_total_s": stream_total,
            "stream_audio_s": samples / 16000, "load_s": load_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="audio to generate (50 codes per second)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="int4", choices=["fp32", "int8", "int4"])
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--child", choices=["official", "llasa_rt"])
    ap.add_argument("--bundle")
    a = ap.parse_args()
    tokens = int(a.seconds * 50)
    if a.child == "official":
        emit(child_official(tokens, a.threads))
        return
    if a.child == "llasa_rt":
        emit(child_llasa_rt(a.bundle, tokens, a.threads))
        return

    b = bundle_with_codec(a.precision)
    common = ["--seconds", str(a.seconds), "--threads", str(a.threads)]
    ours = run_child(__file__, ["--child", "llasa_rt", "--bundle", str(b), *common])
    rows = [(f"llasa-rt Engine.speak ({a.precision})", ours)]
    if not a.skip_official:
        rows.insert(0, ("official: transformers fp32 + xcodec2", run_child(__file__, ["--child", "official", *common])))
    base = rows[0][1]
    print(f"\nText to speech, {tokens} codes ({a.seconds:g} s of audio), random weights with the real shapes "
          f"(Llasa-1B + X-Codec2), {a.threads} threads")
    print("| path | seconds | RTF | first audio s | speed vs first row |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['total_s']:.2f} | {r['total_s'] / r['audio_s']:.3f} | {r['first_audio_s']:.2f} | "
              f"{base['total_s'] / r['total_s']:.1f}x |")
    print(f"| llasa-rt Engine.speak_stream ({a.precision}) | {ours['stream_total_s']:.2f} | "
          f"{ours['stream_total_s'] / ours['stream_audio_s']:.3f} | {ours['stream_first_audio_s']:.2f} | "
          f"{base['total_s'] / ours['stream_total_s']:.1f}x |")


if __name__ == "__main__":
    main()
