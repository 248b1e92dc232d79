// llasa-rt: what the decode loop needs from a model: one forward step over the first `batch` KV slots.
// A backend is given the KvCache and the StepBuffers at construction (to bind them once, e.g. through ONNX
// Runtime's IOBinding or as TensorRT bindings); the loop never depends on which backend runs.
#pragma once

#include <cstdint>

#include "llasa_rt/kv_cache.h"
#include "llasa_rt/step_buffers.h"

namespace llasa_rt {

class Backend {
 public:
  // Throws std::invalid_argument if `buffers` was made for a cache of another shape.
  Backend(KvCache &cache, StepBuffers &buffers);
  virtual ~Backend() = default;
  Backend(const Backend &) = delete;
  Backend &operator=(const Backend &) = delete;

  // Runs `batch` rows of `seq_len` new tokens each. Row b's keys/values for positions [0, past_len) are in KV
  // slot b; the backend writes the new ones in place at positions [past_len, past_len + seq_len) of slot b and
  // the logits of each row's last position to `logits` [batch, rows]. `input_ids` [batch, seq_len] and the
  // position ids (past_len + j, in buffers().position_ids()) point into buffers(); the attention mask is
  // buffers().attention_mask() viewed as [batch, past_len + seq_len].
  virtual void Forward(const int64_t *input_ids, int batch, int seq_len, int past_len, float *logits) = 0;

  // Request batching (Scheduler): runs `batch` rows whose KV lives in slots [first_slot, first_slot + batch),
  // each with its own number of cached positions. `input_ids` [batch, seq_len] and the position ids are in
  // buffers() as for Forward; the attention mask is buffers().padded_mask() viewed as [batch, mask_len], row b
  // holding ones for its past + new positions and zeros after them. The backend writes row b's new keys/values
  // at its own positions (those of the ones) and the last position's logits to `logits` [batch, rows].
  // The default throws std::logic_error: a backend that cannot batch requests.
  virtual void ForwardRows(const int64_t *input_ids, int first_slot, int batch, int seq_len, int mask_len,
                           float *logits);

  // Shared prompt prefix (Generator only; the Scheduler never shares). When SharesPrefix() is true the Generator,
  // after prefilling the prompt into slot 0, calls SetSharedPrefix(0, prompt_len): from then on every Forward must
  // read positions [0, prompt_len) of every row from slot 0 (other slots hold only their own positions from
  // prompt_len on; slot 0's positions below prompt_len are never overwritten). SetSharedPrefix(-1, 0) ends it, at
  // the end of every Generate (also when it throws). Defaults: false / does nothing.
  virtual bool SharesPrefix() const;
  virtual void SetSharedPrefix(int slot, int length);

  KvCache &cache() const { return cache_; }
  StepBuffers &buffers() const { return buffers_; }

 private:
  KvCache &cache_;
  StepBuffers &buffers_;
};

}  // namespace llasa_rt
