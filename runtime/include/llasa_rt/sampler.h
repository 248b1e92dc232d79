// llasa-rt: the sampler over the kept logits rows (65,536 speech codes + END as the last row).
// Hugging Face semantics (transformers' RepetitionPenalty, MinNewTokensLength, Temperature, TopK, TopP, MinP
// processors in generate()'s order); a counter-based RNG makes each draw depend only on (seed, uid, step).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "llasa_rt/sampling_options.h"

namespace llasa_rt {

class ThreadPool;  // Internal (runtime/src/thread_pool.h).

// What the sampler needs to know about one candidate at one step.
struct SampleRequest {
  const float *logits = nullptr;          // `rows` raw logits of this candidate's last position.
  const int32_t *prompt_rows = nullptr;   // Rows already in the prompt (e.g. a voice prompt's speech codes).
  size_t prompt_rows_len = 0;             //   how many (duplicates allowed).
  const int32_t *tokens = nullptr;        // Rows this candidate generated so far.
  size_t tokens_len = 0;                  //   how many; this is also the step number for min_new_tokens.
  uint64_t uid = 0;                       // Stable candidate id: the RNG stream.
  uint64_t step = 0;                      // Generation step of this draw (tokens generated so far).
};

// The chosen row and its log-probability under the model's raw distribution (log-softmax of the
// unprocessed logits over the kept rows), which is what a candidate's cumulative score adds up.
struct SampleResult {
  int32_t row = -1;
  double logprob = 0.0;
};

class Sampler {
 public:
  // `rows` logits per request, the last one being END; `threads` workers share a batch of requests.
  explicit Sampler(int rows, int threads = 1);
  ~Sampler();
  Sampler(const Sampler &) = delete;
  Sampler &operator=(const Sampler &) = delete;

  int rows() const { return rows_; }
  int end_row() const { return rows_ - 1; }
  int threads() const;

  // Samples one row per request. Results depend only on each request, never on batch size, order or threads.
  // One call at a time per Sampler (it owns the scratch buffers); a concurrent call throws std::logic_error.
  // Does not allocate. Throws std::invalid_argument when options are invalid, a history row is out of range,
  // logits contain NaN / +inf, or no row is left to choose.
  void Sample(const SampleRequest *requests, int batch, const SamplingOptions &options, SampleResult *results);

  // The final distribution a request is drawn from (after every processor), `rows` probabilities summing to 1;
  // greedy gives a one-hot vector at the argmax. For tests and inspection.
  void Distribution(const SampleRequest &request, const SamplingOptions &options, double *probabilities);

  // The uniform number in [0, 1) that Sample draws for candidate `uid` at step `step` under `seed`: a pure
  // function of the three (counter-based), so tests can reproduce every draw.
  static double UniformDraw(uint64_t seed, uint64_t uid, uint64_t step);

 private:
  struct Scratch;
  struct BatchJob;
  static void RunTask(void *context, int task, int worker);
  SampleResult SampleOne(const SampleRequest &request, const SamplingOptions &options, Scratch &scratch,
                         double *probabilities);

  int rows_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::unique_ptr<Scratch>> scratch_;  // One per worker.
  std::atomic<bool> busy_{false};                  // A Sample / Distribution call is running.
};

}  // namespace llasa_rt
