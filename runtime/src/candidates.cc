// llasa-rt: candidates and their compacted KV slots.
#include "llasa_rt/candidates.h"

#include <stdexcept>
#include <string>

namespace llasa_rt {

const char *FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kEnd: return "end";
    case FinishReason::kMaxNewTokens: return "max_new_tokens";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kStopped: return "stopped";
  }
  return "unknown";
}

CandidateSet::CandidateSet(KvCache &cache) : cache_(cache) {
  live_.reserve(static_cast<size_t>(cache.config().slots));
}

void CandidateSet::Reset(int token_capacity) {
  candidates_.clear();
  candidates_.reserve(static_cast<size_t>(2 * slots()));
  live_.clear();
  next_uid_ = 0;
  kv_length_ = 0;
  shared_prefix_ = 0;
  token_capacity_ = token_capacity;
}

Candidate &CandidateSet::AddRoot() {
  if (!candidates_.empty()) throw std::logic_error("AddRoot needs an empty candidate set (call Reset first)");
  Candidate root;
  root.uid = next_uid_++;
  root.slot = 0;
  root.tokens.reserve(static_cast<size_t>(token_capacity_));
  candidates_.push_back(std::move(root));
  live_.push_back(0);
  return candidates_.back();
}

Candidate *CandidateSet::Find(uint64_t uid) {
  for (auto &c : candidates_) {
    if (c.uid == uid) return &c;
  }
  return nullptr;
}

size_t CandidateSet::IndexOf(uint64_t uid, const char *action) const {
  for (size_t i = 0; i < candidates_.size(); ++i) {
    if (candidates_[i].uid == uid) return i;
  }
  throw std::invalid_argument(std::string("cannot ") + action + " candidate uid=" + std::to_string(uid) +
                              ": no such candidate (never created or already pruned)");
}

Candidate &CandidateSet::Fork(uint64_t uid) {
  const size_t parent_index = IndexOf(uid, "fork");
  const Candidate &parent = candidates_[parent_index];
  if (parent.finished) {
    throw std::invalid_argument("cannot fork candidate uid=" + std::to_string(uid) + ": it has finished (" +
                                FinishReasonName(parent.finish_reason) + "); only live candidates can be forked");
  }
  if (live() >= slots()) {
    throw std::invalid_argument("cannot fork candidate uid=" + std::to_string(uid) + ": all " +
                                std::to_string(slots()) +
                                " KV slots are live; prune a candidate first or create the KvCache with more slots");
  }
  const int slot = live();
  cache_.CopySlotRange(parent.slot, slot, shared_prefix_, kv_length_);
  Candidate child;
  child.uid = next_uid_++;
  child.slot = slot;
  child.tokens.reserve(static_cast<size_t>(token_capacity_));
  child.tokens.assign(parent.tokens.begin(), parent.tokens.end());
  child.logprob = parent.logprob;
  child.scores = parent.scores;
  candidates_.push_back(std::move(child));  // May move `parent`: not used below.
  live_.push_back(static_cast<int>(candidates_.size() - 1));
  return candidates_.back();
}

void CandidateSet::LeaveLiveSet(Candidate &candidate) {
  const int hole = candidate.slot;
  const int last = live() - 1;
  if (hole != last) {
    // Keep slots [0, live) dense: the last live candidate moves into the hole with its used KV (past the shared
    // prefix, which stays in slot 0).
    cache_.CopySlotRange(last, hole, shared_prefix_, kv_length_);
    live_[static_cast<size_t>(hole)] = live_[static_cast<size_t>(last)];
    candidates_[static_cast<size_t>(live_[static_cast<size_t>(hole)])].slot = hole;
  }
  live_.pop_back();
  candidate.slot = -1;
}

void CandidateSet::Finish(uint64_t uid, FinishReason reason) {
  Candidate &c = candidates_[IndexOf(uid, "finish")];
  if (c.finished) {
    throw std::invalid_argument("cannot finish candidate uid=" + std::to_string(uid) + ": it has already finished");
  }
  LeaveLiveSet(c);
  c.finished = true;
  c.finish_reason = reason;
}

void CandidateSet::Prune(uint64_t uid) {
  const size_t index = IndexOf(uid, "prune");
  if (!candidates_[index].finished) LeaveLiveSet(candidates_[index]);
  candidates_.erase(candidates_.begin() + static_cast<std::ptrdiff_t>(index));
  for (int &i : live_) {
    if (i > static_cast<int>(index)) --i;
  }
}

}  // namespace llasa_rt
