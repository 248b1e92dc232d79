"""SNR of our codec_decoder.onnx (fp32 and fp16) against the `xcodec2` package's PyTorch `decode_code` on the same
weights, for T = 1, 7, 100, 500 codes and batch 1 and 2.

    python bench/codec_parity.py [--codec CHECKPOINT_DIR] [--threads 2]

Needs the xcodec2 package (bash .ci/extras.sh). Without --codec a random checkpoint with the published decoder size
is generated; pass the real HKUSTAudio/xcodec2 folder to measure trained weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from codec_setup import add_common_arguments, codec_bundle, codec_checkpoint, work_dir

from llasa_rt.codec import CodecDecoder
from llasa_rt.export.codec import snr_db
from llasa_rt.layout import LLASA_TOKENS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap, seconds=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "codec"))
    from xcodec2_reference import load_reference

    work = work_dir(args.work)
    checkpoint = codec_checkpoint(args.codec, work)
    ref = load_reference(checkpoint)
    decoders = {p: CodecDecoder(codec_bundle(checkpoint, work, p), num_threads=args.threads) for p in ("fp32", "fp16")}
    rng = np.random.default_rng(11)
    print("| T | batch | fp32 SNR dB | fp16 SNR dB |")
    print("|---|---|---|---|")
    for t in (1, 7, 100, 500):
        for b in (1, 2):
            codes = rng.integers(0, LLASA_TOKENS.speech_count, size=(b, 1, t)).astype(np.int32)
            expected = ref.decode_code(torch.from_numpy(codes).long()).numpy()
            row = [snr_db(expected, decoders[p].decode(codes)) for p in ("fp32", "fp16")]
            print(f"| {t} | {b} | {row[0]:.1f} | {row[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
