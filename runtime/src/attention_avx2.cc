// llasa-rt (internal): the attention kernel for x86-64 with AVX2, FMA and F16C. This file alone is compiled with
// -mavx2 -mfma -mf16c (CMakeLists.txt); attention.cc calls it only when the CPU reports all three. It needs
// head_dim % 8 == 0 (attention.cc uses the portable kernel otherwise).
#include <immintrin.h>

#include "attention_driver.h"
#include "attention_kernels.h"
#include "attention_x86.h"

namespace llasa_rt {
namespace attention {

namespace {

struct Avx2Ops {
  // Columns [n, round_up(n, 8)) are zero; later columns are never read.
  static void LoadK(const void *src, bool f16, int n, int D, float *kt) { LoadKeysTransposed(src, f16, n, D, 8, kt); }

  static const float *LoadV(const void *src, bool f16, int n, int D, float *vt) {
    if (!f16) return static_cast<const float *>(src);
    const size_t count = static_cast<size_t>(n) * D;  // D % 8 == 0
    for (size_t i = 0; i < count; i += 8) _mm256_storeu_ps(vt + i, Load8(src, true, i));
    return vt;
  }

  template <int R>
  static void Scores(const float *q, const float *kt, int D, int n, float *s) {
    int j = 0;
    for (; j + 8 < n; j += 16) {
      __m256 acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      for (int d = 0; d < D; ++d) {
        const __m256 k0 = _mm256_loadu_ps(kt + d * kTile + j);
        const __m256 k1 = _mm256_loadu_ps(kt + d * kTile + j + 8);
        for (int r = 0; r < R; ++r) {
          const __m256 qd = _mm256_broadcast_ss(q + r * D + d);
          acc[r][0] = _mm256_fmadd_ps(qd, k0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(qd, k1, acc[r][1]);
        }
      }
      for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(s + r * kTile + j, acc[r][0]);
        _mm256_storeu_ps(s + r * kTile + j + 8, acc[r][1]);
      }
    }
    if (j < n) {  // One block of 8 left.
      __m256 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int d = 0; d < D; ++d) {
        const __m256 k0 = _mm256_loadu_ps(kt + d * kTile + j);
        for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + r * D + d), k0, acc[r]);
      }
      for (int r = 0; r < R; ++r) _mm256_storeu_ps(s + r * kTile + j, acc[r]);
    }
  }

  static float Max(const float *s, int n) {
    __m256 m = _mm256_set1_ps(-__builtin_huge_valf());
    int j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
    float out = Max8(m);
    for (; j < n; ++j) out = s[j] > out ? s[j] : out;
    return out;
  }

  static float Exp(float x) { return _mm256_cvtss_f32(Exp8(_mm256_set1_ps(x))); }

  static float ExpSum(float *s, int n, float m) {
    const __m256 shift = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), shift));
      _mm256_storeu_ps(s + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    float out = Sum8(sum);
    for (; j < n; ++j) {
      s[j] = Exp(s[j] - m);
      out += s[j];
    }
    return out;
  }

  template <int R>
  static void PV(const float *p, const float *v, int n, int D, const float *factor, float *acc) {
    int d = 0;
    for (; d + 16 <= D; d += 16) {
      __m256 a[R][2];
      for (int r = 0; r < R; ++r) {
        const __m256 f = _mm256_set1_ps(factor[r]);
        a[r][0] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * D + d), f);
        a[r][1] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * D + d + 8), f);
      }
      for (int j = 0; j < n; ++j) {
        const __m256 v0 = _mm256_loadu_ps(v + static_cast<size_t>(j) * D + d);
        const __m256 v1 = _mm256_loadu_ps(v + static_cast<size_t>(j) * D + d + 8);
        for (int r = 0; r < R; ++r) {
          const __m256 w = _mm256_broadcast_ss(p + r * kTile + j);
          a[r][0] = _mm256_fmadd_ps(w, v0, a[r][0]);
          a[r][1] = _mm256_fmadd_ps(w, v1, a[r][1]);
        }
      }
      for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(acc + r * D + d, a[r][0]);
        _mm256_storeu_ps(acc + r * D + d + 8, a[r][1]);
      }
    }
    if (d < D) {  // One block of 8 left.
      __m256 a[R];
      for (int r = 0; r < R; ++r) a[r] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * D + d), _mm256_set1_ps(factor[r]));
      for (int j = 0; j < n; ++j) {
        const __m256 v0 = _mm256_loadu_ps(v + static_cast<size_t>(j) * D + d);
        for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + r * kTile + j), v0, a[r]);
      }
      for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + r * D + d, a[r]);
    }
  }
};

}  // namespace

void ChunkAvx2(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch) {
  RunChunk<Avx2Ops>(problem, kv_head, r0, r1, scratch);
}

void ToHalfAvx2(const float *src, uint16_t *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace attention
}  // namespace llasa_rt
