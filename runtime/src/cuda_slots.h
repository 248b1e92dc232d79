// llasa-rt: device memory of a CUDA backend (the TensorRT backend): the KV slots in the capacity layout
// [slots, kv_heads, max_seq_len, head_dim] per layer and K/V, the writes of a step's new keys/values into them, the
// slot copies of forks and compaction, and CUDA graphs of the decode step. Needs only the CUDA runtime. Private to
// the core; compiled only with the TensorRT backend (LLASA_RT_WITH_TENSORRT). Never run: no GPU where it was written.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "llasa_rt/kv_cache.h"

namespace llasa_rt {

// Throws std::runtime_error "CUDA <what> failed: <message>" when `status` is not cudaSuccess.
void CudaCheck(cudaError_t status, const char *what);

// cudaMalloc'd bytes, zero-filled, freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(other.bytes_) {}
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  void *get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A stream owned by the backend (non-blocking with respect to the legacy default stream).
class CudaStream {
 public:
  CudaStream();
  ~CudaStream();
  CudaStream(const CudaStream &) = delete;
  CudaStream &operator=(const CudaStream &) = delete;
  cudaStream_t get() const { return stream_; }
  void Synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// The KV slots on the device. As the KvCache's KvSlotCopier, forks and compaction copy here, not in host memory.
class DeviceKvSlots : public KvSlotCopier {
 public:
  // Allocates 2 * num_layers buffers of `config`'s shape (zero-filled); copies run on `stream`.
  DeviceKvSlots(const KvCacheConfig &config, cudaStream_t stream);
  // Base of layer `layer`'s K (kind 0) or V (kind 1) buffer, and of one slot in it.
  void *Buffer(int layer, int kind) const { return buffers_[2 * layer + kind].get(); }
  void *Slot(int layer, int kind, int slot) const;
  // Writes one present output `src` [rows, kv_heads, seq, head_dim] into slots [first_slot, first_slot + rows) at
  // positions [past_len, past_len + seq): one cudaMemcpy2DAsync of rows * kv_heads lines (all rows share past_len).
  void WriteUniform(int layer, int kind, const void *src, int first_slot, int rows, int seq, int past_len) const;
  // The same with a past length per row (Scheduler steps): one cudaMemcpy2DAsync of kv_heads lines per row.
  void WriteRows(int layer, int kind, const void *src, int first_slot, const std::vector<int> &past_lens,
                 int seq) const;
  // KvSlotCopier: kv_heads lines of (end - begin) positions per buffer, on the stream, then waits for it.
  void CopySlotRange(int src, int dst, int begin, int end) override;

 private:
  KvCacheConfig config_;
  cudaStream_t stream_;
  size_t row_bytes_;   // One position of one head.
  size_t head_bytes_;  // max_seq_len positions of one head (the pitch of every copy).
  size_t slot_bytes_;  // One slot of one buffer.
  std::vector<DeviceBuffer> buffers_;
};

// Decode steps captured as CUDA graphs, one per (batch, mask length); replayed with cudaGraphLaunch.
class CudaGraphCache {
 public:
  ~CudaGraphCache();
  // Launches the graph of `key` on `stream` if one was captured; false otherwise.
  bool Launch(std::pair<int, int> key, cudaStream_t stream) const;
  // Captures what `enqueue` puts on `stream` (nothing runs) as the graph of `key`.
  void Capture(std::pair<int, int> key, cudaStream_t stream, const std::function<void()> &enqueue);

 private:
  std::map<std::pair<int, int>, std::pair<cudaGraph_t, cudaGraphExec_t>> graphs_;
};

}  // namespace llasa_rt
