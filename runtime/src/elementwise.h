// llasa-rt (internal): the element-wise loops of NativeLm's steps (activation quantisation for QuantLinear, the SiLU
// gate of the MLP), written once as plain branch-free loops that the compiler vectorises for the instruction set of
// the file that includes this header: elementwise_avx2.cc / elementwise_avx512.cc (compiled with those flags) and
// quant_linear.cc (baseline). It lives in an unnamed namespace, so each of those files keeps its own copy and no
// code built for one instruction set can be picked by the linker for another; quant_linear.h declares the entry
// points and QuantKernelsByName chooses them with the matrix kernel.
#pragma once

#include <cstdint>
#include <cstring>

#include "exp_non_positive.h"

namespace llasa_rt {
namespace {

// Round to nearest even of |v| < 2^22 by adding and removing 1.5 * 2^23 (vectorises, unlike std::nearbyint).
__attribute__((always_inline)) inline float RoundNearest(float v) { return (v + 12582912.0f) - 12582912.0f; }

// Rows x [rows, k] -> int8 per row and block of `block` (symmetric: scale = amax / 127, q = round(x / scale)), zero
// beyond k up to blocks * block; xs = scale, xz = scale * sum(q) per (row, block).
inline void QuantizeRowsLoop(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs,
                             float *xz) {
  const size_t kp = static_cast<size_t>(blocks) * block;
  for (int r = 0; r < rows; ++r) {
    for (int b = 0; b < blocks; ++b) {
      const int k0 = b * block;
      const int width = k - k0 < block ? k - k0 : block;
      const float *src = x + static_cast<size_t>(r) * k + k0;
      int8_t *dst = xq + static_cast<size_t>(r) * kp + k0;
      // The largest |x| through the bit patterns (non-negative floats order like their bits): an integer max.
      uint32_t top = 0;
      for (int i = 0; i < width; ++i) {
        uint32_t bits;
        std::memcpy(&bits, src + i, sizeof bits);
        bits &= 0x7FFFFFFFu;
        top = bits > top ? bits : top;
      }
      float amax;
      std::memcpy(&amax, &top, sizeof amax);
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int sum = 0;
      for (int i = 0; i < width; ++i) {
        const int q = static_cast<int>(RoundNearest(src[i] * inv));  // |q| <= 127 since |x| <= amax
        dst[i] = static_cast<int8_t>(q);
        sum += q;
      }
      for (int i = width; i < block; ++i) dst[i] = 0;
      xs[static_cast<size_t>(r) * blocks + b] = amax / 127.0f;
      xz[static_cast<size_t>(r) * blocks + b] = amax / 127.0f * static_cast<float>(sum);
    }
  }
}

// out = gate * sigmoid(gate) * up over n elements.
inline void SiluMulLoop(const float *gate, const float *up, int n, float *out) {
  for (int i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = ExpNonPositive(g < 0.0f ? g : -g);  // exp(-|g|) in (0, 1]
    const float r = 1.0f / (1.0f + e);
    const float sig = g >= 0.0f ? r : e * r;
    out[i] = g * sig * up[i];
  }
}

}  // namespace
}  // namespace llasa_rt
