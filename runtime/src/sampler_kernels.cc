// llasa-rt (internal): the sampler's vectorisable full-row loops.
#include "sampler_kernels.h"

#include <cstring>
#include <limits>

#include "exp_non_positive.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LLASA_RT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LLASA_RT_CLONES
#endif

namespace llasa_rt {
namespace kernels {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kBlock = 256;  // Float partial sums per block, then added in double.
}  // namespace

// Reductions keep kLanes independent accumulators (one vector register's worth or two), which the compiler can
// vectorise without reassociating floating-point sums; lanes are combined (in double) at the end.
constexpr int kLanes = 16;

// sum_i op(x[i]) in double: kLanes float partial sums over blocks of at most kBlock elements (bounded rounding),
// each block's lanes then added to the double total; the tail (< kLanes elements) is added element by element.
// Inlined into each caller, so the caller's instruction-set clone also vectorises `op`.
template <typename Op>
__attribute__((always_inline)) inline double BlockedSum(const float *x, int n, Op op) {
  double total = 0.0;
  int i = 0;
  while (i + kLanes <= n) {
    float acc[kLanes] = {};
    const int block_end = i + kBlock <= n ? i + kBlock : n - (n - i) % kLanes;
    for (; i < block_end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) acc[j] += op(x[i + j]);
    }
    for (int j = 0; j < kLanes; ++j) total += acc[j];
  }
  for (; i < n; ++i) total += op(x[i]);
  return total;
}

LLASA_RT_CLONES float MaxChecked(const float *x, int n, bool *invalid) {
  float m[kLanes];
  int bad[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    m[j] = -kInf;
    bad[j] = 0;
  }
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      bad[j] |= !(v < kInf);  // NaN or +inf.
      m[j] = v > m[j] ? v : m[j];
    }
  }
  float result = -kInf;
  int any_bad = 0;
  for (; i < n; ++i) {
    any_bad |= !(x[i] < kInf);
    result = x[i] > result ? x[i] : result;
  }
  for (int j = 0; j < kLanes; ++j) {
    any_bad |= bad[j];
    result = m[j] > result ? m[j] : result;
  }
  *invalid = any_bad != 0;
  return result;
}

LLASA_RT_CLONES float Max(const float *x, int n) {
  float m[kLanes];
  for (int j = 0; j < kLanes; ++j) m[j] = -kInf;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  }
  float result = -kInf;
  for (; i < n; ++i) result = x[i] > result ? x[i] : result;
  for (int j = 0; j < kLanes; ++j) result = m[j] > result ? m[j] : result;
  return result;
}

LLASA_RT_CLONES double SumExp(const float *x, int n, float shift) {
  return BlockedSum(x, n, [shift](float v) __attribute__((always_inline)) { return ExpNonPositive(v - shift); });
}

LLASA_RT_CLONES double Sum(const float *w, int n) {
  return BlockedSum(w, n, [](float v) __attribute__((always_inline)) { return v; });
}

LLASA_RT_CLONES double ExpWeights(const float *s, int n, float shift, float *w) {
  for (int i = 0; i < n; ++i) w[i] = ExpNonPositive(s[i] - shift);
  return Sum(w, n);
}

LLASA_RT_CLONES void Divide(float *s, int n, float divisor) {
  for (int i = 0; i < n; ++i) s[i] = s[i] / divisor;
}

LLASA_RT_CLONES void MaskBelow(float *s, int n, float threshold) {
  for (int i = 0; i < n; ++i) s[i] = s[i] < threshold ? -kInf : s[i];
}

LLASA_RT_CLONES void WeightBuckets(const float *w, int n, uint8_t *bucket) {
  for (int i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &w[i], sizeof bits);
    const int32_t key = (127 << 2) - static_cast<int32_t>(bits >> 21);  // 0 for w = 1; larger for smaller w.
    const int32_t clamped = key < 0 ? 0 : (key > kWeightBuckets - 1 ? kWeightBuckets - 1 : key);
    bucket[i] = static_cast<uint8_t>(clamped);
  }
}

LLASA_RT_CLONES void ZeroAboveBucket(float *w, const uint8_t *bucket, int n, uint8_t cut) {
  for (int i = 0; i < n; ++i) w[i] = bucket[i] > cut ? 0.0f : w[i];
}

}  // namespace kernels
}  // namespace llasa_rt
