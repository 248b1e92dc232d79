// llasa-rt: grouped-query attention of one decoder layer over the KvCache, with an optional prompt prefix shared
// by every row. For each KV head, all rows' queries are scored against the shared prefix in one blocked
// matrix-matrix product (the prefix K/V is read once per call for all rows), each row's own positions separately,
// and both parts meet in one online softmax. The cache may hold float32 or float16 (compact) keys/values.
#pragma once

#include <memory>

#include "llasa_rt/kv_cache.h"

namespace llasa_rt {

class ThreadPool;  // The core's internal thread pool (runtime/src/thread_pool.h).

// Shape of the attention of one layer.
struct AttentionConfig {
  int num_heads = 0;     // Query heads.
  int num_kv_heads = 0;  // Key/value heads (GQA: num_heads is a multiple of it).
  int head_dim = 0;      // Dimension of one head.
  float scale = 0.0f;    // Softmax scale (1/sqrt(head_dim)).
  int threads = 1;       // Threads of one Run.

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

class Attention {
 public:
  // `cache` (dtype float32 or float16) must have config.num_kv_heads heads of config.head_dim; it must outlive
  // this object. Throws std::invalid_argument when the shapes disagree. `pool`: for the core's own use (NativeLm
  // shares its threads with its attention); null = a pool of config.threads threads of its own.
  Attention(KvCache &cache, const AttentionConfig &config, ThreadPool *pool = nullptr);
  ~Attention();
  Attention(const Attention &) = delete;
  Attention &operator=(const Attention &) = delete;

  const AttentionConfig &config() const { return config_; }
  // The kernel picked for this CPU at construction: "avx512", "avx2" or "scalar".
  const char *kernel() const;

  // One layer. q [batch, seq, num_heads*head_dim], k and v [batch, seq, num_kv_heads*head_dim], float32, rotary
  // already applied. Row b uses KV slot slots[b], which holds past_lens[b] cached positions, except that positions
  // [0, prefix_len) are read from slot prefix_slot (a prompt shared by all rows; prefix_len 0 = nothing shared;
  // needs past_lens[b] >= prefix_len). Stores k/v at positions [past_lens[b], past_lens[b] + seq) of slots[b] in
  // the cache dtype, then writes out [batch, seq, num_heads*head_dim] = softmax(scale * q K^T) V over positions
  // [0, past_lens[b] + s] for query s (causal). The result does not depend on config.threads. Allocates nothing
  // per call after the first call of a shape. Throws std::invalid_argument / std::out_of_range on bad arguments
  // (nothing is written then).
  void Run(int layer, const float *q, const float *k, const float *v, int batch, int seq, const int *slots,
           const int *past_lens, int prefix_slot, int prefix_len, float *out);

 private:
  struct Impl;
  KvCache &cache_;
  AttentionConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llasa_rt
