// llasa-rt: the AVX2 kernel of QuantLinear (compiled with -mavx2 -mfma, called only on CPUs that report them; meant
// for CPUs without VNNI such as AMD Zen 3). A 64-byte chunk is taken as two 256-bit halves of 8 outputs each (one per
// 32-bit lane); the weights are split into their nibbles (0..15) and VPMADDUBSW multiplies them by the broadcast
// signed activations, summing pairs into int16. Those int16 sums stay exact for 4 chunks (4 bits: 4 x 2 x 2 x 15 x
// 127 = 30480) or 8 chunks (8 bits, low and high nibble summed apart: 8 x 2 x 15 x 127 = 30480) before VPMADDWD
// widens them into int32 (the high nibbles of 8-bit weights with a factor of 16), so the block sums equal the
// portable kernel's; at the end of a block they are scaled into float accumulators (in L1) with the same float
// steps. Rows go in groups of up to 4 (8 bits: 3) per half tile so that every accumulator stays in one of the 16
// registers; a block of one tile (1 KiB for 4 bits and blocks of 128) is read from memory once and from L1 for the
// other half and row groups.
#include <immintrin.h>

#include "quant_linear.h"

namespace llasa_rt {
namespace quant {

namespace {

// Rows per pass over a half tile: 4 bits: 4 x 2 accumulators; 8 bits: 3 x 3 (low and high nibble sums, int32).
constexpr int kGroup4 = 4;
constexpr int kGroup8 = 3;
// How far ahead in the weight stream to prefetch (on an AMD EPYC with AVX-512: 4-8 KiB best, none ~15% slower).
constexpr int kPrefetchBytes = 4096;

// Keeps v in a register as computed: without it GCC reassociates the int16 sums of a group of chunks, hoists all
// the multiplies and spills them to the stack.
inline void Pin(__m256i &v) { asm("" : "+x"(v)); }

inline __m256i Broadcast4(const int8_t *p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// One block for G rows and one half tile (8 outputs): the int32 sums, then acc = fma(float(isum), ws * xs, acc);
// acc = fma(-zw, xz, acc) as in every kernel. w: the block's first chunk + 32 * half; x: row 0's activations of the
// block (row r at x + r * K); scales: the block's ws + 8 * half (zw 16 floats further); xs, xz: row 0's (row r at
// + r * blocks); facc: row 0's float accumulators + 8 * half (row r at + r * kTileN).
template <int BITS, int G>
inline void HalfBlock(const uint8_t *w, int chunks, const int8_t *x, size_t K, const float *scales, const float *xs,
                      const float *xz, int blocks, float *facc) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[G];
  for (int r = 0; r < G; ++r) acc[r] = _mm256_setzero_si256();
  if (BITS == 4) {
    for (int c = 0; c < chunks; c += 4) {  // chunks = block / 8, a multiple of 4.
      __m256i s[G];
      for (int r = 0; r < G; ++r) s[r] = _mm256_setzero_si256();
      for (int u = 0; u < 4; ++u) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i *>(w + (c + u) * 64));
        const __m256i lo = _mm256_and_si256(v, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
        for (int r = 0; r < G; ++r) {
          const int8_t *xr = x + r * K + (c + u) * 8;
          s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(lo, Broadcast4(xr)));
          s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(hi, Broadcast4(xr + 4)));
          Pin(s[r]);
        }
      }
      for (int r = 0; r < G; ++r) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s[r], ones));
    }
  } else {
    const __m256i sixteen = _mm256_set1_epi16(16);
    for (int c = 0; c < chunks; c += 8) {  // chunks = block / 4, a multiple of 8.
      __m256i sl[G], sh[G];
      for (int r = 0; r < G; ++r) sl[r] = sh[r] = _mm256_setzero_si256();
      for (int u = 0; u < 8; ++u) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i *>(w + (c + u) * 64));
        const __m256i lo = _mm256_and_si256(v, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
        for (int r = 0; r < G; ++r) {
          const __m256i xv = Broadcast4(x + r * K + (c + u) * 4);
          sl[r] = _mm256_add_epi16(sl[r], _mm256_maddubs_epi16(lo, xv));
          sh[r] = _mm256_add_epi16(sh[r], _mm256_maddubs_epi16(hi, xv));
          Pin(sl[r]);
          Pin(sh[r]);
        }
      }
      for (int r = 0; r < G; ++r) {
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(sl[r], ones));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(sh[r], sixteen));
      }
    }
  }
  const __m256 ws = _mm256_load_ps(scales);
  const __m256 zw = _mm256_load_ps(scales + kTileN);
  for (int r = 0; r < G; ++r) {
    float *f = facc + r * kTileN;
    const __m256 scale = _mm256_mul_ps(ws, _mm256_set1_ps(xs[r * blocks]));
    const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r]), scale, _mm256_load_ps(f));
    _mm256_store_ps(f, _mm256_fnmadd_ps(zw, _mm256_set1_ps(xz[r * blocks]), v));
  }
}

template <int BITS>
void Tiles(const KernelArgs &a, int tile0, int tile1) {
  const size_t K = static_cast<size_t>(a.blocks) * a.block;
  const int chunks = BITS == 4 ? a.block / 8 : a.block / 4;
  const size_t wbytes = static_cast<size_t>(chunks) * 64;
  const size_t block_bytes = wbytes + 2 * kTileN * sizeof(float);
  alignas(32) float facc[kMaxRows * kTileN];
  for (int t = tile0; t < tile1; ++t) {
    const uint8_t *p = a.packed + a.tile_bytes * t;
    for (int i = 0; i < a.rows * kTileN; i += 8) _mm256_store_ps(facc + i, _mm256_setzero_ps());
    for (int b = 0; b < a.blocks; ++b, p += block_bytes) {
      for (size_t off = 0; off < block_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char *>(p) + kPrefetchBytes + off, _MM_HINT_T0);
      }
      const int8_t *xb = a.xq + static_cast<size_t>(b) * a.block;
      const float *scales = reinterpret_cast<const float *>(p + wbytes);
      for (int h = 0; h < 2; ++h) {
        constexpr int kGroup = BITS == 4 ? kGroup4 : kGroup8;
        for (int r0 = 0; r0 < a.rows; r0 += kGroup) {
          const uint8_t *w = p + 32 * h;
          const int8_t *x = xb + r0 * K;
          const float *sc = scales + 8 * h;
          const float *xs = a.xs + static_cast<size_t>(r0) * a.blocks + b;
          const float *xz = a.xz + static_cast<size_t>(r0) * a.blocks + b;
          float *f = facc + r0 * kTileN + 8 * h;
          switch (a.rows - r0 < kGroup ? a.rows - r0 : kGroup) {
            case 1: HalfBlock<BITS, 1>(w, chunks, x, K, sc, xs, xz, a.blocks, f); break;
            case 2: HalfBlock<BITS, 2>(w, chunks, x, K, sc, xs, xz, a.blocks, f); break;
            case 3: HalfBlock<BITS, 3>(w, chunks, x, K, sc, xs, xz, a.blocks, f); break;
            default: HalfBlock<BITS, kGroup>(w, chunks, x, K, sc, xs, xz, a.blocks, f); break;
          }
        }
      }
    }
    StoreTile(a, t, facc);
  }
}

}  // namespace

void KernelAvx2(const KernelArgs &a, int tile0, int tile1) {
  if (a.bits == 4) {
    Tiles<4>(a, tile0, tile1);
  } else {
    Tiles<8>(a, tile0, tile1);
  }
}

}  // namespace quant
}  // namespace llasa_rt
