// llasa-rt: the per-step input and output buffers of a backend, owned by the core and allocated once, so
// that a backend can bind them (e.g. ONNX Runtime IOBinding) at construction and nothing is allocated per step.
#pragma once

#include <cstdint>
#include <vector>

#include "llasa_rt/kv_cache.h"

namespace llasa_rt {

class StepBuffers {
 public:
  // Buffers for `cache.config().slots` rows of up to `max_seq_len` positions and `rows` logits per row.
  StepBuffers(const KvCache &cache, int rows);

  int slots() const { return slots_; }
  int max_seq_len() const { return max_seq_len_; }
  int rows() const { return rows_; }

  // input_ids of a step, [batch, seq_len] row-major at the start of the buffer (slots * max_seq_len elements).
  int64_t *input_ids() { return input_ids_.data(); }
  // position_ids of a step, same layout as input_ids; the core fills it before each Forward.
  int64_t *position_ids() { return position_ids_.data(); }
  // All ones (slots * max_seq_len elements): any [batch, past_len + seq_len] prefix is a valid attention mask.
  int64_t *attention_mask() { return attention_mask_.data(); }
  // Request batching: a padded attention mask [batch, mask_len] row-major at the start of the buffer (slots *
  // max_seq_len elements); the scheduler writes each row as its valid positions in ones, then zeros.
  int64_t *padded_mask() { return padded_mask_.data(); }
  // Last-position logits of a step, [batch, rows] (slots * rows elements).
  float *logits() { return logits_.data(); }

  size_t ids_capacity() const { return input_ids_.size(); }
  size_t logits_capacity() const { return logits_.size(); }

 private:
  int slots_;
  int max_seq_len_;
  int rows_;
  std::vector<int64_t> input_ids_;
  std::vector<int64_t> position_ids_;
  std::vector<int64_t> attention_mask_;
  std::vector<int64_t> padded_mask_;
  std::vector<float> logits_;
};

}  // namespace llasa_rt
