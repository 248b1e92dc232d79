// llasa-rt: the speech-row sampler. Per request, in Hugging Face generate()'s order:
//   repetition penalty -> END masked before min_new_tokens -> [greedy: argmax]
//   -> temperature -> top-k -> top-p -> min-p -> inverse-CDF draw with u = UniformDraw(seed, uid, step).
// Logit transforms are done in float32 as transformers does; probabilities and cumulative sums in double.
#include "llasa_rt/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "llasa_rt/counter_rng.h"

namespace llasa_rt {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::string Where(const SampleRequest &q) {
  return "sampling candidate uid=" + std::to_string(q.uid) + " at step " + std::to_string(q.step);
}

// Maps a float to an unsigned key with the same order (for radix sorting; -inf sorts first).
inline uint32_t OrderedKey(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Bucket of a weight w in (0, 1] by its binary exponent: 0 = [0.5, 1] ... 63 = below 2^-62.
inline int WeightBucket(double w) {
  uint64_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  const int biased = static_cast<int>((bits >> 52) & 0x7ff);
  return std::min(std::max(1022 - biased, 0), 63);
}

// Stable LSD radix sort of (keys, values) by key, 11 bits per pass; the result ends in keys/values.
void RadixSort(uint32_t *keys, uint32_t *values, uint32_t *keys_tmp, uint32_t *values_tmp, size_t n) {
  constexpr int kBits = 11;
  constexpr uint32_t kRadix = 1u << kBits;
  uint32_t count[kRadix];
  uint32_t *src_k = keys, *src_v = values, *dst_k = keys_tmp, *dst_v = values_tmp;
  for (int shift = 0; shift < 32; shift += kBits) {
    std::fill(count, count + kRadix, 0u);
    for (size_t i = 0; i < n; ++i) ++count[(src_k[i] >> shift) & (kRadix - 1)];
    if (count[(src_k[0] >> shift) & (kRadix - 1)] == n) continue;  // Every key has this digit: order unchanged.
    uint32_t sum = 0;
    for (uint32_t d = 0; d < kRadix; ++d) {
      const uint32_t c = count[d];
      count[d] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pos = count[(src_k[i] >> shift) & (kRadix - 1)]++;
      dst_k[pos] = src_k[i];
      dst_v[pos] = src_v[i];
    }
    std::swap(src_k, dst_k);
    std::swap(src_v, dst_v);
  }
  if (src_k != keys) {
    std::memcpy(keys, src_k, n * sizeof(uint32_t));
    std::memcpy(values, src_v, n * sizeof(uint32_t));
  }
}

}  // namespace

struct Sampler::Scratch {
  explicit Scratch(int rows)
      : scores(rows), weights(rows), order(rows), order_tmp(rows), keys(rows), keys_tmp(rows), select(rows) {
    heap.reserve(static_cast<size_t>(rows));
  }
  std::vector<float> scores;     // Processed logits.
  std::vector<double> weights;   // exp(score - max score); 0 = removed.
  std::vector<uint32_t> order;   // Row indices being sorted for top-p.
  std::vector<uint32_t> order_tmp;
  std::vector<uint32_t> keys;    // Sort keys of `order`.
  std::vector<uint32_t> keys_tmp;
  std::vector<float> heap;       // Min-heap of the k largest scores (small k).
  std::vector<float> select;     // Copy of the scores for nth_element (large k).
};

struct Sampler::BatchJob {
  Sampler *self;
  const SampleRequest *requests;
  const SamplingOptions *options;
  SampleResult *results;
};

Sampler::Sampler(int rows, int threads) : rows_(rows), pool_(threads) {
  if (rows < 2) throw std::invalid_argument("Sampler rows must be >= 2 (codes + END), got " + std::to_string(rows));
  for (int w = 0; w < pool_.size(); ++w) scratch_.push_back(std::make_unique<Scratch>(rows));
}

Sampler::~Sampler() = default;

void Sampler::RunTask(void *context, int task, int worker) {
  auto *job = static_cast<BatchJob *>(context);
  job->results[task] =
      job->self->SampleOne(job->requests[task], *job->options, *job->self->scratch_[worker], nullptr);
}

void Sampler::Sample(const SampleRequest *requests, int batch, const SamplingOptions &options,
                     SampleResult *results) {
  options.Validate();
  BatchJob job{this, requests, &options, results};
  pool_.Run(batch, &Sampler::RunTask, &job);
}

void Sampler::Distribution(const SampleRequest &request, const SamplingOptions &options, double *probabilities) {
  options.Validate();
  SampleOne(request, options, *scratch_[0], probabilities);
}

namespace {

// The k-th largest of s[0, n) counting duplicates (torch.topk(s, k).values[-1]).
float KthLargest(const float *s, int n, int k, std::vector<float> &heap, std::vector<float> &select) {
  if (k <= 256) {  // One pass with a min-heap of the k largest so far: most rows fail the first compare.
    heap.assign(s, s + k);
    std::make_heap(heap.begin(), heap.end(), std::greater<float>());
    for (int i = k; i < n; ++i) {
      if (s[i] > heap.front()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
        heap.back() = s[i];
        std::push_heap(heap.begin(), heap.end(), std::greater<float>());
      }
    }
    return heap.front();
  }
  std::copy(s, s + n, select.begin());
  std::nth_element(select.begin(), select.begin() + (k - 1), select.begin() + n, std::greater<float>());
  return select[static_cast<size_t>(k - 1)];
}

}  // namespace

SampleResult Sampler::SampleOne(const SampleRequest &q, const SamplingOptions &o, Scratch &sc, double *probs) {
  const int n = rows_;
  const float *x = q.logits;

  // Raw distribution: validity, max and log-normaliser (for the candidate's cumulative log-prob).
  float raw_max = -kInf;
  bool invalid = false;
  for (int i = 0; i < n; ++i) {
    const float v = x[i];
    invalid |= !(v < kInf);  // NaN or +inf.
    raw_max = v > raw_max ? v : raw_max;
  }
  if (invalid) {
    for (int i = 0; i < n; ++i) {
      if (!(x[i] < kInf)) {
        throw std::invalid_argument(Where(q) + ": logit of row " + std::to_string(i) + " is " +
                                    (std::isnan(x[i]) ? "NaN" : "+inf") + " (the model produced invalid logits)");
      }
    }
  }
  if (raw_max == -kInf) {
    throw std::invalid_argument(Where(q) + ": every logit is -inf (the model allows no row)");
  }
  double raw_sum = 0.0;
  for (int i = 0; i < n; ++i) raw_sum += std::exp(static_cast<double>(x[i]) - raw_max);
  const double raw_log_norm = raw_max + std::log(raw_sum);

  // History processors on a copy: repetition penalty (once per distinct row, computed from the raw logit),
  // then END masking before min_new_tokens.
  float *s = sc.scores.data();
  std::memcpy(s, x, static_cast<size_t>(n) * sizeof(float));
  const float penalty = static_cast<float>(o.repetition_penalty);
  auto penalize = [&](const int32_t *rows, size_t len) {
    for (size_t j = 0; j < len; ++j) {
      const int32_t r = rows[j];
      if (r < 0 || r >= n) {
        throw std::invalid_argument(Where(q) + ": history row " + std::to_string(r) + " outside [0, " +
                                    std::to_string(n) + ")");
      }
      if (o.repetition_penalty != 1.0) s[r] = x[r] < 0 ? x[r] * penalty : x[r] / penalty;
    }
  };
  penalize(q.prompt_rows, q.prompt_rows_len);
  penalize(q.tokens, q.tokens_len);
  if (q.step < static_cast<uint64_t>(o.min_new_tokens)) s[n - 1] = -kInf;

  auto nothing_left = [&]() {
    return std::invalid_argument(Where(q) + ": no row is left to choose (every row is -inf after the repetition "
                                            "penalty and END masking, min_new_tokens=" +
                                 std::to_string(o.min_new_tokens) + ")");
  };

  if (o.temperature == 0.0) {  // Greedy: argmax, first index on ties (torch.argmax).
    int best = -1;
    float best_score = -kInf;
    for (int i = 0; i < n; ++i) {
      if (s[i] > best_score) {
        best_score = s[i];
        best = i;
      }
    }
    if (best < 0) throw nothing_left();
    if (probs != nullptr) {
      std::fill(probs, probs + n, 0.0);
      probs[best] = 1.0;
    }
    return {best, static_cast<double>(x[best]) - raw_log_norm};
  }

  if (o.temperature != 1.0) {
    const float t = static_cast<float>(o.temperature);
    for (int i = 0; i < n; ++i) s[i] = s[i] / t;
  }
  if (o.top_k > 0 && o.top_k < n) {
    const float kth = KthLargest(s, n, o.top_k, sc.heap, sc.select);
    for (int i = 0; i < n; ++i) s[i] = s[i] < kth ? -kInf : s[i];
  }

  float max_score = -kInf;
  for (int i = 0; i < n; ++i) max_score = s[i] > max_score ? s[i] : max_score;
  if (max_score == -kInf) throw nothing_left();
  double *w = sc.weights.data();
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    w[i] = std::exp(static_cast<double>(s[i]) - max_score);
    total += w[i];
  }

