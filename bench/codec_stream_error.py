"""Streamed vs whole-utterance X-Codec2 decoding: the error table of docs/codec.md.

For each chunk size x left context x look-ahead, decodes the same codes in streamed chunks and reports the SNR of
the streamed audio against decoding the whole utterance at once (higher is closer), plus the worst 20 ms frame.

    python bench/codec_stream_error.py [--codec CHECKPOINT_DIR] [--seconds 10] [--threads 2]

Without --codec it uses a random checkpoint with the published decoder size: with random weights the attention is
spread over the whole utterance, so these numbers are a pessimistic stand-in for trained weights.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from codec_setup import add_common_arguments, codec_bundle, codec_checkpoint, work_dir

from llasa_rt.codec import CodecDecoder, StreamingConfig
from llasa_rt.export.codec import snr_db
from llasa_rt.layout import LLASA_TOKENS


def worst_frame_snr(ref: np.ndarray, test: np.ndarray, hop: int = 320) -> float:
    n = len(ref) // hop
    r, t = ref[: n * hop].reshape(n, hop), test[: n * hop].reshape(n, hop)
    noise = np.sum((r - t) ** 2, axis=1) + 1e-20
    return float(np.min(10 * np.log10(np.sum(r**2, axis=1) / noise + 1e-20)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = work_dir(args.work)
    bundle = codec_bundle(codec_checkpoint(args.codec, work), work, "fp32")
    dec = CodecDecoder(bundle, num_threads=args.threads)
    frames = int(args.seconds * 50)
    codes = np.random.default_rng(args.seed).integers(0, LLASA_TOKENS.speech_count, size=frames).astype(np.int32)
    whole = dec.decode(codes)
    print(f"{len(codes)} frames ({args.seconds:g} s), streamed vs whole decoding, SNR in dB (worst 20 ms frame)")
    print("| chunk | left context | look-ahead | SNR dB | worst frame dB |")
    print("|---|---|---|---|---|")
    for chunk, left, ahead in itertools.product((25, 50), (25, 50, 150), (0, 5, 10)):
        cfg = StreamingConfig(chunk_frames=chunk, left_context_frames=left, lookahead_frames=ahead)
        streamed = dec.streaming(cfg).decode(codes)
        snr, worst = snr_db(whole, streamed), worst_frame_snr(whole, streamed)
        print(f"| {chunk} | {left} | {ahead} | {snr:.1f} | {worst:.1f} |", flush=True)
    print("\nDefaults with a shorter first chunk (audio starts sooner)")
    print("| first chunk | SNR dB | worst frame dB |")
    print("|---|---|---|")
    for first in (None, 25, 10):
        streamed = dec.streaming(StreamingConfig(first_chunk_frames=first)).decode(codes)
        snr, worst = snr_db(whole, streamed), worst_frame_snr(whole, streamed)
        print(f"| {first or 'default (50)'} | {snr:.1f} | {worst:.1f} |", flush=True)


if __name__ == "__main__":
    main()
