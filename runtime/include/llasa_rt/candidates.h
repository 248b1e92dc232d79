// llasa-rt: decode candidates and the set that keeps the live ones compacted in KV slots [0, live).
// Fork copies the parent's used KV into the first free slot; prune / finish move the last live candidate into the
// hole (one copy of its used KV), so a step always runs on slots [0, live). With a shared prefix (slot 0's first
// positions read by every candidate) only the positions after it are copied.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llasa_rt/kv_cache.h"

namespace llasa_rt {

// Why a candidate stopped.
enum class FinishReason {
  kNone,          // Still live.
  kEnd,           // Sampled END.
  kMaxNewTokens,  // Reached SamplingOptions::max_new_tokens.
  kContextFull,   // Prompt + tokens filled the KV cache's max_seq_len.
  kStopped,       // A callback stopped the generation.
};

// "none", "end", "max_new_tokens", "context_full", "stopped".
const char *FinishReasonName(FinishReason reason);

struct Candidate {
  uint64_t uid = 0;                      // Stable id within a generation (also its RNG stream); never reused.
  int slot = -1;                         // KV slot while live; -1 once finished.
  std::vector<int32_t> tokens;           // Generated rows (speech codes); END is not stored.
  double logprob = 0.0;                  // Sum of the raw log-probs of every chosen row, END included.
  bool finished = false;                 // Left the live set (END, a limit, or stopped).
  FinishReason finish_reason = FinishReason::kNone;  // Why it finished.
  std::map<std::string, double> scores;  // Named scores set by verifiers.
};

class CandidateSet {
 public:
  explicit CandidateSet(KvCache &cache);

  // Forgets every candidate; new candidates reserve `token_capacity` tokens so decoding never reallocates.
  void Reset(int token_capacity);
  // Creates a candidate with the next uid in slot 0 (the prefill writes its KV there); needs an empty set.
  Candidate &AddRoot();
  // Copies live candidate `uid` (tokens, log-prob, scores and its KV prefix [0, kv_length)) into the first free
  // slot under a new uid. Throws std::invalid_argument if `uid` is unknown / not live or no slot is free.
  Candidate &Fork(uint64_t uid);
  // Removes candidate `uid` (live or finished); a live one's slot is refilled by the last live candidate.
  void Prune(uint64_t uid);
  // Moves live candidate `uid` out of the live set (its tokens are kept) with `reason`.
  void Finish(uint64_t uid, FinishReason reason);

  // Positions [0, kv_length) of every live slot hold valid keys/values (positions below shared_prefix() are read
  // from slot 0 by every candidate).
  int kv_length() const { return kv_length_; }
  void set_kv_length(int length) { kv_length_ = length; }
  // Positions [0, length) of slot 0 are shared by every candidate (a backend that SharesPrefix()): forks and
  // compaction then copy only positions [length, kv_length). 0 (after Reset) = every slot holds all of its KV.
  int shared_prefix() const { return shared_prefix_; }
  void set_shared_prefix(int length) { shared_prefix_ = length; }

  int live() const { return static_cast<int>(live_.size()); }
  int slots() const { return cache_.config().slots; }
  // The live candidate in `slot` (< live()).
  Candidate &InSlot(int slot) { return candidates_[static_cast<size_t>(live_[static_cast<size_t>(slot)])]; }
  // The candidate with `uid`, or nullptr (pruned or never created).
  Candidate *Find(uint64_t uid);
  // Every candidate not pruned (live and finished), in creation order.
  const std::vector<Candidate> &all() const { return candidates_; }

 private:
  size_t IndexOf(uint64_t uid, const char *action) const;
  void LeaveLiveSet(Candidate &candidate);

  KvCache &cache_;
  std::vector<Candidate> candidates_;
  std::vector<int> live_;  // slot -> index into candidates_.
  uint64_t next_uid_ = 0;
  int kv_length_ = 0;
  int shared_prefix_ = 0;
  int token_capacity_ = 0;
};

}  // namespace llasa_rt
