// llasa-rt: the KV cache (one anonymous mapping holding every layer's K and V buffer).
#include "llasa_rt/kv_cache.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "llasa_rt/errors.h"

namespace llasa_rt {

namespace {

constexpr size_t kAlignment = 64;

std::string FormatGiB(size_t bytes) {
  std::ostringstream out;
  out.precision(3);
  out << static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0) << " GiB";
  return out.str();
}

// a * b, or throws AllocationError when it overflows size_t.
size_t CheckedMul(size_t a, size_t b, const std::string &what) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) {
    throw AllocationError("KV cache size overflows: " + what + "; reduce slots or max_seq_len");
  }
  return a * b;
}

}  // namespace

size_t KvDTypeSize(KvDType dtype) { return dtype == KvDType::kFloat16 ? 2 : 4; }

const char *KvDTypeName(KvDType dtype) { return dtype == KvDType::kFloat16 ? "float16" : "float32"; }

void KvCacheConfig::Validate() const {
  auto require_positive = [](int value, const char *name) {
    if (value < 1) {
      throw std::invalid_argument(std::string("KvCache ") + name + " must be >= 1, got " + std::to_string(value));
    }
  };
  require_positive(num_layers, "num_layers");
  require_positive(num_kv_heads, "num_kv_heads");
  require_positive(head_dim, "head_dim");
  require_positive(slots, "slots");
  require_positive(max_seq_len, "max_seq_len");
}

KvCache::KvCache(const KvCacheConfig &config) : config_(config) {
  config_.Validate();
  const size_t elem = KvDTypeSize(config_.dtype);
  std::ostringstream shape;
  shape << config_.num_layers << " layers x (K, V) x [slots " << config_.slots << ", kv_heads " << config_.num_kv_heads
        << ", max_seq_len " << config_.max_seq_len << ", head_dim " << config_.head_dim << "] "
        << KvDTypeName(config_.dtype);
  slot_bytes_ = CheckedMul(CheckedMul(CheckedMul(config_.num_kv_heads, config_.max_seq_len, shape.str()),
                                      config_.head_dim, shape.str()),
                           elem, shape.str());
  buffer_bytes_ = CheckedMul(slot_bytes_, config_.slots, shape.str());
  stride_bytes_ = (buffer_bytes_ + kAlignment - 1) / kAlignment * kAlignment;
  total_bytes_ = CheckedMul(stride_bytes_, 2 * static_cast<size_t>(config_.num_layers), shape.str());
  // An anonymous private mapping is zero-filled, page aligned (>= 64 bytes) and only committed where
  // written, so an unused tail of max_seq_len costs no RAM. Without MAP_NORESERVE the kernel refuses a
  // mapping it cannot back, which is the failure we want to report clearly.
  void *mem = mmap(nullptr, total_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    throw AllocationError("cannot allocate the KV cache: " + shape.str() + " = " + FormatGiB(total_bytes_) +
                          " (" + std::strerror(errno) + "); reduce slots (candidates) or max_seq_len");
  }
  base_ = static_cast<unsigned char *>(mem);
}

KvCache::~KvCache() {
  if (base_ != nullptr) munmap(base_, total_bytes_);
}

void *KvCache::Key(int layer) const {
  if (layer < 0 || layer >= config_.num_layers) {
    throw std::out_of_range("KV layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(config_.num_layers) + ")");
  }
  return base_ + stride_bytes_ * (2 * static_cast<size_t>(layer));
}

void *KvCache::Value(int layer) const {
  if (layer < 0 || layer >= config_.num_layers) {
    throw std::out_of_range("KV layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(config_.num_layers) + ")");
  }
  return base_ + stride_bytes_ * (2 * static_cast<size_t>(layer) + 1);
}

void KvCache::CopySlot(int src, int dst, int length) {
  if (length < 0 || length > config_.max_seq_len) {
    throw std::out_of_range("CopySlot length " + std::to_string(length) + " outside [0, max_seq_len=" +
                            std::to_string(config_.max_seq_len) + "]");
  }
  CopySlotRange(src, dst, 0, length);
}

void KvCache::CopySlotRange(int src, int dst, int begin, int end) {
  if (src < 0 || src >= config_.slots || dst < 0 || dst >= config_.slots) {
    throw std::out_of_range("CopySlot(" + std::to_string(src) + ", " + std::to_string(dst) + "): slots are [0, " +
                            std::to_string(config_.slots) + ")");
  }
  if (begin < 0 || begin > end || end > config_.max_seq_len) {
    throw std::out_of_range("CopySlotRange positions [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") outside [0, max_seq_len=" + std::to_string(config_.max_seq_len) + "]");
  }
  if (src == dst || begin == end) return;
  if (copier_ != nullptr) {
    copier_->CopySlotRange(src, dst, begin, end);
    return;
  }
  const size_t elem = KvDTypeSize(config_.dtype);
  const size_t row_bytes = static_cast<size_t>(config_.head_dim) * elem;  // One position of one head.
  const size_t head_bytes = static_cast<size_t>(config_.max_seq_len) * row_bytes;
  const size_t first_byte = static_cast<size_t>(begin) * row_bytes;
  const size_t copy_bytes = static_cast<size_t>(end - begin) * row_bytes;  // The range in one head.
  for (int buffer = 0; buffer < 2 * config_.num_layers; ++buffer) {
    unsigned char *base = base_ + stride_bytes_ * static_cast<size_t>(buffer);
    unsigned char *from = base + slot_bytes_ * static_cast<size_t>(src) + first_byte;
    unsigned char *to = base + slot_bytes_ * static_cast<size_t>(dst) + first_byte;
    for (int head = 0; head < config_.num_kv_heads; ++head) {
      std::memcpy(to + head * head_bytes, from + head * head_bytes, copy_bytes);
    }
  }
}

}  // namespace llasa_rt
