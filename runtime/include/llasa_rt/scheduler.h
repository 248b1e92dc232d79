// llasa-rt: request batching (continuous batching). Several requests, each with its own prompt, sampling options,
// seed and candidate count, live in different KV slots of one decode loop: a request joins between two steps (its
// prompt is prefilled in chunks, one chunk per step, into a staging slot, then copied to its candidates' slots) and
// leaves when it finishes or is cancelled. Every decode step runs all live candidates of all requests as one batch,
// each row with its own context length. A request's result is what Generator gives it alone: its candidates draw
// from the streams (seed, 0..N-1, step) whatever else is running.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "llasa_rt/backend.h"
#include "llasa_rt/candidates.h"
#include "llasa_rt/generator.h"
#include "llasa_rt/sampler.h"
#include "llasa_rt/sampling_options.h"

namespace llasa_rt {

// How the scheduler interleaves prefills with decode steps.
struct SchedulerConfig {
  int prefill_chunk = 256;  // Prompt tokens per prefill forward: running streams wait at most one chunk per step.

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

// What Step() reports about one request.
struct RequestUpdate {
  uint64_t id = 0;                       // The request's id (from Submit).
  std::vector<int32_t> new_final_codes;  // Codes all its candidates now share, new since its previous update.
  bool done = false;                     // It ended (every candidate finished, or it was cancelled): last update.
  bool cancelled = false;                // It ended through Cancel().
  std::vector<Candidate> candidates;     // When done: its candidates in creation order (uids 0..N-1).
  double prefill_seconds = 0.0;          // When done: time spent in its prefill forwards.
  int decode_steps = 0;                  // When done: decode steps it took part in.
  int batch_tokens = 0;                  // When done: tokens of other requests' rows that shared its steps.
};

class Scheduler {
 public:
  // Runs `backend` (which must implement ForwardRows) on its KvCache and StepBuffers; the cache's slots bound
  // the live candidates of all requests together (the KV memory never grows).
  Scheduler(Backend &backend, const GeneratorConfig &config, const SchedulerConfig &scheduler = SchedulerConfig());
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  // Queues a request and returns its id. Checks it like Generator::Generate (throws std::invalid_argument);
  // `num_candidates` must fit in the cache's slots. Thread-safe.
  uint64_t Submit(const std::vector<int64_t> &prompt_ids, const SamplingOptions &options, int num_candidates = 1);
  // Ends request `id` at the next Step (queued, prefilling or decoding) and frees its slots; false if it is
  // unknown or already ended. Thread-safe.
  bool Cancel(uint64_t id);
  // One iteration: apply cancellations; run at most one prefill chunk (of the request being admitted, or of the
  // next queued request once its candidates fit in the free slots); then one decode step over every live
  // candidate of every running request. Returns the updates of the requests that got new final codes or ended.
  // Not re-entrant and not thread-safe with itself (one loop thread calls it).
  std::vector<RequestUpdate> Step();

  int queued() const;      // Requests waiting for slots (thread-safe).
  int running() const;     // Requests admitted and not ended (prefilling or decoding).
  int live_slots() const;  // KV slots of live candidates.
  int slots() const;       // KV slots in all.
  bool idle() const;       // Nothing queued, prefilling or running (thread-safe).

 private:
  struct Request;
  struct Row {
    Request *request = nullptr;
    int candidate = 0;  // Index into request->candidates.
  };

  void ApplyCancels(std::vector<RequestUpdate> &updates);
  void Prefill();
  void Admit(Request &r);
  void Decode();
  void SampleRows(int first, int count, bool prefill_logits);
  void Book();  // Books the results of the last SampleRows (its slots, in order_).
  void RemoveRow(int slot, FinishReason reason);
  void Report(Request &r, std::vector<RequestUpdate> &updates, bool cancelled);
  int KvLength(const Row &row) const;

  Backend &backend_;
  GeneratorConfig config_;
  SchedulerConfig scheduler_;
  KvCache &cache_;
  StepBuffers &buffers_;
  Sampler sampler_;
  std::vector<Row> rows_;  // slot -> row, for slots [0, live)
  std::map<uint64_t, std::unique_ptr<Request>> requests_;  // admitted or staging
  Request *staging_ = nullptr;  // The request being prefilled (in the last slot), if any.

  mutable std::mutex mutex_;  // Guards queue_, cancels_, next_id_, counters read by other threads.
  std::deque<std::unique_ptr<Request>> queue_;
  std::vector<uint64_t> cancels_;
  std::set<uint64_t> alive_;  // Ids submitted and not yet ended.
  uint64_t next_id_ = 1;
  uint64_t step_counter_ = 0;  // Steps run (loop thread only).
  std::atomic<int> running_count_{0};
  std::atomic<int> live_count_{0};
  std::atomic<bool> stepping_{false};

  // Scratch, sized once.
  std::vector<SampleRequest> requests_scratch_;
  std::vector<SampleResult> results_scratch_;
  std::vector<int> order_;  // slots grouped by request for sampling
  std::vector<std::pair<int, FinishReason>> finishing_;  // slots finishing in a step
};

}  // namespace llasa_rt
