// llasa-rt: the AVX-512 VNNI kernel of QuantLinear (compiled with -mavx512f -mavx512bw -mavx512vnni, called only on
// CPUs that report them). One 64-byte chunk = 16 outputs (one per 32-bit lane) x 4 or 8 consecutive k; VPDPBUSD
// multiplies the unsigned weights by the broadcast signed activations and sums 4 products per lane, so every row's
// int32 accumulator of a block stays in one register; at the end of a block it is scaled into a float accumulator.
#include <immintrin.h>

#include "quant_linear.h"

namespace llasa_rt {
namespace quant {

namespace {

inline int32_t Load4(const int8_t *p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

template <int R, int BITS>
void Tiles(const KernelArgs &a, int tile0, int tile1) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const size_t K = static_cast<size_t>(a.blocks) * a.block;
  const int chunks = BITS == 4 ? a.block / 8 : a.block / 4;
  for (int t = tile0; t < tile1; ++t) {
    const uint8_t *p = a.packed + a.tile_bytes * t;
    __m512 facc[R];
    for (int r = 0; r < R; ++r) facc[r] = _mm512_setzero_ps();
    for (int b = 0; b < a.blocks; ++b) {
      __m512i iacc[R];
      for (int r = 0; r < R; ++r) iacc[r] = _mm512_setzero_si512();
      const int8_t *xb = a.xq + static_cast<size_t>(b) * a.block;
      for (int c = 0; c < chunks; ++c, p += 64) {
        _mm_prefetch(reinterpret_cast<const char *>(p) + 8192, _MM_HINT_T0);
        const __m512i v = _mm512_load_si512(p);
        if (BITS == 4) {
          const __m512i lo = _mm512_and_si512(v, nibble);
          const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
          for (int r = 0; r < R; ++r) {
            const int8_t *x = xb + r * K + c * 8;
            iacc[r] = _mm512_dpbusd_epi32(iacc[r], lo, _mm512_set1_epi32(Load4(x)));
            iacc[r] = _mm512_dpbusd_epi32(iacc[r], hi, _mm512_set1_epi32(Load4(x + 4)));
          }
        } else {
          for (int r = 0; r < R; ++r) {
            iacc[r] = _mm512_dpbusd_epi32(iacc[r], v, _mm512_set1_epi32(Load4(xb + r * K + c * 4)));
          }
        }
      }
      const __m512 ws = _mm512_load_ps(reinterpret_cast<const float *>(p));
      const __m512 zw = _mm512_load_ps(reinterpret_cast<const float *>(p) + kTileN);
      p += 2 * kTileN * sizeof(float);
      for (int r = 0; r < R; ++r) {
        const size_t rb = static_cast<size_t>(r) * a.blocks + b;
        const __m512 scale = _mm512_mul_ps(ws, _mm512_set1_ps(a.xs[rb]));
        facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r]), scale, facc[r]);
        facc[r] = _mm512_fnmadd_ps(zw, _mm512_set1_ps(a.xz[rb]), facc[r]);
      }
    }
    const int c0 = t * kTileN;
    const int width = a.n - c0 < kTileN ? a.n - c0 : kTileN;
    const __mmask16 mask = width == kTileN ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << width) - 1);
    for (int r = 0; r < R; ++r) {
      float *dst = a.y + static_cast<size_t>(r) * a.ldy + c0;
      __m512 out = facc[r];
      if (a.accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, dst));
      _mm512_mask_storeu_ps(dst, mask, out);
    }
  }
}

template <int BITS>
void Dispatch(const KernelArgs &a, int tile0, int tile1) {
  switch (a.rows) {
    case 1: return Tiles<1, BITS>(a, tile0, tile1);
    case 2: return Tiles<2, BITS>(a, tile0, tile1);
    case 3: return Tiles<3, BITS>(a, tile0, tile1);
    case 4: return Tiles<4, BITS>(a, tile0, tile1);
    case 5: return Tiles<5, BITS>(a, tile0, tile1);
    case 6: return Tiles<6, BITS>(a, tile0, tile1);
    case 7: return Tiles<7, BITS>(a, tile0, tile1);
    default: return Tiles<8, BITS>(a, tile0, tile1);
  }
}

}  // namespace

void KernelAvx512Vnni(const KernelArgs &a, int tile0, int tile1) {
  if (a.bits == 4) {
    Dispatch<4>(a, tile0, tile1);
  } else {
    Dispatch<8>(a, tile0, tile1);
  }
}

}  // namespace quant
}  // namespace llasa_rt
