// llasa-rt: request batching over one KV cache (see scheduler.h).
#include "llasa_rt/scheduler.h"

#include "prompt_check.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace llasa_rt {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

void SchedulerConfig::Validate() const {
  if (prefill_chunk < 1) {
    throw std::invalid_argument("prefill_chunk=" + std::to_string(prefill_chunk) + " is invalid: must be >= 1");
  }
}

struct Scheduler::Request {
  uint64_t id = 0;
  std::vector<int64_t> prompt;
  std::vector<int32_t> prompt_rows;  // Prompt tokens that are logits rows (repetition penalty history).
  SamplingOptions options;
  int n = 1;
  int token_limit = 0;
  FinishReason limit_reason = FinishReason::kMaxNewTokens;
  std::vector<Candidate> candidates;  // uid = index: the RNG streams of the request alone.
  int prefilled = 0;                  // Prompt tokens in the staging slot so far.
  bool admitted = false;              // Its candidates have slots.
  int live = 0;                       // Live candidates.
  int final_length = 0;               // Codes already reported final.
  bool touched = false;               // Sampled this step.
  double prefill_seconds = 0.0;
  int decode_steps = 0;
  int batch_tokens = 0;
  uint64_t last_step = 0;             // Step counter of its last decode step (counts each step once).
};

Scheduler::Scheduler(Backend &backend, const GeneratorConfig &config, const SchedulerConfig &scheduler)
    : backend_(backend),
      config_((config.Validate(), config)),
      scheduler_((scheduler.Validate(), scheduler)),
      cache_(backend.cache()),
      buffers_(backend.buffers()),
      sampler_(config.num_speech_tokens + 1, config.sampler_threads) {
  if (buffers_.rows() != config_.num_speech_tokens + 1) {
    throw std::invalid_argument("StepBuffers have " + std::to_string(buffers_.rows()) +
                                " logits rows but the scheduler expects num_speech_tokens + 1 = " +
                                std::to_string(config_.num_speech_tokens + 1) + " (speech codes + END)");
  }
  const size_t slots = static_cast<size_t>(cache_.config().slots);
  rows_.reserve(slots);
  requests_scratch_.resize(slots);
  results_scratch_.resize(slots);
  order_.reserve(slots);
  finishing_.reserve(slots);
}

Scheduler::~Scheduler() = default;

int Scheduler::slots() const { return cache_.config().slots; }
int Scheduler::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(queue_.size());
}
int Scheduler::running() const { return running_count_.load(); }
int Scheduler::live_slots() const { return live_count_.load(); }
bool Scheduler::idle() const { return queued() == 0 && running() == 0; }

uint64_t Scheduler::Submit(const std::vector<int64_t> &prompt_ids, const SamplingOptions &options, int num_candidates) {
  auto r = std::make_unique<Request>();
  const int context_limit = CheckRequest(config_, prompt_ids, options, num_candidates, cache_.config().slots,
                                         cache_.config().max_seq_len, r->prompt_rows);
  r->prompt = prompt_ids;
  r->options = options;
  r->n = num_candidates;
  r->token_limit = options.max_new_tokens > 0 ? options.max_new_tokens : context_limit;
  r->limit_reason = options.max_new_tokens > 0 ? FinishReason::kMaxNewTokens : FinishReason::kContextFull;
  std::lock_guard<std::mutex> lock(mutex_);
  r->id = next_id_++;
  const uint64_t id = r->id;
  queue_.push_back(std::move(r));
  alive_.insert(id);
  return id;
}

bool Scheduler::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (alive_.count(id) == 0) return false;
  if (std::find(cancels_.begin(), cancels_.end(), id) == cancels_.end()) cancels_.push_back(id);
  return true;
}

int Scheduler::KvLength(const Row &row) const {
  // Between steps a candidate's cache holds the prompt and every token but its last (the next step's input).
  return static_cast<int>(row.request->prompt.size() + row.request->candidates[row.candidate].tokens.size()) - 1;
}

std::vector<RequestUpdate> Scheduler::Step() {
  if (stepping_.exchange(true)) {
    throw std::logic_error("Scheduler::Step is already running (called from two threads); one loop thread steps");
  }
  struct Stepping {
    std::atomic<bool> &flag;
    ~Stepping() { flag = false; }
  } guard{stepping_};
  ++step_counter_;
  std::vector<RequestUpdate> updates;
  ApplyCancels(updates);
  Prefill();
  if (!rows_.empty()) Decode();
  for (auto it = requests_.begin(); it != requests_.end();) {
    Request &r = *it->second;
    if (r.admitted && (r.touched || r.live == 0)) {
      r.touched = false;
      Report(r, updates, /*cancelled=*/false);
      if (r.live == 0) {
        it = requests_.erase(it);
        continue;
      }
    }
    ++it;
  }
  running_count_ = static_cast<int>(requests_.size());
  live_count_ = static_cast<int>(rows_.size());
  return updates;
}

