// llasa-rt (internal): the attention kernels behind Attention::Run. One task is the query rows [r0, r1) of one KV
// head (rows flattened over (batch row, position, head of the group)); it scores them against the shared prefix
// in key tiles (one tile of keys/values loaded once for all of the task's rows), then each batch row's rows against
// that row's own positions, with one online softmax per query row. Each instruction set has one entry point
// compiled in its own file (attention_scalar.cc, attention_avx2.cc, attention_avx512.cc); attention.cc picks one
// at load time from the CPU's features. A query row's result depends only on its own inputs, never on the other
// rows of its task, so results do not depend on how rows are grouped into tasks or on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llasa_rt {
namespace attention {

constexpr int kTile = 64;   // Keys per tile.
constexpr int kChunk = 64;  // Query rows per task (at most).
constexpr int kGroup = 4;   // Query rows per register tile.

// Everything one Run shares between its tasks.
struct Problem {
  const float *q = nullptr;  // [batch, seq, heads * head_dim]
  float *out = nullptr;      // [batch, seq, heads * head_dim]
  const void *key = nullptr;    // This layer's K buffer [slots, kv_heads, max_seq_len, head_dim].
  const void *value = nullptr;  // This layer's V buffer, same shape.
  bool f16 = false;             // Cache elements are IEEE half (else float32).
  int seq = 0;
  int heads = 0;
  int group = 0;  // heads / kv_heads.
  int head_dim = 0;
  int max_seq_len = 0;
  int kv_heads = 0;
  float scale = 0.0f;
  const int *slots = nullptr;
  const int *past_lens = nullptr;
  int prefix_slot = 0;
  int prefix_len = 0;
};

// Per-worker scratch, allocated once by Attention (sizes in floats, head_dim = D):
struct Scratch {
  float *q;       // [kChunk, D] scaled queries
  float *acc;     // [kChunk, D] unnormalised outputs
  float *m;       // [kChunk] running maxima
  float *l;       // [kChunk] running sums
  float *factor;  // [kChunk] rescale factor of the current tile
  int *limit;     // [kChunk] keys visible to the row (exclusive)
  float *kt;      // [D, kTile] transposed key tile
  float *vt;      // [kTile, D] value tile (float16 caches)
  float *s;       // [kGroup, kTile] scores / weights
};

// Runs query rows [r0, r1) of KV head `kv_head`.
using ChunkFn = void (*)(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch);
// Converts n floats to IEEE half (round to nearest even).
using ToHalfFn = void (*)(const float *src, uint16_t *dst, size_t n);

void ChunkScalar(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch);
void ToHalfScalar(const float *src, uint16_t *dst, size_t n);
#ifdef LLASA_RT_ATTENTION_X86  // Set by CMakeLists.txt when it compiles attention_avx2.cc and attention_avx512.cc.
void ChunkAvx2(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch);
void ToHalfAvx2(const float *src, uint16_t *dst, size_t n);
void ChunkAvx512(const Problem &problem, int kv_head, int r0, int r1, const Scratch &scratch);
#endif

}  // namespace attention
}  // namespace llasa_rt
