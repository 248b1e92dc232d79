// llasa-rt: Attention (validation, storing the new keys/values, splitting the work into tasks, kernel choice).
#include "llasa_rt/attention.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_kernels.h"
#include "thread_pool.h"

namespace llasa_rt {

namespace {

struct Kernel {
  const char *name;
  attention::ChunkFn chunk;
  attention::ToHalfFn to_half;
};

// The best kernel this CPU runs for heads of `head_dim`.
Kernel PickKernel(int head_dim) {
#ifdef LLASA_RT_ATTENTION_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (head_dim % 16 == 0 && avx2 && __builtin_cpu_supports("avx512f")) {
    return {"avx512", attention::ChunkAvx512, attention::ToHalfAvx2};
  }
  if (head_dim % 8 == 0 && avx2) {
    return {"avx2", attention::ChunkAvx2, attention::ToHalfAvx2};
  }
#else
  (void)head_dim;
#endif
  return {"scalar", attention::ChunkScalar, attention::ToHalfScalar};
}

std::string Int(long long value) { return std::to_string(value); }

}  // namespace

void AttentionConfig::Validate() const {
  if (num_heads < 1) throw std::invalid_argument("AttentionConfig num_heads must be >= 1, got " + Int(num_heads));
  if (num_kv_heads < 1) {
    throw std::invalid_argument("AttentionConfig num_kv_heads must be >= 1, got " + Int(num_kv_heads));
  }
  if (num_heads % num_kv_heads != 0) {
    throw std::invalid_argument("AttentionConfig num_heads (" + Int(num_heads) + ") must be a multiple of num_kv_heads (" +
                                Int(num_kv_heads) + ")");
  }
  if (head_dim < 1) throw std::invalid_argument("AttentionConfig head_dim must be >= 1, got " + Int(head_dim));
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    throw std::invalid_argument("AttentionConfig scale must be a positive finite number (1/sqrt(head_dim)), got " +
                                std::to_string(scale));
  }
  if (threads < 1) throw std::invalid_argument("AttentionConfig threads must be >= 1, got " + Int(threads));
}

struct Attention::Impl {
  Kernel kernel;
  std::unique_ptr<ThreadPool> own;  // The pool made for this object (none when one was shared with it).
  ThreadPool &pool;
  std::vector<float> floats;  // Every worker's scratch.
  std::vector<int> ints;
  std::vector<attention::Scratch> scratch;  // One per worker.
  attention::Problem problem;
  int chunks = 0;  // Tasks per KV head in the current Run.
  int batch = 0;   // Rows of the current Run (for the store tasks).
  const float *k = nullptr;
  const float *v = nullptr;

  Impl(int threads, int head_dim, ThreadPool *shared)
      : kernel(PickKernel(head_dim)),
        own(shared ? nullptr : std::make_unique<ThreadPool>(threads)),
        pool(shared ? *shared : *own) {}
};

Attention::Attention(KvCache &cache, const AttentionConfig &config, ThreadPool *pool)
    : cache_(cache), config_(config) {
  config_.Validate();
  const KvCacheConfig &c = cache.config();
  if (c.num_kv_heads != config_.num_kv_heads || c.head_dim != config_.head_dim) {
    throw std::invalid_argument("Attention: the KvCache has " + Int(c.num_kv_heads) + " KV heads of " +
                                Int(c.head_dim) + " but the AttentionConfig says " + Int(config_.num_kv_heads) +
                                " of " + Int(config_.head_dim) + "; make both from the same model config");
  }
  impl_ = std::make_unique<Impl>(config_.threads, config_.head_dim, pool);
  const int D = config_.head_dim;
  const size_t per_worker = 2 * static_cast<size_t>(attention::kChunk) * D + 3 * attention::kChunk +
                            2 * static_cast<size_t>(D) * attention::kTile + attention::kGroup * attention::kTile;
  const size_t padded = (per_worker + 15) / 16 * 16;  // Keep every worker's block 64-byte apart.
  const int workers = impl_->pool.size();
  impl_->floats.assign(padded * workers + 16, 0.0f);
  impl_->ints.assign(static_cast<size_t>(attention::kChunk) * workers, 0);
  for (int w = 0; w < workers; ++w) {
    float *base = impl_->floats.data() + padded * w;
    attention::Scratch s;
    s.q = base;
    s.acc = s.q + attention::kChunk * D;
    s.kt = s.acc + attention::kChunk * D;
    s.vt = s.kt + D * attention::kTile;
    s.s = s.vt + D * attention::kTile;
    s.m = s.s + attention::kGroup * attention::kTile;
    s.l = s.m + attention::kChunk;
    s.factor = s.l + attention::kChunk;
    s.limit = impl_->ints.data() + attention::kChunk * w;
    impl_->scratch.push_back(s);
  }
}

Attention::~Attention() = default;

const char *Attention::kernel() const { return impl_->kernel.name; }

