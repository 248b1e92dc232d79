// llasa-rt (internal): the portable attention kernel (any CPU; the compiler vectorises what it can for the
// baseline instruction set). IEEE half conversion is done in software here.
#include <cstring>

#include "attention_driver.h"
#include "attention_kernels.h"
#include "exp_non_positive.h"

namespace llasa_rt {
namespace attention {

namespace {

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf / NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // Subnormal half: normalise.
    uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

uint16_t FloatToHalf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf / NaN (NaN stays a quiet NaN)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // Rounds to >= 65520: inf.
  if (abs < 0x38800000u) {  // Below the smallest normal half: subnormal (or zero), round to nearest even.
    if (abs < 0x33000000u) return sign;  // < 2^-25: rounds to 0.
    const uint32_t shift = 126u - (abs >> 23);  // 14..24
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t midpoint = 1u << (shift - 1u);
    if (rest > midpoint || (rest == midpoint && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}


struct ScalarOps {
  static void LoadK(const void *src, bool f16, int n, int D, float *kt) {
    for (int j = 0; j < n; ++j) {
      if (f16) {
        const uint16_t *row = static_cast<const uint16_t *>(src) + static_cast<size_t>(j) * D;
        for (int d = 0; d < D; ++d) kt[d * kTile + j] = HalfToFloat(row[d]);
      } else {
        const float *row = static_cast<const float *>(src) + static_cast<size_t>(j) * D;
        for (int d = 0; d < D; ++d) kt[d * kTile + j] = row[d];
      }
    }
    for (int d = 0; d < D; ++d) {
      for (int j = n; j < kTile; ++j) kt[d * kTile + j] = 0.0f;
    }
  }

  static const float *LoadV(const void *src, bool f16, int n, int D, float *vt) {
    if (!f16) return static_cast<const float *>(src);
    const uint16_t *half = static_cast<const uint16_t *>(src);
    for (size_t i = 0, count = static_cast<size_t>(n) * D; i < count; ++i) vt[i] = HalfToFloat(half[i]);
    return vt;
  }

  template <int R>
  static void Scores(const float *q, const float *kt, int D, int n, float *s) {
    for (int r = 0; r < R; ++r) {
      float *row = s + r * kTile;
      for (int j = 0; j < n; ++j) row[j] = 0.0f;
      for (int d = 0; d < D; ++d) {
        const float qd = q[r * D + d];
        const float *k = kt + d * kTile;
        for (int j = 0; j < n; ++j) row[j] += qd * k[j];
      }
    }
  }

  static float Max(const float *s, int n) {
    float m = s[0];
    for (int j = 1; j < n; ++j) m = s[j] > m ? s[j] : m;
    return m;
  }

  static float Exp(float x) { return ExpNonPositive(x); }

  static float ExpSum(float *s, int n, float m) {
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) {
      s[j] = ExpNonPositive(s[j] - m);
      sum += s[j];
    }
    return sum;
  }

  template <int R>
  static void PV(const float *p, const float *v, int n, int D, const float *factor, float *acc) {
    for (int r = 0; r < R; ++r) {
      float *a = acc + r * D;
      for (int d = 0; d < D; ++d) a[d] *= factor[r];
      for (int j = 0; j < n; ++j) {
        const float w = p[r * kTile + j];
        const float *vj = v + static_cast<size_t>(j) * D;
        for (int d = 0; d < D; ++d) a[d] += w * vj[d];
      }
    }
  }
};

}  // namespace

void ChunkScalar(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch) {
  RunChunk<ScalarOps>(problem, kv_head, r0, r1, scratch);
}

void ToHalfScalar(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = FloatToHalf(src[i]);
}

}  // namespace attention
}  // namespace llasa_rt
