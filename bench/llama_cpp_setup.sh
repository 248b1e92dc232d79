#!/usr/bin/env bash
# Optional bench dependency: llama.cpp (through llama-cpp-python) for the comparison rows of bench/runtime.py.
# Never needed by users or CI. Makes, under bench/out/ (gitignored):
#   llamacpp-venv/        its own venv with llama-cpp-python 0.3.36 built from the PyPI sdist for this CPU
#                         (GGML_NATIVE: -march=native), so the main venv's packages are untouched
#   llamacpp-dl/, llamacpp-sdist/  the PyPI sdist and its unpacked copy, whose vendor/llama.cpp/convert_hf_to_gguf.py + gguf-py convert
#                         the bench's random Llasa-1B-shape checkpoint (bench/llasa_1b.py checkpoint())
#   llasa-1b-random-{f16,q4_0,q8_0,q4_0-head-q4_0}.gguf
# Usage (from the repo root, with the main venv active: the converter runs on its torch + transformers):
#   bash bench/llama_cpp_setup.sh
# Re-running skips the steps whose output exists. The build compiles for ~10-20 minutes on 2 cores.
set -euo pipefail

VERSION=0.3.36
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out"
VENV="$OUT/llamacpp-venv"
SDIST="$OUT/llamacpp-sdist"
PY="${PYTHON:-python}"   # the main venv's python (torch, transformers, llasa_rt)
mkdir -p "$OUT"

TARBALL="$OUT/llamacpp-dl/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$TARBALL" ]; then
  python3 -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$OUT/llamacpp-dl"
fi
if [ ! -f "$SDIST/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
  mkdir -p "$SDIST"
  tar -xzf "$TARBALL" -C "$SDIST" --strip-components=1
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python $VERSION from the PyPI sdist into $VENV (many minutes on 2 cores) ..."
  t0=$(date +%s)
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # GGML_NATIVE compiles for the build machine's ISA (AVX2/AVX-512/VNNI/AMX as present): the fairest llama.cpp.
  CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release" "$VENV/bin/pip" install --no-cache-dir "$TARBALL"
  echo "llama-cpp-python built in $(( $(date +%s) - t0 )) s"
fi

CKPT="$("$PY" -c "import sys; sys.path.insert(0, '$ROOT/bench'); from llasa_1b import checkpoint; print(checkpoint())")"
F16="$OUT/llasa-1b-random-f16.gguf"
if [ ! -f "$F16" ]; then
  echo "converting $CKPT to $F16 ..."
  PYTHONPATH="$SDIST/vendor/llama.cpp/gguf-py" "$PY" "$ROOT/bench/llamacpp_bench.py" convert \
    "$SDIST/vendor/llama.cpp/convert_hf_to_gguf.py" "$CKPT" "$F16"
fi

"$VENV/bin/python" "$ROOT/bench/llamacpp_bench.py" quantize "$F16" "$OUT"
echo "llama.cpp bench set-up done: $VENV"
