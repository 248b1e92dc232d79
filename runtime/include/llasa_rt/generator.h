// llasa-rt: the decode loop. Prefill the prompt once at batch 1 into slot 0, fork to N candidates, then batched
// decode steps over the live candidates only (slots [0, live)); every K tokens a callback may stop, prune or fork
// candidates and receives newly final codes. Decode steps allocate nothing and never copy the whole cache. With a
// backend that SharesPrefix(), the prompt's KV stays in slot 0 only and forks copy just their own positions.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "llasa_rt/backend.h"
#include "llasa_rt/candidates.h"
#include "llasa_rt/generation_controller.h"
#include "llasa_rt/sampler.h"
#include "llasa_rt/sampling_options.h"

namespace llasa_rt {

// How token ids map to logits rows, and how the loop runs. The token layout has no default: it comes from the
// bundle's manifest (its `tokens` section), so the core never assumes one; Validate() refuses unset fields.
struct GeneratorConfig {
  int64_t speech_token_base = -1;  // Token id of speech code 0 (<|s_0|>): row r < codes is token base + r.
  int num_speech_tokens = 0;       // Speech codes; the logits have this + 1 rows, END last.
  int64_t end_token_id = -1;       // Token id of END (<|SPEECH_GENERATION_END|>), the last logits row.
  int sampler_threads = 1;         // Threads sampling the candidates of one step (results do not depend on it).

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

// Where the time of a generation went. "core" = the loop's own work (building inputs, sampling, bookkeeping),
// i.e. wall time minus Backend::Forward minus the callback.
struct StepTimings {
  double prefill_forward_seconds = 0.0;   // Backend::Forward of the prompt.
  double prefill_core_seconds = 0.0;      // Input setup, forks to N candidates and the first draw.
  std::vector<double> forward_seconds;    // Per decode step: Backend::Forward.
  std::vector<double> core_seconds;       // Per decode step: everything else except the callback.
  std::vector<int> batch_sizes;           // Per decode step: live candidates run.
  double callback_seconds = 0.0;          // Total time spent in the callback.
};

struct GenerationResult {
  std::vector<Candidate> candidates;  // Every candidate not pruned (finished, or stopped), in creation order.
  StepTimings timings;
  bool stopped = false;               // A callback called Stop().
};

// Called with the controller every `callback_every` tokens and once at the end (controller.done()).
using GenerationCallback = std::function<void(GenerationController &)>;

class Generator {
 public:
  // Runs `backend` on its KvCache and StepBuffers; StepBuffers rows must be num_speech_tokens + 1.
  Generator(Backend &backend, const GeneratorConfig &config);
  ~Generator();
  Generator(const Generator &) = delete;
  Generator &operator=(const Generator &) = delete;

  const GeneratorConfig &config() const { return config_; }
  Backend &backend() const { return backend_; }

  // Generates up to `options.max_new_tokens` tokens (0 = until the context is full) for `num_candidates`
  // candidates (uids 0..N-1) continuing `prompt_ids`. Speech codes (and END) present in the prompt count for the
  // repetition penalty. `callback` (may be empty) runs every `callback_every` tokens (0 = only the final call).
  // Throws std::invalid_argument for bad options / prompt / N; rethrows what the backend or callback throws.
  GenerationResult Generate(const std::vector<int64_t> &prompt_ids, const SamplingOptions &options,
                            int num_candidates, const GenerationCallback &callback = nullptr,
                            int callback_every = 1);

 private:
  friend class GenerationController;
  void SampleAndBook(bool first);  // One token for every live candidate; finishes those that stop.
  void Callback(bool done, const GenerationCallback &callback);

  Backend &backend_;
  GeneratorConfig config_;
  KvCache &cache_;
  StepBuffers &buffers_;
  Sampler sampler_;
  CandidateSet candidates_;
  std::shared_ptr<GenerationController> controller_;
  std::atomic<bool> running_{false};  // Guards against re-entry and concurrent calls (the GIL is released).

  // State of the current generation, sized once per Generate() call.
  SamplingOptions options_;
  int token_limit_ = 0;                   // Tokens a candidate may generate.
  FinishReason limit_reason_ = FinishReason::kMaxNewTokens;
  std::vector<int32_t> prompt_rows_;      // Prompt tokens that are logits rows (repetition penalty history).
  std::vector<SampleRequest> requests_;   // One per slot.
  std::vector<SampleResult> results_;     // One per slot.
  std::vector<uint64_t> finishing_;       // Uids finishing this step.
  std::vector<FinishReason> finishing_reasons_;
  int steps_done_ = 0;                    // Tokens generated per live candidate.
  StepTimings timings_;
};

}  // namespace llasa_rt
