// llasa-rt (internal): AVX2 / FMA / F16C helpers shared by attention_avx2.cc and attention_avx512.cc (included
// only by files compiled with those instruction sets; unnamed namespace, so each file keeps its own copy).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "attention_kernels.h"

namespace llasa_rt {
namespace attention {
namespace {

// exp(x) for x <= 0, 8 lanes: the polynomial of attention_scalar.cc's ExpNonPositive.
inline __m256 Exp8(__m256 x) {
  const __m256 clamped = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(clamped, _mm256_set1_ps(1.44269504088896341f),
                                                 _mm256_set1_ps(12582912.0f)),
                                 _mm256_set1_ps(12582912.0f));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), clamped);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
  return _mm256_and_ps(result, _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
}

inline float Sum8(__m256 x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float Max8(__m256 x) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Row `j` columns [d, d + 8) of a key/value tile as float32.
inline __m256 Load8(const void *src, bool f16, size_t offset) {
  if (f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const uint16_t *>(src) + offset)));
  }
  return _mm256_loadu_ps(static_cast<const float *>(src) + offset);
}

// Transposes the 8x8 block r[0..7] in place.
inline void Transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Keys [n, D] (float32 or float16) -> kt [D, kTile] (column j = key j) in 8x8 blocks; columns [n, round_up(n, pad))
// are zero (pad: a multiple of 8, the kernel's vector width); later columns are not written.
inline void LoadKeysTransposed(const void *src, bool f16, int n, int D, int pad, float *kt) {
  const int padded = (n + pad - 1) / pad * pad;
  for (int j0 = 0; j0 < padded; j0 += 8) {
    const int rows = n - j0 < 0 ? 0 : (n - j0 < 8 ? n - j0 : 8);
    for (int d0 = 0; d0 < D; d0 += 8) {
      __m256 block[8];
      for (int i = 0; i < 8; ++i) {
        block[i] = i < rows ? Load8(src, f16, static_cast<size_t>(j0 + i) * D + d0) : _mm256_setzero_ps();
      }
      Transpose8(block);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + (d0 + i) * kTile + j0, block[i]);
    }
  }
}

}  // namespace
}  // namespace attention
}  // namespace llasa_rt