void Scheduler::ApplyCancels(std::vector<RequestUpdate> &updates) {
  std::vector<uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancels.swap(cancels_);
    for (auto q = queue_.begin(); q != queue_.end();) {
      if (std::find(cancels.begin(), cancels.end(), (*q)->id) != cancels.end()) {
        RequestUpdate u;
        u.id = (*q)->id;
        u.done = u.cancelled = true;
        updates.push_back(std::move(u));
        alive_.erase((*q)->id);
        q = queue_.erase(q);
      } else {
        ++q;
      }
    }
  }
  for (uint64_t id : cancels) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    Request &r = *it->second;
    if (&r == staging_) staging_ = nullptr;  // Its staged KV is abandoned; the slot is free again.
    for (int s = static_cast<int>(rows_.size()) - 1; s >= 0; --s) {
      if (rows_[static_cast<size_t>(s)].request == &r) RemoveRow(s, FinishReason::kStopped);
    }
    Report(r, updates, /*cancelled=*/true);
    requests_.erase(it);
  }
}

void Scheduler::Prefill() {
  const int slots = cache_.config().slots;
  if (staging_ == nullptr) {
    std::unique_ptr<Request> next;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!queue_.empty() && slots - static_cast<int>(rows_.size()) >= queue_.front()->n) {
        next = std::move(queue_.front());
        queue_.pop_front();
      }
    }
    if (!next) return;
    staging_ = next.get();
    requests_[next->id] = std::move(next);
  }
  Request &r = *staging_;
  const int total = static_cast<int>(r.prompt.size());
  const int chunk = std::min(scheduler_.prefill_chunk, total - r.prefilled);
  int64_t *ids = buffers_.input_ids();
  int64_t *positions = buffers_.position_ids();
  int64_t *mask = buffers_.padded_mask();
  for (int j = 0; j < chunk; ++j) {
    ids[j] = r.prompt[static_cast<size_t>(r.prefilled + j)];
    positions[j] = r.prefilled + j;
  }
  const int mask_len = r.prefilled + chunk;
  std::fill(mask, mask + mask_len, int64_t{1});
  const Clock::time_point start = Clock::now();
  backend_.ForwardRows(ids, slots - 1, 1, chunk, mask_len, buffers_.logits());
  r.prefill_seconds += Seconds(start, Clock::now());
  r.prefilled += chunk;
  if (r.prefilled == total) Admit(r);
}

void Scheduler::Admit(Request &r) {
  const int slots = cache_.config().slots;
  const int staging_slot = slots - 1;
  const int base = static_cast<int>(rows_.size());
  const int prompt_len = static_cast<int>(r.prompt.size());
  if (base != staging_slot) cache_.CopySlot(staging_slot, base, prompt_len);
  r.candidates.assign(static_cast<size_t>(r.n), Candidate());
  for (int i = 0; i < r.n; ++i) {
    Candidate &c = r.candidates[static_cast<size_t>(i)];
    c.uid = static_cast<uint64_t>(i);
    c.slot = base + i;
    c.tokens.reserve(static_cast<size_t>(r.token_limit));
    if (i > 0) cache_.CopySlot(base, base + i, prompt_len);
    rows_.push_back(Row{&r, i});
  }
  r.live = r.n;
  r.admitted = true;
  staging_ = nullptr;
  // Every candidate draws its first token from the prompt's logits (row 0 of the prefill), with its own uid.
  SampleRows(base, r.n, /*prefill_logits=*/true);
  Book();
}

void Scheduler::Decode() {
  const int batch = static_cast<int>(rows_.size());
  int64_t *ids = buffers_.input_ids();
  int64_t *positions = buffers_.position_ids();
  int64_t *mask = buffers_.padded_mask();
  int mask_len = 0;
  for (int s = 0; s < batch; ++s) {
    const Row &row = rows_[static_cast<size_t>(s)];
    const int past = KvLength(row);
    ids[s] = config_.speech_token_base + row.request->candidates[row.candidate].tokens.back();
    positions[s] = past;
    mask_len = std::max(mask_len, past + 1);
  }
  for (int s = 0; s < batch; ++s) {
    const int valid = KvLength(rows_[static_cast<size_t>(s)]) + 1;
    int64_t *row_mask = mask + static_cast<size_t>(s) * static_cast<size_t>(mask_len);
    std::fill(row_mask, row_mask + valid, int64_t{1});
    std::fill(row_mask + valid, row_mask + mask_len, int64_t{0});
  }
  backend_.ForwardRows(ids, 0, batch, 1, mask_len, buffers_.logits());
  for (int s = 0; s < batch; ++s) {
    Request &r = *rows_[static_cast<size_t>(s)].request;
    if (r.last_step != step_counter_) {
      r.last_step = step_counter_;
      ++r.decode_steps;
      r.batch_tokens += batch - r.live;
    }
  }
  SampleRows(0, batch, /*prefill_logits=*/false);
  Book();
}

