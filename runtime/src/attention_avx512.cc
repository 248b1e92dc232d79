// llasa-rt (internal): the attention kernel for x86-64 with AVX-512F (plus AVX2, FMA and F16C, which every
// AVX-512 CPU has). This file alone is compiled with -mavx512f -mavx2 -mfma -mf16c (CMakeLists.txt); attention.cc
// calls it only when the CPU reports all of them. It needs head_dim % 16 == 0. Register tiles: 4 query rows x 64
// keys for the scores, 4 rows x 64 output columns for the weighted values (16 accumulators of 16 lanes).
#include <immintrin.h>

#include "attention_driver.h"
#include "attention_kernels.h"
#include "attention_x86.h"

namespace llasa_rt {
namespace attention {

namespace {

// exp(x) for x <= 0, 16 lanes: the polynomial of attention_scalar.cc's ExpNonPositive.
inline __m512 Exp16(__m512 x) {
  const __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(clamped, _mm512_set1_ps(1.44269504088896341f),
                                                 _mm512_set1_ps(12582912.0f)),
                                 _mm512_set1_ps(12582912.0f));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), clamped);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __m512 result = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ), result);
}

// Lanes [0, count) set.
inline __mmask16 FirstLanes(int count) { return static_cast<__mmask16>((1u << count) - 1u); }

// s[r * kTile + j0 + 16 b + lane] for NB blocks of 16 keys.
template <int R, int NB>
void ScoresBlock(const float *q, const float *kt, int D, int j0, float *s) {
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  }
  for (int d = 0; d < D; ++d) {
    __m512 k[NB];
    for (int b = 0; b < NB; ++b) k[b] = _mm512_loadu_ps(kt + d * kTile + j0 + 16 * b);
    for (int r = 0; r < R; ++r) {
      const __m512 qd = _mm512_set1_ps(q[r * D + d]);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_fmadd_ps(qd, k[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < NB; ++b) _mm512_storeu_ps(s + r * kTile + j0 + 16 * b, acc[r][b]);
  }
}

// acc[r * D + d0 + 16 b + lane] for NB blocks of 16 output columns.
template <int R, int NB>
void PVBlock(const float *p, const float *v, int n, int D, int d0, const float *factor, float *acc) {
  __m512 a[R][NB];
  for (int r = 0; r < R; ++r) {
    const __m512 f = _mm512_set1_ps(factor[r]);
    for (int b = 0; b < NB; ++b) a[r][b] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * D + d0 + 16 * b), f);
  }
  for (int j = 0; j < n; ++j) {
    __m512 vj[NB];
    for (int b = 0; b < NB; ++b) vj[b] = _mm512_loadu_ps(v + static_cast<size_t>(j) * D + d0 + 16 * b);
    for (int r = 0; r < R; ++r) {
      const __m512 w = _mm512_set1_ps(p[r * kTile + j]);
      for (int b = 0; b < NB; ++b) a[r][b] = _mm512_fmadd_ps(w, vj[b], a[r][b]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < NB; ++b) _mm512_storeu_ps(acc + r * D + d0 + 16 * b, a[r][b]);
  }
}

struct Avx512Ops {
  // Columns [n, round_up(n, 16)) are zero; later columns are never read.
  static void LoadK(const void *src, bool f16, int n, int D, float *kt) { LoadKeysTransposed(src, f16, n, D, 16, kt); }

  static const float *LoadV(const void *src, bool f16, int n, int D, float *vt) {
    if (!f16) return static_cast<const float *>(src);
    const uint16_t *half = static_cast<const uint16_t *>(src);
    const size_t count = static_cast<size_t>(n) * D;  // D % 16 == 0
    for (size_t i = 0; i < count; i += 16) {
      _mm512_storeu_ps(vt + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(half + i))));
    }
    return vt;
  }

  template <int R>
  static void Scores(const float *q, const float *kt, int D, int n, float *s) {
    switch ((n + 15) / 16) {  // n <= kTile = 64: one call covers the tile.
      case 4: ScoresBlock<R, 4>(q, kt, D, 0, s); break;
      case 3: ScoresBlock<R, 3>(q, kt, D, 0, s); break;
      case 2: ScoresBlock<R, 2>(q, kt, D, 0, s); break;
      default: ScoresBlock<R, 1>(q, kt, D, 0, s); break;
    }
  }

  static float Max(const float *s, int n) {
    __m512 m = _mm512_set1_ps(-__builtin_huge_valf());
    int j = 0;
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(s + j));
    if (j < n) m = _mm512_mask_max_ps(m, FirstLanes(n - j), m, _mm512_maskz_loadu_ps(FirstLanes(n - j), s + j));
    return _mm512_reduce_max_ps(m);
  }

  static float Exp(float x) { return _mm512_cvtss_f32(Exp16(_mm512_set1_ps(x))); }

  static float ExpSum(float *s, int n, float m) {
    const __m512 shift = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), shift));
      _mm512_storeu_ps(s + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (j < n) {
      const __mmask16 lanes = FirstLanes(n - j);
      const __m512 e = _mm512_maskz_mov_ps(lanes, Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, s + j), shift)));
      _mm512_mask_storeu_ps(s + j, lanes, e);
      sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
  }

  template <int R>
  static void PV(const float *p, const float *v, int n, int D, const float *factor, float *acc) {
    int d = 0;
    for (; d + 64 <= D; d += 64) PVBlock<R, 4>(p, v, n, D, d, factor, acc);
    switch ((D - d) / 16) {
      case 3: PVBlock<R, 3>(p, v, n, D, d, factor, acc); break;
      case 2: PVBlock<R, 2>(p, v, n, D, d, factor, acc); break;
      case 1: PVBlock<R, 1>(p, v, n, D, d, factor, acc); break;
      default: break;
    }
  }
};

}  // namespace

void ChunkAvx512(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch) {
  RunChunk<Avx512Ops>(problem, kv_head, r0, r1, scratch);
}

}  // namespace attention
}  // namespace llasa_rt
