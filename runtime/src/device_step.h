// llasa-rt: the host-side shape work of a device backend over the portable LM graph (no CUDA, no TensorRT), so it
// is tested on any machine. The portable graph's attention mask is [batch, past + seq]: column j < past is 1 when
// cache position j is valid for that row, the last `seq` columns (the new tokens) are 1.
#pragma once

#include <cstdint>
#include <vector>

namespace llasa_rt {

// Mask length of a decode step replayed as a CUDA graph: `past_len` rounded up to a multiple of `bucket` (at most
// `capacity`), plus the one new token. Steps whose past falls in one bucket share a captured graph; the cache
// positions past a row's own length are masked with zeros. Throws std::invalid_argument outside
// 0 <= past_len < capacity, bucket >= 1.
int DecodeMaskLength(int past_len, int bucket, int capacity);

// Writes the portable mask [batch, mask_len] for rows that all have `past_len` valid cache positions and `seq` new
// tokens: ones for j < past_len, zeros for past_len <= j < mask_len - seq, ones for the last seq columns.
void FillUniformMask(int batch, int past_len, int seq, int mask_len, int64_t *mask);

// The Scheduler's rows: `padded` [batch, padded_len] holds, per row, ones for its past + new positions, then zeros.
// Sets past_lens[b] (ones - seq; throws std::invalid_argument if a row has fewer than seq ones or a one after a zero)
// and returns the portable mask length (max past + seq); `mask` (at least batch * (padded_len) elements) receives
// the portable mask [batch, returned length].
int PortableMaskFromPadded(const int64_t *padded, int batch, int padded_len, int seq, std::vector<int> &past_lens,
                           int64_t *mask);

}  // namespace llasa_rt
