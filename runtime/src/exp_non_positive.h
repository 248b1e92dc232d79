// llasa-rt (internal): the exponential of the kernels. Included by kernel files that are compiled with different
// instruction-set flags: it lives in an unnamed namespace, so each translation unit gets its own copy and no code
// built for one instruction set can be picked by the linker for another.
#pragma once

#include <cstdint>
#include <cstring>

namespace llasa_rt {
namespace {

// exp(x) for x <= 0 (callers subtract the maximum): 2^n * p(r) with n = round(x / ln 2), Cody-Waite reduction and
// Cephes' degree-5 polynomial; 0 below -87.3 (and for -inf). Branch-free so that loops over it vectorise.
__attribute__((always_inline)) inline float ExpNonPositive(float x) {
  const float clamped = x < -87.0f ? -87.0f : x;
  // Round to nearest by adding and removing 1.5 * 2^23 (exact for |v| < 2^22).
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = clamped - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < -87.0f ? 0.0f : y * scale;
}

}  // namespace
}  // namespace llasa_rt
