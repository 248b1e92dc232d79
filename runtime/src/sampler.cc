// llasa-rt: the speech-row sampler. Per request, in Hugging Face generate()'s order:
//   repetition penalty -> END masked before min_new_tokens -> [greedy: argmax]
//   -> temperature -> top-k -> top-p -> min-p -> inverse-CDF draw with u = UniformDraw(seed, uid, step).
// Logit transforms are done in float32 as transformers does; exp in float (as torch's float32 softmax), sums and
// cumulative probabilities in double.
#include "llasa_rt/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "counter_rng.h"
#include "sampler_kernels.h"
#include "thread_pool.h"

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
      : scores(rows), weights(rows), buckets(rows), order(rows), order_tmp(rows), keys(rows), keys_tmp(rows), select(rows) {
    heap.reserve(static_cast<size_t>(rows));
  }
  std::vector<float> scores;     // Processed logits.
  std::vector<float> weights;    // exp(score - max score); 0 = removed.
  std::vector<uint8_t> buckets;  // Top-p bucket of each weight.
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

Sampler::Sampler(int rows, int threads) : rows_(rows), pool_(std::make_unique<ThreadPool>(threads)) {
  if (rows < 2) throw std::invalid_argument("Sampler rows must be >= 2 (codes + END), got " + std::to_string(rows));
  for (int w = 0; w < pool_->size(); ++w) scratch_.push_back(std::make_unique<Scratch>(rows));
}

Sampler::~Sampler() = default;

int Sampler::threads() const { return pool_->size(); }

double Sampler::UniformDraw(uint64_t seed, uint64_t uid, uint64_t step) {
  return ::llasa_rt::UniformDraw(seed, uid, step);
}

void Sampler::RunTask(void *context, int task, int worker) {
  auto *job = static_cast<BatchJob *>(context);
  job->results[task] =
      job->self->SampleOne(job->requests[task], *job->options, *job->self->scratch_[worker], nullptr);
}

namespace {

// Holds a Sampler's busy flag for one call.
class BusyGuard {
 public:
  explicit BusyGuard(std::atomic<bool> &busy) : busy_(busy) {
    if (busy_.exchange(true)) {
      throw std::logic_error("this Sampler is already sampling in another thread; use one Sampler per thread");
    }
  }
  ~BusyGuard() { busy_ = false; }
  BusyGuard(const BusyGuard &) = delete;
  BusyGuard &operator=(const BusyGuard &) = delete;

 private:
  std::atomic<bool> &busy_;
};

}  // namespace

void Sampler::Sample(const SampleRequest *requests, int batch, const SamplingOptions &options,
                     SampleResult *results) {
  BusyGuard guard(busy_);
  options.Validate();
  BatchJob job{this, requests, &options, results};
  pool_->Run(batch, &Sampler::RunTask, &job);
}

