// llasa-rt: the KV cache. Per layer one K and one V buffer of shape [slots, kv_heads, max_seq_len, head_dim],
// allocated once. A slot holds one candidate's keys/values; live candidates are kept in slots [0, live) so
// that a backend step can run on the first `live` rows, which are contiguous in every buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace llasa_rt {

// Element type of the cached keys/values (the graph's KV dtype). The core only copies bytes.
enum class KvDType { kFloat32, kFloat16 };

// Size in bytes of one element of `dtype`.
size_t KvDTypeSize(KvDType dtype);
// "float32" / "float16".
const char *KvDTypeName(KvDType dtype);

// Where a device backend keeps the slots' real keys/values (e.g. in GPU memory): when a KvCache is given a
// copier, its slot copies (forks, compaction) go to the copier instead of this host memory, which then stays
// untouched (its pages are never committed). The cache still owns the shape and checks every copy's range first.
class KvSlotCopier {
 public:
  virtual ~KvSlotCopier() = default;
  // Copies positions [begin, end) of slot `src` to slot `dst` in every layer, K and V, every head.
  // Called only with valid, distinct slots and 0 <= begin < end <= max_seq_len.
  virtual void CopySlotRange(int src, int dst, int begin, int end) = 0;
};

// Shape of the cache.
struct KvCacheConfig {
  int num_layers = 0;                // Decoder layers (one K and one V buffer each).
  int num_kv_heads = 0;              // Key/value heads per layer (GQA groups).
  int head_dim = 0;                  // Dimension of one head.
  int slots = 1;                     // Candidates that can be live at once (batch rows of a step).
  int max_seq_len = 0;               // Positions per slot: prompt + generated tokens must fit.
  KvDType dtype = KvDType::kFloat32;  // Element type of the buffers.

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

class KvCache {
 public:
  // Allocates every buffer (zero-filled, 64-byte aligned, pages committed on first write).
  // Throws AllocationError with the shape and what to reduce when the memory is not available.
  explicit KvCache(const KvCacheConfig &config);
  ~KvCache();
  KvCache(const KvCache &) = delete;
  KvCache &operator=(const KvCache &) = delete;

  const KvCacheConfig &config() const { return config_; }
  // Base address of layer `layer`'s key / value buffer [slots, kv_heads, max_seq_len, head_dim].
  void *Key(int layer) const;
  void *Value(int layer) const;
  // Bytes of one buffer, of one slot in a buffer, and of the whole cache.
  size_t BufferBytes() const { return buffer_bytes_; }
  size_t SlotBytes() const { return slot_bytes_; }
  size_t TotalBytes() const { return total_bytes_; }

  // Copies positions [0, length) of slot `src` to slot `dst` in every layer, K and V, every head.
  // Positions >= length of `dst` are left as they are. Throws std::out_of_range on a bad slot/length.
  // With a copier set, the copy is the copier's (see KvSlotCopier).
  void CopySlot(int src, int dst, int length);
  // Copies positions [begin, end) of slot `src` to slot `dst` in every layer, K and V, every head (a fork that
  // shares the prompt prefix copies only its own suffix). Throws std::out_of_range on a bad slot/range. With a
  // copier set, the copy is the copier's.
  void CopySlotRange(int src, int dst, int begin, int end);

  // Sends every later slot copy to `copier` (not owned; it must outlive its use), or back to this host memory when
  // `copier` is null. A device backend sets itself here when it is constructed and resets it when destroyed.
  void SetSlotCopier(KvSlotCopier *copier) { copier_ = copier; }
  KvSlotCopier *slot_copier() const { return copier_; }

 private:
  KvCacheConfig config_;
  size_t buffer_bytes_ = 0;  // One K or V buffer of one layer.
  size_t stride_bytes_ = 0;  // Distance between consecutive buffers (buffer_bytes_ rounded up to 64).
  size_t slot_bytes_ = 0;    // One slot of one buffer: kv_heads * max_seq_len * head_dim elements.
  size_t total_bytes_ = 0;   // The single mapping that holds every buffer.
  unsigned char *base_ = nullptr;
  KvSlotCopier *copier_ = nullptr;  // Not owned; null = copies in host memory.
};

}  // namespace llasa_rt
