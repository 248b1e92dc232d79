// The attention kernel (llasa_rt/attention.h) without Python: compared with a double-precision reference for a
// prefill and a decode step, shared prefix against the same prefix copied into every slot, the same bits for 1 and
// 2 threads, float16 caches, and no heap allocation in Run after the first call (global operator new is replaced
// in this binary and counted). Exit status 0 when every check passes. A ctest test (tests/cpp/CMakeLists.txt).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "llasa_rt/attention.h"

#include "alloc_counter.h"

namespace {

using llasa_rt::Attention;
using llasa_rt::AttentionConfig;
using llasa_rt::KvCache;
using llasa_rt::KvCacheConfig;
using llasa_rt::KvDType;

constexpr int kHeads = 8, kKvHeads = 2, kDim = 16, kSlots = 5, kMaxSeq = 200;
int g_failures = 0;

void Check(bool ok, const char *what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++g_failures;
  }
}

// Deterministic values in [-1, 1).
float Noise(unsigned &state) {
  state = state * 1664525u + 1013904223u;
  return static_cast<float>(state >> 8) / 8388608.0f - 1.0f;
}

float ReadKv(const KvCache &cache, const void *base, int slot, int head, int pos, int d) {
  const KvCacheConfig &c = cache.config();
  const size_t index = ((static_cast<size_t>(slot) * c.num_kv_heads + head) * c.max_seq_len + pos) * c.head_dim + d;
  if (c.dtype == KvDType::kFloat32) return static_cast<const float *>(base)[index];
  // Exact half -> float for the values used here (normal numbers and zero).
  const uint16_t h = static_cast<const uint16_t *>(base)[index];
  const int exponent = (h >> 10) & 31;
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(h & 1023), -24)
                                        : std::ldexp(1.0f + static_cast<float>(h & 1023) / 1024.0f, exponent - 15);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// out[b, s, head] in double from what the cache holds (after Run stored the new keys/values).
double Reference(const KvCache &cache, const std::vector<float> &q, int seq, const std::vector<int> &slots,
                 const std::vector<int> &past, int prefix_slot, int prefix_len, int b, int s, int head, int d) {
  const int group = kHeads / kKvHeads, h = head / group, end = past[b] + s + 1;
  std::vector<double> scores(end);
  double m = -1e300;
  for (int j = 0; j < end; ++j) {
    const int slot = j < prefix_len ? prefix_slot : slots[b];
    double dot = 0;
    for (int e = 0; e < kDim; ++e) {
      dot += static_cast<double>(q[((b * seq + s) * kHeads + head) * kDim + e]) * ReadKv(cache, cache.Key(0), slot, h, j, e);
    }
    scores[j] = dot / std::sqrt(static_cast<double>(kDim));
    m = scores[j] > m ? scores[j] : m;
  }
  double sum = 0, out = 0;
  for (int j = 0; j < end; ++j) {
    const int slot = j < prefix_len ? prefix_slot : slots[b];
    const double w = std::exp(scores[j] - m);
    sum += w;
    out += w * ReadKv(cache, cache.Value(0), slot, h, j, d);
  }
  return out / sum;
}

void FillCache(KvCache &cache) {
  unsigned state = 7;
  const KvCacheConfig &c = cache.config();
  const size_t n = static_cast<size_t>(c.slots) * c.num_kv_heads * c.max_seq_len * c.head_dim;
  for (void *base : {cache.Key(0), cache.Value(0)}) {
    for (size_t i = 0; i < n; ++i) {
      const float x = Noise(state);
      if (c.dtype == KvDType::kFloat32) {
        static_cast<float *>(base)[i] = x;
      } else {  // A half with 6 mantissa bits: exact in both types.
        const float r = std::round(x * 64.0f) / 64.0f;
        uint16_t h = 0;
        if (r != 0.0f) {
          int e;
          const float f = std::frexp(std::fabs(r), &e);  // |r| = f * 2^e, f in [0.5, 1)
          h = static_cast<uint16_t>(((e - 1 + 15) << 10) | static_cast<int>((f * 2.0f - 1.0f) * 1024.0f));
          if (r < 0) h |= 0x8000;
        }
        static_cast<uint16_t *>(base)[i] = h;
      }
    }
  }
}

