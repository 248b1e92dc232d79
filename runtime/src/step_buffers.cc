// llasa-rt: per-step backend buffers, allocated once.
#include "llasa_rt/step_buffers.h"

#include <new>
#include <stdexcept>
#include <string>

#include "llasa_rt/errors.h"

namespace llasa_rt {

StepBuffers::StepBuffers(const KvCache &cache, int rows)
    : slots_(cache.config().slots), max_seq_len_(cache.config().max_seq_len), rows_(rows) {
  if (rows < 1) throw std::invalid_argument("StepBuffers rows must be >= 1, got " + std::to_string(rows));
  const size_t positions = static_cast<size_t>(slots_) * static_cast<size_t>(max_seq_len_);
  try {
    input_ids_.assign(positions, 0);
    position_ids_.assign(positions, 0);
    attention_mask_.assign(positions, 1);
    padded_mask_.assign(positions, 0);
    logits_.assign(static_cast<size_t>(slots_) * static_cast<size_t>(rows_), 0.0f);
  } catch (const std::bad_alloc &) {
    throw AllocationError("cannot allocate step buffers for " + std::to_string(slots_) + " slots x " +
                          std::to_string(max_seq_len_) + " positions and " + std::to_string(rows_) +
                          " logits rows; reduce slots or max_seq_len");
  }
}

}  // namespace llasa_rt
