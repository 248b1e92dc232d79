// llasa-rt: what a generation callback can see and do. Valid only during the callback it is passed to.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llasa_rt/candidates.h"

namespace llasa_rt {

class Generator;

class GenerationController : public std::enable_shared_from_this<GenerationController> {
 public:
  // Tokens generated so far by each live candidate (all live candidates have the same count).
  int step() const;
  // True in the last call, made once after every candidate finished or the generation was stopped.
  bool done() const;
  // Speech codes that became final since the previous call: once every surviving candidate (live or finished)
  // agrees on them (their common prefix). With one candidate every token is final as soon as it is sampled.
  const std::vector<int32_t> &new_final_codes() const;
  // How many codes are final so far (the common prefix length).
  int final_length() const;
  // A snapshot of every surviving candidate (live and finished), in creation order.
  std::vector<Candidate> Candidates() const;
  // Uids of the live candidates, in slot order.
  std::vector<uint64_t> LiveUids() const;

  // Ends the generation after this call; live candidates finish as "stopped".
  void Stop();
  // Removes candidate `uid` (live or finished). The last surviving candidate cannot be pruned (use Stop()).
  void Prune(uint64_t uid);
  // Copies live candidate `uid` into a free KV slot under a new uid, which it returns. Its next draws use the new
  // uid's RNG stream at the same step numbers.
  uint64_t Fork(uint64_t uid);
  // Sets a named score on candidate `uid` (e.g. a verifier's).
  void SetScore(uint64_t uid, const std::string &name, double value);

 private:
  friend class Generator;
  void CheckActive(const char *action) const;

  Generator *generator_ = nullptr;  // Non-null only during a callback.
  bool done_ = false;
  int step_ = 0;
  int final_length_ = 0;
  bool stop_requested_ = false;
  std::vector<int32_t> new_final_codes_;
};

}  // namespace llasa_rt
