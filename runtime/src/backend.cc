// llasa-rt: the backend interface's shared part.
#include "llasa_rt/backend.h"

#include <stdexcept>
#include <string>

namespace llasa_rt {

Backend::Backend(KvCache &cache, StepBuffers &buffers) : cache_(cache), buffers_(buffers) {
  const KvCacheConfig &c = cache.config();
  if (buffers.slots() != c.slots || buffers.max_seq_len() != c.max_seq_len) {
    throw std::invalid_argument("StepBuffers were made for " + std::to_string(buffers.slots()) + " slots x " +
                                std::to_string(buffers.max_seq_len()) + " positions but the KvCache has " +
                                std::to_string(c.slots) + " x " + std::to_string(c.max_seq_len) +
                                "; create them from the same cache");
  }
}

void Backend::ForwardRows(const int64_t *, int, int, int, int, float *) {
  throw std::logic_error("this backend does not implement ForwardRows, so it cannot batch requests of different "
                         "lengths (Scheduler); use Generator");
}

bool Backend::SharesPrefix() const { return false; }

void Backend::SetSharedPrefix(int, int) {}

}  // namespace llasa_rt
