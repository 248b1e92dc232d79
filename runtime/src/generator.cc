// llasa-rt: the decode loop.
#include "llasa_rt/generator.h"

#include "prompt_check.h"

#include <chrono>
#include <stdexcept>
#include <string>

namespace llasa_rt {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

void GeneratorConfig::Validate() const {
  if (num_speech_tokens < 1) {
    throw std::invalid_argument("num_speech_tokens=" + std::to_string(num_speech_tokens) + " is invalid: must be >= 1");
  }
  if (speech_token_base < 0) {
    throw std::invalid_argument("speech_token_base=" + std::to_string(speech_token_base) +
                                " is invalid: must be >= 0");
  }
  if (end_token_id < 0 || (end_token_id >= speech_token_base && end_token_id < speech_token_base + num_speech_tokens)) {
    throw std::invalid_argument("end_token_id=" + std::to_string(end_token_id) +
                                " is invalid: must be >= 0 and outside the speech token range [" +
                                std::to_string(speech_token_base) + ", " +
                                std::to_string(speech_token_base + num_speech_tokens) + ")");
  }
  if (sampler_threads < 1 || sampler_threads > 256) {
    throw std::invalid_argument("sampler_threads=" + std::to_string(sampler_threads) +
                                " is invalid: must be in [1, 256]");
  }
}

Generator::Generator(Backend &backend, const GeneratorConfig &config)
    : backend_(backend),
      config_((config.Validate(), config)),
      cache_(backend.cache()),
      buffers_(backend.buffers()),
      sampler_(config.num_speech_tokens + 1, config.sampler_threads),
      candidates_(backend.cache()),
      controller_(std::make_shared<GenerationController>()) {
  if (buffers_.rows() != config_.num_speech_tokens + 1) {
    throw std::invalid_argument("StepBuffers have " + std::to_string(buffers_.rows()) +
                                " logits rows but the generator expects num_speech_tokens + 1 = " +
                                std::to_string(config_.num_speech_tokens + 1) + " (speech codes + END)");
  }
  const size_t slots = static_cast<size_t>(cache_.config().slots);
  requests_.resize(slots);
  results_.resize(slots);
  finishing_.resize(slots);
  finishing_reasons_.resize(slots);
  prompt_rows_.reserve(static_cast<size_t>(cache_.config().max_seq_len));
}

Generator::~Generator() { controller_->generator_ = nullptr; }

GenerationResult Generator::Generate(const std::vector<int64_t> &prompt_ids, const SamplingOptions &options,
                                     int num_candidates, const GenerationCallback &callback, int callback_every) {
  if (running_.exchange(true)) {
    throw std::logic_error(
        "Generate is already running on this Generator (called from its callback or another thread); use one "
        "Generator per concurrent generation");
  }
  struct Running {
    std::atomic<bool> &flag;
    ~Running() { flag = false; }
  } running_guard{running_};
  if (callback_every < 0) {
    throw std::invalid_argument("callback_every=" + std::to_string(callback_every) +
                                " is invalid: must be >= 0 (0 = only the final call)");
  }
  const int context_limit = CheckRequest(config_, prompt_ids, options, num_candidates, cache_.config().slots,
                                         cache_.config().max_seq_len, prompt_rows_);
  const int prompt_len = static_cast<int>(prompt_ids.size());

  options_ = options;
  token_limit_ = options.max_new_tokens > 0 ? options.max_new_tokens : context_limit;
  limit_reason_ = options.max_new_tokens > 0 ? FinishReason::kMaxNewTokens : FinishReason::kContextFull;
  candidates_.Reset(token_limit_);
  timings_ = StepTimings{};
  timings_.forward_seconds.reserve(static_cast<size_t>(token_limit_));
  timings_.core_seconds.reserve(static_cast<size_t>(token_limit_));
  timings_.batch_sizes.reserve(static_cast<size_t>(token_limit_));
  GenerationController &controller = *controller_;
  controller.stop_requested_ = false;
  controller.final_length_ = 0;
  controller.new_final_codes_.clear();
  controller.new_final_codes_.reserve(static_cast<size_t>(token_limit_));
  steps_done_ = 0;
  const bool periodic = callback && callback_every > 0;

  // Prefill once at batch 1 into slot 0, then fork the prompt's KV to the other candidates.
  const Clock::time_point prefill_start = Clock::now();
  int64_t *ids = buffers_.input_ids();
  int64_t *positions = buffers_.position_ids();
  for (int j = 0; j < prompt_len; ++j) {
    ids[j] = prompt_ids[static_cast<size_t>(j)];
    positions[j] = j;
  }
  candidates_.AddRoot();
  // A backend that shares the prompt prefix reads positions [0, prompt_len) of every row from slot 0 until the
  // end of this call (also when it throws): forks and compaction then copy only each candidate's own positions.
  const bool share = backend_.SharesPrefix();
  struct SharedPrefix {
    Backend &backend;
    bool active = false;
    void End() {
      active = false;
      backend.SetSharedPrefix(-1, 0);
    }
    ~SharedPrefix() {
      if (!active) return;
      try {
        backend.SetSharedPrefix(-1, 0);
      } catch (...) {  // An exception is already propagating; it is the one to report.
      }
    }
  } shared_prefix{backend_, share};
  const Clock::time_point forward_start = Clock::now();
  backend_.Forward(ids, 1, prompt_len, 0, buffers_.logits());
  const Clock::time_point forward_end = Clock::now();
  candidates_.set_kv_length(prompt_len);
  if (share) {
    backend_.SetSharedPrefix(0, prompt_len);
    candidates_.set_shared_prefix(prompt_len);
  }
  for (int i = 1; i < num_candidates; ++i) candidates_.Fork(candidates_.InSlot(0).uid);
  SampleAndBook(/*first=*/true);
  steps_done_ = 1;
  timings_.prefill_forward_seconds = Seconds(forward_start, forward_end);
  timings_.prefill_core_seconds = Seconds(prefill_start, Clock::now()) - timings_.prefill_forward_seconds;
  if (periodic && steps_done_ % callback_every == 0 && candidates_.live() > 0) Callback(false, callback);

  // Decode: one token per live candidate per step, on slots [0, live).
  while (candidates_.live() > 0 && !controller.stop_requested_) {
    const Clock::time_point step_start = Clock::now();
    const int batch = candidates_.live();
    const int past_len = candidates_.kv_length();
    for (int slot = 0; slot < batch; ++slot) {
      ids[slot] = config_.speech_token_base + candidates_.InSlot(slot).tokens.back();
      positions[slot] = past_len;
    }
    const Clock::time_point step_forward_start = Clock::now();
    backend_.Forward(ids, batch, 1, past_len, buffers_.logits());
    const Clock::time_point step_forward_end = Clock::now();
    candidates_.set_kv_length(past_len + 1);
    SampleAndBook(/*first=*/false);
    ++steps_done_;
    const double forward = Seconds(step_forward_start, step_forward_end);
    timings_.forward_seconds.push_back(forward);
    timings_.core_seconds.push_back(Seconds(step_start, Clock::now()) - forward);
    timings_.batch_sizes.push_back(batch);
    if (periodic && steps_done_ % callback_every == 0 && candidates_.live() > 0) Callback(false, callback);
  }

  const bool stopped = controller.stop_requested_;
  // Finishing the last slot first moves no KV.
  while (candidates_.live() > 0) candidates_.Finish(candidates_.InSlot(candidates_.live() - 1).uid, FinishReason::kStopped);
  if (callback) Callback(true, callback);
  if (shared_prefix.active) shared_prefix.End();

  GenerationResult result;
  result.candidates = candidates_.all();
  result.timings = std::move(timings_);
  result.stopped = stopped;
  return result;
}

void Generator::SampleAndBook(bool first) {
  const int live = candidates_.live();
  const int rows = buffers_.rows();
  const float *logits = buffers_.logits();
  for (int slot = 0; slot < live; ++slot) {
    const Candidate &c = candidates_.InSlot(slot);
    SampleRequest &q = requests_[static_cast<size_t>(slot)];
    // After the prefill every candidate draws from the prompt's logits (row 0) with its own uid.
    q.logits = logits + (first ? 0 : static_cast<size_t>(slot) * static_cast<size_t>(rows));
    q.prompt_rows = prompt_rows_.data();
    q.prompt_rows_len = prompt_rows_.size();
    q.tokens = c.tokens.data();
    q.tokens_len = c.tokens.size();
    q.uid = c.uid;
    q.step = c.tokens.size();
  }
  sampler_.Sample(requests_.data(), live, options_, results_.data());
  const int32_t end_row = static_cast<int32_t>(config_.num_speech_tokens);
  int finishing = 0;
  for (int slot = 0; slot < live; ++slot) {
    Candidate &c = candidates_.InSlot(slot);
    const SampleResult &r = results_[static_cast<size_t>(slot)];
    c.logprob += r.logprob;
    FinishReason reason = FinishReason::kNone;
    if (r.row == end_row) {
      reason = FinishReason::kEnd;  // END is scored but not stored as a token.
    } else {
      c.tokens.push_back(r.row);
      if (static_cast<int>(c.tokens.size()) >= token_limit_) reason = limit_reason_;
    }
    if (reason != FinishReason::kNone) {
      finishing_[static_cast<size_t>(finishing)] = c.uid;
      finishing_reasons_[static_cast<size_t>(finishing)] = reason;
      ++finishing;
    }
  }
  // Highest slot first: a finishing candidate in the last slot leaves without moving any KV.
  for (int i = finishing - 1; i >= 0; --i) {
    candidates_.Finish(finishing_[static_cast<size_t>(i)], finishing_reasons_[static_cast<size_t>(i)]);
  }
}

void Generator::Callback(bool done, const GenerationCallback &callback) {
  GenerationController &controller = *controller_;
  // Newly final codes: extend the common prefix of every surviving candidate.
  const std::vector<Candidate> &all = candidates_.all();
  size_t common = static_cast<size_t>(controller.final_length_);
  if (!all.empty()) {
    const std::vector<int32_t> &first = all.front().tokens;
    for (;; ++common) {
      bool agree = common < first.size();
      for (size_t i = 1; agree && i < all.size(); ++i) {
        agree = common < all[i].tokens.size() && all[i].tokens[common] == first[common];
      }
      if (!agree) break;
    }
    controller.new_final_codes_.assign(first.begin() + controller.final_length_,
                                       first.begin() + static_cast<std::ptrdiff_t>(common));
  } else {
    controller.new_final_codes_.clear();
  }
  controller.final_length_ = static_cast<int>(common);
  controller.done_ = done;
  controller.step_ = steps_done_;
  controller.generator_ = this;
  struct Deactivate {
    GenerationController &c;
    ~Deactivate() { c.generator_ = nullptr; }
  } deactivate{controller};
  const Clock::time_point start = Clock::now();
  try {
    callback(controller);
  } catch (...) {
    timings_.callback_seconds += Seconds(start, Clock::now());
    throw;
  }
  timings_.callback_seconds += Seconds(start, Clock::now());
}

}  // namespace llasa_rt
