// llasa-rt: the TensorRT backend: the LM plan built by `llasa-rt build-engine` from the portable graph, with the KV
// slots, the step's inputs and outputs in GPU memory. Compiled only when CMake finds TensorRT and the CUDA toolkit
// (LLASA_RT_WITH_TENSORRT=ON); BuildInfo.tensorrt is true exactly then. This header includes neither, so the
// bindings compile against it alone. Written to the TensorRT 10 C++ API; it has never run (no GPU where written).
//
// A step: host input_ids / position_ids / the portable attention mask are copied to device buffers; the plan runs
// (profile 0 "prefill" for one row of several tokens, profile 1 "decode" for up to max_batch rows of one token, one
// execution context each) reading the slots in place (past_key_values.* bound to the first rows' slots) and writing
// only the new positions (present.* bound to scratch buffers); those are copied into each row's slot at its positions
// (cudaMemcpy2DAsync); the logits [batch, rows] are copied to the host buffer the sampler reads. Everything is
// allocated once, at construction. Forks and compaction copy slots on the device (the backend is the KvCache's
// KvSlotCopier while it lives).
#pragma once

#include <memory>
#include <string>

#include "llasa_rt/backend.h"
#include "llasa_rt/kv_cache.h"
#include "llasa_rt/step_buffers.h"

namespace llasa_rt {

struct TensorRtOptions {
  int max_batch = 8;         // Rows of the plan's decode profile (build-engine --max-batch).
  bool cuda_graphs = false;  // Replay decode steps as CUDA graphs, one per (batch, mask bucket); see graph_bucket.
  int graph_bucket = 256;    // With cuda_graphs: the decode mask covers the past rounded up to this many positions.
  int device = 0;            // CUDA device.

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

// A deserialised plan (runtime + engine), shared by the backends made from it (one per KV cache size).
class TensorRtEngine {
 public:
  // Deserialises `plan` on CUDA device `device`; throws std::runtime_error with TensorRT's reason.
  TensorRtEngine(const std::string &plan, int device);
  ~TensorRtEngine();
  TensorRtEngine(const TensorRtEngine &) = delete;
  TensorRtEngine &operator=(const TensorRtEngine &) = delete;

  struct Impl;
  Impl &impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class TensorRtBackend : public Backend, public KvSlotCopier {
 public:
  // Allocates the device slots for `cache`'s shape (its host memory is never used) and every step buffer; registers
  // itself as `cache`'s slot copier. Throws std::invalid_argument when the cache does not fit the plan (layers,
  // heads, KV dtype, capacity) and std::runtime_error on a CUDA / TensorRT failure.
  TensorRtBackend(KvCache &cache, StepBuffers &buffers, TensorRtEngine &engine, const TensorRtOptions &options);
  ~TensorRtBackend() override;

  void Forward(const int64_t *input_ids, int batch, int seq_len, int past_len, float *logits) override;
  void ForwardRows(const int64_t *input_ids, int first_slot, int batch, int seq_len, int mask_len,
                   float *logits) override;
  void CopySlotRange(int src, int dst, int begin, int end) override;

  // Decode steps replayed from a captured CUDA graph so far (0 without cuda_graphs).
  long long graph_launches() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llasa_rt