void Scheduler::SampleRows(int first, int count, bool prefill_logits) {
  const int rows = buffers_.rows();
  const float *logits = buffers_.logits();
  // Group the slots by request (each request has its own options), keeping slot order within a request.
  order_.clear();
  for (int s = first; s < first + count; ++s) order_.push_back(s);
  std::stable_sort(order_.begin(), order_.end(), [this](int a, int b) {
    return rows_[static_cast<size_t>(a)].request->id < rows_[static_cast<size_t>(b)].request->id;
  });
  for (size_t k = 0; k < order_.size(); ++k) {
    const int s = order_[k];
    const Row &row = rows_[static_cast<size_t>(s)];
    const Candidate &c = row.request->candidates[row.candidate];
    SampleRequest &q = requests_scratch_[k];
    q.logits = logits + (prefill_logits ? 0 : static_cast<size_t>(s - first) * static_cast<size_t>(rows));
    q.prompt_rows = row.request->prompt_rows.data();
    q.prompt_rows_len = row.request->prompt_rows.size();
    q.tokens = c.tokens.data();
    q.tokens_len = c.tokens.size();
    q.uid = c.uid;
    q.step = c.tokens.size();
  }
  size_t k = 0;
  while (k < order_.size()) {
    const Request *r = rows_[static_cast<size_t>(order_[k])].request;
    size_t end = k;
    while (end < order_.size() && rows_[static_cast<size_t>(order_[end])].request == r) ++end;
    sampler_.Sample(&requests_scratch_[k], static_cast<int>(end - k), r->options, &results_scratch_[k]);
    k = end;
  }
}

void Scheduler::Book() {
  const int32_t end_row = static_cast<int32_t>(config_.num_speech_tokens);
  // results_scratch_ follows order_; finishing slots are collected, then removed highest slot first.
  std::vector<std::pair<int, FinishReason>> &finishing = finishing_;
  finishing.clear();
  for (size_t k = 0; k < order_.size(); ++k) {
    const int s = order_[k];
    Row &row = rows_[static_cast<size_t>(s)];
    Request &r = *row.request;
    Candidate &c = r.candidates[row.candidate];
    const SampleResult &res = results_scratch_[k];
    c.logprob += res.logprob;
    r.touched = true;
    FinishReason reason = FinishReason::kNone;
    if (res.row == end_row) {
      reason = FinishReason::kEnd;
    } else {
      c.tokens.push_back(res.row);
      if (static_cast<int>(c.tokens.size()) >= r.token_limit) reason = r.limit_reason;
    }
    if (reason != FinishReason::kNone) finishing.emplace_back(s, reason);
  }
  std::sort(finishing.begin(), finishing.end(), [](const auto &a, const auto &b) { return a.first > b.first; });
  for (const auto &[slot, reason] : finishing) RemoveRow(slot, reason);
}

void Scheduler::RemoveRow(int slot, FinishReason reason) {
  Row row = rows_[static_cast<size_t>(slot)];
  Candidate &c = row.request->candidates[row.candidate];
  c.finished = true;
  c.finish_reason = reason;
  c.slot = -1;
  --row.request->live;
  const int last = static_cast<int>(rows_.size()) - 1;
  if (slot != last) {
    const Row moved = rows_[static_cast<size_t>(last)];
    cache_.CopySlot(last, slot, KvLength(moved));
    rows_[static_cast<size_t>(slot)] = moved;
    moved.request->candidates[moved.candidate].slot = slot;
  }
  rows_.pop_back();
}

void Scheduler::Report(Request &r, std::vector<RequestUpdate> &updates, bool cancelled) {
  RequestUpdate u;
  u.id = r.id;
  size_t common = static_cast<size_t>(r.final_length);
  if (!r.candidates.empty()) {
    const std::vector<int32_t> &first = r.candidates.front().tokens;
    for (;; ++common) {
      bool agree = common < first.size();
      for (size_t i = 1; agree && i < r.candidates.size(); ++i) {
        agree = common < r.candidates[i].tokens.size() && r.candidates[i].tokens[common] == first[common];
      }
      if (!agree) break;
    }
    u.new_final_codes.assign(first.begin() + r.final_length, first.begin() + static_cast<std::ptrdiff_t>(common));
  }
  r.final_length = static_cast<int>(common);
  u.cancelled = cancelled;
  u.done = cancelled || (r.admitted && r.live == 0);
  if (u.done) {
    for (Candidate &c : r.candidates) {
      if (!c.finished) {
        c.finished = true;
        c.finish_reason = FinishReason::kStopped;
      }
    }
    u.candidates = r.candidates;
    u.prefill_seconds = r.prefill_seconds;
    u.decode_steps = r.decode_steps;
    u.batch_tokens = r.batch_tokens;
    std::lock_guard<std::mutex> lock(mutex_);
    alive_.erase(r.id);
  }
  if (!u.new_final_codes.empty() || u.done) updates.push_back(std::move(u));
}

}  // namespace llasa_rt
