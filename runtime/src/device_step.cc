// llasa-rt: host-side shape work of a device backend (see device_step.h).
#include "device_step.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace llasa_rt {

int DecodeMaskLength(int past_len, int bucket, int capacity) {
  if (bucket < 1 || capacity < 1 || past_len < 0 || past_len >= capacity) {
    throw std::invalid_argument("DecodeMaskLength: past_len " + std::to_string(past_len) + " outside [0, " +
                                std::to_string(capacity) + ") or bucket " + std::to_string(bucket) + " < 1");
  }
  const int padded = (std::max(past_len, 1) + bucket - 1) / bucket * bucket;
  return std::min(padded, capacity) + 1;
}

void FillUniformMask(int batch, int past_len, int seq, int mask_len, int64_t *mask) {
  if (past_len < 0 || seq < 1 || past_len + seq > mask_len) {
    throw std::invalid_argument("FillUniformMask: past_len " + std::to_string(past_len) + " + seq " +
                                std::to_string(seq) + " does not fit mask_len " + std::to_string(mask_len));
  }
  for (int b = 0; b < batch; ++b) {
    int64_t *row = mask + static_cast<size_t>(b) * mask_len;
    std::fill(row, row + past_len, 1);
    std::fill(row + past_len, row + mask_len - seq, 0);
    std::fill(row + mask_len - seq, row + mask_len, 1);
  }
}

int PortableMaskFromPadded(const int64_t *padded, int batch, int padded_len, int seq, std::vector<int> &past_lens,
                           int64_t *mask) {
  past_lens.assign(batch, 0);
  int max_past = 0;
  for (int b = 0; b < batch; ++b) {
    const int64_t *row = padded + static_cast<size_t>(b) * padded_len;
    const int ones = static_cast<int>(std::find(row, row + padded_len, 0) - row);
    if (ones < seq || std::any_of(row + ones, row + padded_len, [](int64_t v) { return v != 0; })) {
      throw std::invalid_argument("padded mask row " + std::to_string(b) + " is not ones (past + " +
                                  std::to_string(seq) + " new) followed by zeros");
    }
    past_lens[b] = ones - seq;
    max_past = std::max(max_past, past_lens[b]);
  }
  const int mask_len = max_past + seq;
  for (int b = 0; b < batch; ++b) {
    int64_t *row = mask + static_cast<size_t>(b) * mask_len;
    std::fill(row, row + past_lens[b], 1);
    std::fill(row + past_lens[b], row + max_past, 0);
    std::fill(row + max_past, row + mask_len, 1);
  }
  return mask_len;
}

}  // namespace llasa_rt
