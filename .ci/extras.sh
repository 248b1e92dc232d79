#!/usr/bin/env bash
# Test-only packages that cannot be plain extras (reference implementations with stale pins).
# Sourced by .ci/run inside its venv; developers run it once in theirs.
set -euo pipefail

# xcodec2 0.1.5 (the X-Codec2 reference for codec parity tests) pins torch 2.5 / torchaudio 2.5: install it and
# the libraries it imports without their dependencies, so our torch stays. torchaudio is never used by the code
# paths we call and is replaced by an empty module in tests/codec/xcodec2_reference.py; of torchtune only the
# rotary-embedding file is loaded (its package __init__ would pull datasets, torchao, ...).
python -m pip install -q --no-deps \
    xcodec2==0.1.5 \
    einops==0.8.0 \
    vector-quantize-pytorch==1.17.8 \
    einx==0.4.3 \
    frozendict==2.5.1 \
    torchtune==0.6.1