struct Case {
  int batch, seq, prefix_len;
};

std::vector<float> RunCase(KvDType dtype, int threads, const Case &k, double *max_error) {
  KvCacheConfig cc;
  cc.num_layers = 1;
  cc.num_kv_heads = kKvHeads;
  cc.head_dim = kDim;
  cc.slots = kSlots;
  cc.max_seq_len = kMaxSeq;
  cc.dtype = dtype;
  KvCache cache(cc);
  FillCache(cache);
  AttentionConfig ac;
  ac.num_heads = kHeads;
  ac.num_kv_heads = kKvHeads;
  ac.head_dim = kDim;
  ac.scale = 1.0f / std::sqrt(static_cast<float>(kDim));
  ac.threads = threads;
  Attention attention(cache, ac);
  unsigned state = 99;
  std::vector<float> q(static_cast<size_t>(k.batch) * k.seq * kHeads * kDim);
  std::vector<float> kk(static_cast<size_t>(k.batch) * k.seq * kKvHeads * kDim), vv(kk.size());
  for (float &x : q) x = Noise(state);
  for (float &x : kk) x = std::round(Noise(state) * 64.0f) / 64.0f;
  for (float &x : vv) x = std::round(Noise(state) * 64.0f) / 64.0f;
  std::vector<int> slots, past;
  for (int b = 0; b < k.batch; ++b) {
    slots.push_back(b);
    past.push_back(k.prefix_len + 3 * b + (k.prefix_len == 0 ? 40 : 0));
  }
  std::vector<float> out(q.size());
  attention.Run(0, q.data(), kk.data(), vv.data(), k.batch, k.seq, slots.data(), past.data(), kSlots - 1,
                k.prefix_len, out.data());
  *max_error = 0;
  for (int b = 0; b < k.batch; ++b) {
    for (int s = 0; s < k.seq; ++s) {
      for (int head = 0; head < kHeads; ++head) {
        for (int d = 0; d < kDim; ++d) {
          const double ref = Reference(cache, q, k.seq, slots, past, kSlots - 1, k.prefix_len, b, s, head, d);
          const double err = std::fabs(ref - out[((b * k.seq + s) * kHeads + head) * kDim + d]);
          *max_error = err > *max_error ? err : *max_error;
        }
      }
    }
  }
  // Later calls of the same or a smaller shape allocate nothing.
  const long long before = g_allocations.load();
  for (int i = 0; i < 3; ++i) {
    attention.Run(0, q.data(), kk.data(), vv.data(), k.batch, k.seq, slots.data(), past.data(), kSlots - 1,
                  k.prefix_len, out.data());
  }
  Check(g_allocations.load() == before, "Run allocated after its first call");
  return out;
}

}  // namespace

int main() {
  const Case cases[] = {{1, 37, 0}, {4, 1, 0}, {4, 1, 70}, {4, 5, 70}, {3, 37, 65}};
  for (KvDType dtype : {KvDType::kFloat32, KvDType::kFloat16}) {
    for (const Case &k : cases) {
      double e1 = 0, e2 = 0;
      const std::vector<float> one = RunCase(dtype, 1, k, &e1);
      const std::vector<float> two = RunCase(dtype, 2, k, &e2);
      std::printf("dtype=%s batch=%d seq=%d prefix=%d max_error=%.3g\n", llasa_rt::KvDTypeName(dtype), k.batch,
                  k.seq, k.prefix_len, e1);
      Check(e1 <= 1e-5, "result differs from the reference by more than 1e-5");
      Check(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0, "1 and 2 threads differ");
    }
  }
  std::printf(g_failures == 0 ? "attention_test passed\n" : "attention_test: %d failures\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