void Attention::Run(int layer, const float *q, const float *k, const float *v, int batch, int seq, const int *slots,
                    const int *past_lens, int prefix_slot, int prefix_len, float *out) {
  const KvCacheConfig &c = cache_.config();
  if (layer < 0 || layer >= c.num_layers) {
    throw std::out_of_range("Attention layer " + Int(layer) + " outside [0, " + Int(c.num_layers) + ")");
  }
  if (batch < 1 || batch > c.slots) {
    throw std::invalid_argument("Attention batch " + Int(batch) + " outside [1, slots=" + Int(c.slots) + "]");
  }
  if (seq < 1) throw std::invalid_argument("Attention seq must be >= 1, got " + Int(seq));
  if (q == nullptr || k == nullptr || v == nullptr || out == nullptr || slots == nullptr || past_lens == nullptr) {
    throw std::invalid_argument("Attention::Run got a null pointer");
  }
  if (prefix_len < 0) throw std::invalid_argument("Attention prefix_len must be >= 0, got " + Int(prefix_len));
  if (prefix_len > 0 && (prefix_slot < 0 || prefix_slot >= c.slots)) {
    throw std::out_of_range("Attention prefix_slot " + Int(prefix_slot) + " outside [0, " + Int(c.slots) + ")");
  }
  for (int b = 0; b < batch; ++b) {
    if (slots[b] < 0 || slots[b] >= c.slots) {
      throw std::out_of_range("Attention row " + Int(b) + ": slot " + Int(slots[b]) + " outside [0, " +
                              Int(c.slots) + ")");
    }
    if (past_lens[b] < prefix_len) {
      throw std::invalid_argument("Attention row " + Int(b) + ": past_len " + Int(past_lens[b]) +
                                  " is shorter than prefix_len " + Int(prefix_len) +
                                  " (every row must hold the shared prefix)");
    }
    if (static_cast<long long>(past_lens[b]) + seq > c.max_seq_len) {
      throw std::out_of_range("Attention row " + Int(b) + ": past_len " + Int(past_lens[b]) + " + seq " + Int(seq) +
                              " exceeds the cache's max_seq_len " + Int(c.max_seq_len));
    }
    for (int other = 0; other < b; ++other) {
      if (slots[other] == slots[b]) {
        throw std::invalid_argument("Attention rows " + Int(other) + " and " + Int(b) + " both use slot " +
                                    Int(slots[b]) + "; each row needs its own slot");
      }
    }
  }
  Impl &im = *impl_;
  attention::Problem &p = im.problem;
  p.q = q;
  p.out = out;
  p.key = cache_.Key(layer);
  p.value = cache_.Value(layer);
  p.f16 = c.dtype == KvDType::kFloat16;
  p.seq = seq;
  p.heads = config_.num_heads;
  p.group = config_.num_heads / config_.num_kv_heads;
  p.head_dim = config_.head_dim;
  p.max_seq_len = c.max_seq_len;
  p.kv_heads = c.num_kv_heads;
  p.scale = config_.scale;
  p.slots = slots;
  p.past_lens = past_lens;
  p.prefix_slot = prefix_len > 0 ? prefix_slot : 0;
  p.prefix_len = prefix_len;
  im.batch = batch;
  im.k = k;
  im.v = v;
  // 1. The new keys/values into each row's slot (one task per KV head), before any task reads them.
  im.pool.Run(
      c.num_kv_heads,
      [](void *context, int h, int) {
        Impl &im = *static_cast<Impl *>(context);
        const attention::Problem &p = im.problem;
        const int D = p.head_dim;
        const size_t head_stride = static_cast<size_t>(p.max_seq_len) * D;
        const size_t elem = p.f16 ? 2 : 4;
        for (int b = 0; b < im.batch; ++b) {
          const size_t first = (static_cast<size_t>(p.slots[b]) * p.kv_heads + h) * head_stride +
                               static_cast<size_t>(p.past_lens[b]) * D;
          for (int s = 0; s < p.seq; ++s) {
            const size_t src = (static_cast<size_t>(b) * p.seq + s) * p.kv_heads * D + static_cast<size_t>(h) * D;
            const size_t dst = (first + static_cast<size_t>(s) * D) * elem;
            unsigned char *kd = static_cast<unsigned char *>(const_cast<void *>(p.key)) + dst;
            unsigned char *vd = static_cast<unsigned char *>(const_cast<void *>(p.value)) + dst;
            if (p.f16) {
              im.kernel.to_half(im.k + src, reinterpret_cast<uint16_t *>(kd), D);
              im.kernel.to_half(im.v + src, reinterpret_cast<uint16_t *>(vd), D);
            } else {
              std::memcpy(kd, im.k + src, D * sizeof(float));
              std::memcpy(vd, im.v + src, D * sizeof(float));
            }
          }
        }
      },
      &im);
  // 2. Attention: tasks (KV head, chunk of kChunk query rows); rows are (batch row, position, head of the group).
  const long long rows = static_cast<long long>(batch) * seq * p.group;
  im.chunks = static_cast<int>((rows + attention::kChunk - 1) / attention::kChunk);
  im.pool.Run(
      c.num_kv_heads * im.chunks,
      [](void *context, int task, int worker) {
        Impl &im = *static_cast<Impl *>(context);
        const attention::Problem &p = im.problem;
        const long long rows = static_cast<long long>(im.batch) * p.seq * p.group;
        const int h = task / im.chunks;
        const long long r0 = static_cast<long long>(task % im.chunks) * attention::kChunk;
        const long long r1 = r0 + attention::kChunk < rows ? r0 + attention::kChunk : rows;
        im.kernel.chunk(p, h, static_cast<int>(r0), static_cast<int>(r1), im.scratch[worker]);
      },
      &im);
}

}  // namespace llasa_rt
