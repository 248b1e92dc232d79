// llasa-rt: the controller a generation callback acts through.
#include "llasa_rt/generation_controller.h"

#include <stdexcept>
#include <string>

#include "llasa_rt/generator.h"

namespace llasa_rt {

void GenerationController::CheckActive(const char *action) const {
  if (generator_ == nullptr) {
    throw std::logic_error(std::string("GenerationController.") + action +
                           " is only valid inside the generation callback it was passed to");
  }
}

int GenerationController::step() const { return step_; }

bool GenerationController::done() const { return done_; }

const std::vector<int32_t> &GenerationController::new_final_codes() const { return new_final_codes_; }

int GenerationController::final_length() const { return final_length_; }

std::vector<Candidate> GenerationController::Candidates() const {
  CheckActive("candidates");
  return generator_->candidates_.all();
}

std::vector<uint64_t> GenerationController::LiveUids() const {
  CheckActive("live_uids");
  std::vector<uint64_t> uids;
  CandidateSet &set = generator_->candidates_;
  for (int slot = 0; slot < set.live(); ++slot) uids.push_back(set.InSlot(slot).uid);
  return uids;
}

void GenerationController::Stop() {
  CheckActive("stop");
  stop_requested_ = true;
}

void GenerationController::Prune(uint64_t uid) {
  CheckActive("prune");
  CandidateSet &set = generator_->candidates_;
  if (set.all().size() == 1 && set.all().front().uid == uid) {
    throw std::invalid_argument("cannot prune candidate uid=" + std::to_string(uid) +
                                ": it is the last surviving candidate; call stop() to end the generation instead");
  }
  set.Prune(uid);
}

uint64_t GenerationController::Fork(uint64_t uid) {
  CheckActive("fork");
  return generator_->candidates_.Fork(uid).uid;
}

void GenerationController::SetScore(uint64_t uid, const std::string &name, double value) {
  CheckActive("set_score");
  Candidate *c = generator_->candidates_.Find(uid);
  if (c == nullptr) {
    throw std::invalid_argument("cannot set a score on candidate uid=" + std::to_string(uid) +
                                ": no such candidate (never created or already pruned)");
  }
  c->scores[name] = value;
}

}  // namespace llasa_rt