  if (o.top_p < 1.0) {
    // HF TopPLogitsWarper: sort ascending (stable), remove the prefix whose cumulative probability is
    // <= 1 - top_p, always keep the last (largest). Only rows that can sit at or above the cut are sorted:
    // weights are bucketed by binary exponent, buckets are taken from the top until they clearly hold more
    // than top_p of the mass, and every row below them is removed unsorted.
    constexpr int kBuckets = 64;
    double mass[kBuckets] = {};
    for (int i = 0; i < n; ++i) {
      if (w[i] > 0.0) mass[WeightBucket(w[i])] += w[i];
    }
    const double need = o.top_p * total * (1.0 + 1e-9);
    double above = 0.0;
    int last = 0;
    for (; last < kBuckets - 1; ++last) {
      above += mass[last];
      if (above >= need) break;
    }
    double below = 0.0;
    for (int b = last + 1; b < kBuckets; ++b) below += mass[b];
    uint32_t *order = sc.order.data();
    size_t count = 0;
    for (int i = 0; i < n; ++i) {
      if (w[i] > 0.0) {
        if (WeightBucket(w[i]) <= last) {
          order[count++] = static_cast<uint32_t>(i);
        } else {
          w[i] = 0.0;
        }
      }
    }
    if (count <= 1024) {
      std::sort(order, order + count, [s](uint32_t a, uint32_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); });
    } else {  // `order` is in index order, so a stable sort by score gives the same (score, index) order.
      uint32_t *keys = sc.keys.data();
      for (size_t j = 0; j < count; ++j) keys[j] = OrderedKey(s[order[j]]);
      RadixSort(keys, order, sc.keys_tmp.data(), sc.order_tmp.data(), count);
    }
    const double limit = 1.0 - o.top_p;
    double cumulative = below / total;
    for (size_t j = 0; j + 1 < count; ++j) {
      cumulative += w[order[j]] / total;
      if (!(cumulative <= limit)) break;
      w[order[j]] = 0.0;
    }
  }

  if (o.min_p > 0.0) {
    // HF MinPLogitsWarper on the remaining rows: p < min_p * max p is removed (the max row always stays).
    double kept = 0.0;
    double top = 0.0;
    for (int i = 0; i < n; ++i) {
      kept += w[i];
      top = w[i] > top ? w[i] : top;
    }
    const double threshold = o.min_p * (top / kept);
    for (int i = 0; i < n; ++i) {
      if (w[i] > 0.0 && w[i] / kept < threshold) w[i] = 0.0;
    }
  }

  // Inverse CDF in row order: the first row whose cumulative weight exceeds u * total.
  double final_total = 0.0;
  for (int i = 0; i < n; ++i) final_total += w[i];
  const double target = UniformDraw(o.seed, q.uid, q.step) * final_total;
  int chosen = -1;
  double cumulative = 0.0;
  for (int i = 0; i < n; ++i) {
    if (w[i] > 0.0) {
      cumulative += w[i];
      chosen = i;
      if (cumulative > target) break;
    }
  }
  if (probs != nullptr) {
    for (int i = 0; i < n; ++i) probs[i] = w[i] / final_total;
  }
  return {chosen, static_cast<double>(x[chosen]) - raw_log_norm};
}

}  // namespace llasa_rt
