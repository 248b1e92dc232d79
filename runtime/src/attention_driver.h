// llasa-rt (internal): the loop structure of one attention task, written once and instantiated by each
// instruction-set file with its own Ops (attention_scalar.cc, attention_avx2.cc). Everything here has internal
// linkage (unnamed namespace) and uses no inline function of the standard library, so a file compiled with -mavx2
// cannot lend AVX2 code to the portable path through a shared symbol.
//
// Ops provides, for the head dimension D and key tiles of kTile keys:
//   LoadK(src, f16, n, D, kt)        kt[d * kTile + j] = key j (j < n) of src [n, D]; 0 for j in [n, kTile)
//   LoadV(src, f16, n, D, vt) -> v   value rows [n, D] as float32 (src itself when float32, else converted to vt)
//   Scores<R>(q, kt, D, n, s)        s[r * kTile + j] = sum_d q[r * D + d] * kt[d * kTile + j], j < n, r < R
//   Max(s, n), ExpSum(s, n, m)       max of s[0, n); s[j] = exp(s[j] - m) in place, returns the sum
//   Exp(x)                           exp(x) for x <= 0 (0 at -inf)
//   PV<R>(p, v, n, D, factor, acc)   acc[r] = acc[r] * factor[r] + sum_{j < n} p[r * kTile + j] * v[j], r < R
// Each output element is computed by the same operations in the same order whichever rows share its register tile.
#pragma once

#include <cstring>

#include "attention_kernels.h"

namespace llasa_rt {
namespace attention {
namespace {

constexpr float kNegInf = -__builtin_huge_valf();

template <class Ops, int R>
void TileRowsR(const float *kt, const float *v, int n, int D, int t0, float *q, float *acc, float *m, float *l,
               float *factor, const int *limit, float *s) {
  Ops::template Scores<R>(q, kt, D, n, s);
  for (int r = 0; r < R; ++r) {
    float *row = s + r * kTile;
    int valid = limit[r] - t0;
    if (valid > n) valid = n;
    const float tile_max = Ops::Max(row, valid);
    const float m_new = tile_max > m[r] ? tile_max : m[r];
    factor[r] = Ops::Exp(m[r] - m_new);
    const float sum = Ops::ExpSum(row, valid, m_new);
    l[r] = l[r] * factor[r] + sum;
    m[r] = m_new;
    for (int j = valid; j < n; ++j) row[j] = 0.0f;
  }
  Ops::template PV<R>(s, v, n, D, factor, acc);
}

// Rows [a, e) of the task against one tile of n keys starting at key position t0.
template <class Ops>
void TileRows(const float *kt, const float *v, int n, int t0, int a, int e, const Problem &p, const Scratch &w) {
  const int D = p.head_dim;
  int r = a;
  for (; r + kGroup <= e; r += kGroup) {
    TileRowsR<Ops, kGroup>(kt, v, n, D, t0, w.q + r * D, w.acc + r * D, w.m + r, w.l + r, w.factor + r, w.limit + r,
                           w.s);
  }
  switch (e - r) {
    case 3:
      TileRowsR<Ops, 3>(kt, v, n, D, t0, w.q + r * D, w.acc + r * D, w.m + r, w.l + r, w.factor + r, w.limit + r, w.s);
      break;
    case 2:
      TileRowsR<Ops, 2>(kt, v, n, D, t0, w.q + r * D, w.acc + r * D, w.m + r, w.l + r, w.factor + r, w.limit + r, w.s);
      break;
    case 1:
      TileRowsR<Ops, 1>(kt, v, n, D, t0, w.q + r * D, w.acc + r * D, w.m + r, w.l + r, w.factor + r, w.limit + r, w.s);
      break;
    default:
      break;
  }
}

template <class Ops>
void RunChunk(const Problem &p, int h, int r0, int r1, const Scratch &w) {
  const int D = p.head_dim;
  const int G = p.group;
  const int rows = r1 - r0;
  const size_t elem = p.f16 ? 2 : 4;
  const size_t head_stride = static_cast<size_t>(p.max_seq_len) * D;       // elements
  const size_t slot_stride = head_stride * static_cast<size_t>(p.kv_heads);  // elements
  const size_t q_row = static_cast<size_t>(p.heads) * D;
  // Query row r = (b * seq + s) * G + g.
  for (int i = 0; i < rows; ++i) {
    const int r = r0 + i;
    const int g = r % G;
    const int bs = r / G;
    const int b = bs / p.seq;
    const int s = bs % p.seq;
    const float *src = p.q + static_cast<size_t>(bs) * q_row + static_cast<size_t>(h * G + g) * D;
    float *dst = w.q + i * D;
    for (int d = 0; d < D; ++d) dst[d] = src[d] * p.scale;
    float *acc = w.acc + i * D;
    for (int d = 0; d < D; ++d) acc[d] = 0.0f;
    w.m[i] = kNegInf;
    w.l[i] = 0.0f;
    w.limit[i] = p.past_lens[b] + s + 1;
  }
  auto at = [&](const void *base, int slot, int pos) {
    return static_cast<const unsigned char *>(base) +
           (static_cast<size_t>(slot) * slot_stride + static_cast<size_t>(h) * head_stride +
            static_cast<size_t>(pos) * D) *
               elem;
  };
  // Shared prefix: every row of the task sees all of it.
  for (int t0 = 0; t0 < p.prefix_len; t0 += kTile) {
    const int n = p.prefix_len - t0 < kTile ? p.prefix_len - t0 : kTile;
    Ops::LoadK(at(p.key, p.prefix_slot, t0), p.f16, n, D, w.kt);
    const float *v = Ops::LoadV(at(p.value, p.prefix_slot, t0), p.f16, n, D, w.vt);
    TileRows<Ops>(w.kt, v, n, t0, 0, rows, p, w);
  }
  // Each batch row's own positions [prefix_len, past_len + seq), causal.
  for (int a = 0; a < rows;) {
    const int b = (r0 + a) / G / p.seq;
    int e = (b + 1) * p.seq * G - r0;
    if (e > rows) e = rows;
    const int slot = p.slots[b];
    const int end = w.limit[e - 1];  // The last row sees the most keys.
    int first = a;                   // First row that sees key t0 (limits grow with the row).
    for (int t0 = p.prefix_len; t0 < end; t0 += kTile) {
      const int n = end - t0 < kTile ? end - t0 : kTile;
      while (w.limit[first] <= t0) ++first;
      Ops::LoadK(at(p.key, slot, t0), p.f16, n, D, w.kt);
      const float *v = Ops::LoadV(at(p.value, slot, t0), p.f16, n, D, w.vt);
      TileRows<Ops>(w.kt, v, n, t0, first, e, p, w);
    }
    a = e;
  }
  for (int i = 0; i < rows; ++i) {
    const int r = r0 + i;
    const int g = r % G;
    const int bs = r / G;
    float *dst = p.out + static_cast<size_t>(bs) * q_row + static_cast<size_t>(h * G + g) * D;
    const float *acc = w.acc + i * D;
    const float l = w.l[i];
    for (int d = 0; d < D; ++d) dst[d] = acc[d] / l;
  }
}

}  // namespace
}  // namespace attention
}  // namespace llasa_rt
