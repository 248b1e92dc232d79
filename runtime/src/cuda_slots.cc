// llasa-rt: device memory of a CUDA backend (see cuda_slots.h).
#include "cuda_slots.h"

#include <stdexcept>
#include <string>

namespace llasa_rt {

void CudaCheck(cudaError_t status, const char *what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
  }
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&ptr_, bytes);
  if (status != cudaSuccess) {
    ptr_ = nullptr;
    throw std::runtime_error("cannot allocate " + std::to_string(bytes >> 20) + " MiB of GPU memory (" +
                             cudaGetErrorString(status) + "); use fewer candidates or a smaller --max-context");
  }
  CudaCheck(cudaMemset(ptr_, 0, bytes), "cudaMemset");
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = other.bytes_;
  }
  return *this;
}

CudaStream::CudaStream() { CudaCheck(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream creation"); }

CudaStream::~CudaStream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaStream::Synchronize() const { CudaCheck(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

DeviceKvSlots::DeviceKvSlots(const KvCacheConfig &config, cudaStream_t stream) : config_(config), stream_(stream) {
  config_.Validate();
  row_bytes_ = static_cast<size_t>(config_.head_dim) * KvDTypeSize(config_.dtype);
  head_bytes_ = row_bytes_ * static_cast<size_t>(config_.max_seq_len);
  slot_bytes_ = head_bytes_ * static_cast<size_t>(config_.num_kv_heads);
  buffers_.reserve(2 * static_cast<size_t>(config_.num_layers));
  for (int i = 0; i < 2 * config_.num_layers; ++i) {
    buffers_.emplace_back(slot_bytes_ * static_cast<size_t>(config_.slots));
  }
}

void *DeviceKvSlots::Slot(int layer, int kind, int slot) const {
  return static_cast<unsigned char *>(Buffer(layer, kind)) + slot_bytes_ * static_cast<size_t>(slot);
}

void DeviceKvSlots::WriteUniform(int layer, int kind, const void *src, int first_slot, int rows, int seq,
                                 int past_len) const {
  // Line (b, h) of the source is seq positions at src + (b * kv_heads + h) * seq * row; its destination is
  // slot (first_slot + b), head h, position past_len: base + (b * kv_heads + h) * head_bytes + past_len * row.
  unsigned char *dst = static_cast<unsigned char *>(Slot(layer, kind, first_slot)) + past_len * row_bytes_;
  const size_t width = static_cast<size_t>(seq) * row_bytes_;
  CudaCheck(cudaMemcpy2DAsync(dst, head_bytes_, src, width, width,
                              static_cast<size_t>(rows) * config_.num_kv_heads, cudaMemcpyDeviceToDevice, stream_),
            "cudaMemcpy2DAsync (new keys/values)");
}

void DeviceKvSlots::WriteRows(int layer, int kind, const void *src, int first_slot, const std::vector<int> &past_lens,
                              int seq) const {
  const size_t width = static_cast<size_t>(seq) * row_bytes_;
  const unsigned char *from = static_cast<const unsigned char *>(src);
  for (size_t b = 0; b < past_lens.size(); ++b) {
    unsigned char *dst = static_cast<unsigned char *>(Slot(layer, kind, first_slot + static_cast<int>(b))) +
                         past_lens[b] * row_bytes_;
    CudaCheck(cudaMemcpy2DAsync(dst, head_bytes_, from + b * config_.num_kv_heads * width, width, width,
                                config_.num_kv_heads, cudaMemcpyDeviceToDevice, stream_),
              "cudaMemcpy2DAsync (new keys/values of a row)");
  }
}

void DeviceKvSlots::CopySlotRange(int src, int dst, int begin, int end) {
  const size_t offset = static_cast<size_t>(begin) * row_bytes_;
  const size_t width = static_cast<size_t>(end - begin) * row_bytes_;
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      CudaCheck(cudaMemcpy2DAsync(static_cast<unsigned char *>(Slot(layer, kind, dst)) + offset, head_bytes_,
                                  static_cast<unsigned char *>(Slot(layer, kind, src)) + offset, head_bytes_, width,
                                  config_.num_kv_heads, cudaMemcpyDeviceToDevice, stream_),
                "cudaMemcpy2DAsync (slot copy)");
    }
  }
  CudaCheck(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (slot copy)");
}

CudaGraphCache::~CudaGraphCache() {
  for (auto &entry : graphs_) {
    cudaGraphExecDestroy(entry.second.second);
    cudaGraphDestroy(entry.second.first);
  }
}

bool CudaGraphCache::Launch(std::pair<int, int> key, cudaStream_t stream) const {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) return false;
  CudaCheck(cudaGraphLaunch(it->second.second, stream), "cudaGraphLaunch");
  return true;
}

void CudaGraphCache::Capture(std::pair<int, int> key, cudaStream_t stream, const std::function<void()> &enqueue) {
  CudaCheck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken != nullptr) cudaGraphDestroy(broken);
    throw;
  }
  cudaGraph_t graph = nullptr;
  CudaCheck(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  if (status != cudaSuccess) {
    cudaGraphDestroy(graph);
    CudaCheck(status, "cudaGraphInstantiate");
  }
  graphs_[key] = {graph, exec};
}

}  // namespace llasa_rt