void Sampler::Distribution(const SampleRequest &request, const SamplingOptions &options, double *probabilities) {
  BusyGuard guard(busy_);
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
  bool invalid = false;
  const float raw_max = kernels::MaxChecked(x, n, &invalid);
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
  const double raw_log_norm = raw_max + std::log(kernels::SumExp(x, n, raw_max));

  // History processors: repetition penalty (once per distinct row, computed from the raw logit), then END masking
  // before min_new_tokens. They work on a copy, unless greedy decoding has nothing to change.
  const bool penalize = o.repetition_penalty != 1.0 && (q.prompt_rows_len + q.tokens_len) > 0;
  const bool mask_end = q.step < static_cast<uint64_t>(o.min_new_tokens);
  const bool greedy = o.temperature == 0.0;
  float *s = sc.scores.data();
  if (penalize || mask_end || !greedy) std::memcpy(s, x, static_cast<size_t>(n) * sizeof(float));
  const float penalty = static_cast<float>(o.repetition_penalty);
  auto apply_penalty = [&](const int32_t *rows, size_t len) {
    for (size_t j = 0; j < len; ++j) {
      const int32_t r = rows[j];
      if (r < 0 || r >= n) {
        throw std::invalid_argument(Where(q) + ": history row " + std::to_string(r) + " outside [0, " +
                                    std::to_string(n) + ")");
      }
      if (penalize) s[r] = x[r] < 0 ? x[r] * penalty : x[r] / penalty;
    }
  };
  apply_penalty(q.prompt_rows, q.prompt_rows_len);
  apply_penalty(q.tokens, q.tokens_len);
  if (mask_end) s[n - 1] = -kInf;

  auto nothing_left = [&]() {
    return std::invalid_argument(Where(q) + ": no row is left to choose (every row is -inf after the repetition "
                                            "penalty and END masking, min_new_tokens=" +
                                 std::to_string(o.min_new_tokens) + ")");
  };

  if (greedy) {  // Argmax, first index on ties (torch.argmax).
    const float *scores = (penalize || mask_end) ? s : x;
    const float best_score = (penalize || mask_end) ? kernels::Max(s, n) : raw_max;
    if (best_score == -kInf) throw nothing_left();
    int best = 0;
    while (scores[best] != best_score) ++best;
    if (probs != nullptr) {
      std::fill(probs, probs + n, 0.0);
      probs[best] = 1.0;
    }
    return {best, static_cast<double>(x[best]) - raw_log_norm};
  }

  if (o.temperature != 1.0) {
    kernels::Divide(s, n, static_cast<float>(o.temperature));
  }
  if (o.top_k > 0 && o.top_k < n) {
    const float kth = KthLargest(s, n, o.top_k, sc.heap, sc.select);
    kernels::MaskBelow(s, n, kth);
  }

  const float max_score = kernels::Max(s, n);
  if (max_score == -kInf) throw nothing_left();
  if (max_score == kInf) {
    throw std::invalid_argument(Where(q) + ": temperature=" + std::to_string(o.temperature) +
                                " overflows the float32 logits; use a larger temperature, or 0 for greedy");
  }
  float *w = sc.weights.data();
  const double total = kernels::ExpWeights(s, n, max_score, w);

  if (o.top_p < 1.0) {
    // HF TopPLogitsWarper: sort ascending (stable), remove the prefix whose cumulative probability is
    // <= 1 - top_p, always keep the last (largest). Only the rows where the cut can fall are sorted: weights are
    // bucketed (monotonic in the weight), the bucket where the cumulative mass from the bottom first exceeds
    // 1 - top_p holds the cut; every smaller bucket is removed and every larger one kept without sorting.
    constexpr int kBuckets = kernels::kWeightBuckets;
    uint8_t *bucket = sc.buckets.data();
    kernels::WeightBuckets(w, n, bucket);
    // Four interleaved histograms, so consecutive rows rarely wait on the same accumulator.
    double partial[4][kBuckets] = {};
    for (int i = 0; i < n; ++i) partial[i & 3][bucket[i]] += w[i];
    double mass[kBuckets];
    for (int b = 0; b < kBuckets; ++b) mass[b] = (partial[0][b] + partial[1][b]) + (partial[2][b] + partial[3][b]);
    const double limit = 1.0 - o.top_p;
    const double limit_mass = limit * total;
    double below = 0.0;  // Mass of the buckets below the cut bucket.
    int cut = kBuckets - 1;
    for (; cut > 0; --cut) {
      if (below + mass[cut] > limit_mass) break;
      below += mass[cut];
    }
    kernels::ZeroAboveBucket(w, bucket, n, static_cast<uint8_t>(cut));
    uint32_t *order = sc.order.data();
    size_t count = 0;
    for (int i = 0; i < n; ++i) {  // Branch-free: rows are in random order, a branch would mispredict.
      order[count] = static_cast<uint32_t>(i);
      count += static_cast<size_t>((bucket[i] == cut) & (w[i] > 0.0f));
    }
    if (count <= 512) {
      std::sort(order, order + count, [s](uint32_t a, uint32_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); });
    } else {  // `order` is in index order, so a stable sort by score gives the same (score, index) order.
      uint32_t *keys = sc.keys.data();
      for (size_t j = 0; j < count; ++j) keys[j] = OrderedKey(s[order[j]]);
      RadixSort(keys, order, sc.keys_tmp.data(), sc.order_tmp.data(), count);
    }
    // The largest row (weight 1, bucket 0) always stays: when the cut falls in bucket 0 it is the last sorted row.
    const size_t removable = cut == 0 ? count - 1 : count;
    double cumulative = below / total;
    for (size_t j = 0; j < removable; ++j) {
      cumulative += w[order[j]] / total;
      if (!(cumulative <= limit)) break;
      w[order[j]] = 0.0f;
    }
  }

  if (o.min_p > 0.0) {
    // HF MinPLogitsWarper on the remaining rows: p < min_p * max p is removed (the max row always stays).
    const double kept = kernels::Sum(w, n);
    const double threshold = o.min_p * (static_cast<double>(kernels::Max(w, n)) / kept);
    for (int i = 0; i < n; ++i) {
      if (w[i] > 0.0f && w[i] / kept < threshold) w[i] = 0.0f;
    }
  }

  // Inverse CDF in row order: the first row whose cumulative weight exceeds u * total. Whole blocks are skipped
  // by their sums, then the block holding the target is walked row by row.
  const double final_total = kernels::Sum(w, n);
  const double target = ::llasa_rt::UniformDraw(o.seed, q.uid, q.step) * final_total;
  constexpr int kDrawBlock = 1024;
  double cumulative = 0.0;
  int start = 0;
  for (; start + kDrawBlock < n; start += kDrawBlock) {
    const double block = kernels::Sum(w + start, kDrawBlock);
    if (cumulative + block > target) break;
    cumulative += block;
  }
  int chosen = -1;
  for (int i = start; i < n; ++i) {
    if (w[i] > 0.0f) {
      cumulative += w[i];
      chosen = i;
      if (cumulative > target) break;
    }
  }
  for (int i = start - 1; chosen < 0 && i >= 0; --i) {  // Rounding left the target past the end: last kept row.
    if (w[i] > 0.0f) chosen = i;
  }
  if (probs != nullptr) {
    for (int i = 0; i < n; ++i) probs[i] = w[i] / final_total;
  }
  return {chosen, static_cast<double>(x[chosen]) - raw_log_norm};
}

}  // namespace llasa_rt
