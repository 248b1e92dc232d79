"""X-Codec2 decoder speed: real-time factor for 10 s of audio, ONNX Runtime fp32 / fp16 vs the `xcodec2` package's
PyTorch `decode_code` (the baseline, measured in the same run), and the time to the first streamed chunk.

    python bench/codec.py [--codec CHECKPOINT_DIR] [--seconds 10] [--threads 2] [--repeats 3]

RTF = decode time / audio duration (lower is faster; < 1 is faster than real time). Without --codec a random
checkpoint with the published decoder size is generated (speed does not depend on the weights' values). The
baseline needs the xcodec2 package (bash .ci/extras.sh); without it that row is skipped and said so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from codec_setup import add_common_arguments, codec_bundle, codec_checkpoint, work_dir

from llasa_rt.codec import CodecDecoder, StreamingConfig
from llasa_rt.layout import LLASA_TOKENS


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, ORT graph optimisation caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def torch_baseline(checkpoint: Path, codes: np.ndarray, threads: int, repeats: int) -> float | None:
    try:
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "codec"))
        from xcodec2_reference import load_reference

        ref = load_reference(checkpoint)
    except ImportError as e:
        print(f"(xcodec2 PyTorch baseline skipped: {e}; run `bash .ci/extras.sh`)")
        return None
    torch.set_num_threads(threads)
    x = torch.from_numpy(codes[None, None]).long()
    return best_time(lambda: ref.decode_code(x), repeats)


def first_chunk_latency(decoder: CodecDecoder, codes: np.ndarray, config: StreamingConfig) -> float:
    """Seconds from pushing the code that completes the first chunk (+ look-ahead) to receiving its audio."""
    stream = decoder.streaming(config)
    need = config.chunk_frames + config.lookahead_frames
    stream.push(codes[: need - 1])
    t0 = time.perf_counter()
    chunks = stream.push(codes[need - 1 : need])
    elapsed = time.perf_counter() - t0
    assert chunks, "the first chunk should be ready"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = work_dir(args.work)
    checkpoint = codec_checkpoint(args.codec, work)
    frames = int(args.seconds * 50)
    codes = np.random.default_rng(0).integers(0, LLASA_TOKENS.speech_count, size=frames).astype(np.int32)
    audio_s = len(codes) * 320 / 16000

    rows: dict[str, float] = {}
    base = torch_baseline(checkpoint, codes, args.threads, args.repeats)
    if base is not None:
        rows["xcodec2 decode_code (PyTorch fp32)"] = base
    decoders = {}
    for precision in ("fp32", "fp16"):
        decoders[precision] = CodecDecoder(codec_bundle(checkpoint, work, precision), num_threads=args.threads)
        rows[f"ONNX Runtime {precision}"] = best_time(lambda p=precision: decoders[p].decode(codes), args.repeats)

    print(f"\nX-Codec2 decoder, {audio_s:g} s of audio ({len(codes)} codes), {args.threads} threads, best of "
          f"{args.repeats}")
    print("| decoder | seconds | RTF | speed vs PyTorch |")
    print("|---|---|---|---|")
    for name, secs in rows.items():
        ratio = f"{base / secs:.2f}x" if base else "n/a"
        print(f"| {name} | {secs:.3f} | {secs / audio_s:.3f} | {ratio} |")

    print("\nTime to the first streamed chunk (decoder only; the LM must first write chunk + look-ahead codes)")
    print("| chunk | left context | look-ahead | first chunk ms (fp32) | first chunk ms (fp16) |")
    print("|---|---|---|---|---|")
    for chunk, ahead in ((25, 5), (50, 5), (50, 0)):
        cfg = StreamingConfig(chunk_frames=chunk, left_context_frames=150, lookahead_frames=ahead)
        ms = [1000 * min(first_chunk_latency(decoders[p], codes, cfg) for _ in range(args.repeats))
              for p in ("fp32", "fp16")]
        print(f"| {chunk} | 150 | {ahead} | {ms[0]:.0f} | {ms[1]:.0f} |")


if __name__ == "__main__":
    main()
