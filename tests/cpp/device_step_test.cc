// The host-side shape work of the device backends (runtime/src/device_step.h): decode mask buckets and the portable
// attention mask built from the core's uniform and padded (Scheduler) masks. Exit status 0 when every check passes.
#include "device_step.h"

#include <cstdio>
#include <stdexcept>
#include <vector>

namespace {

int failures = 0;

void Expect(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

template <typename F>
void ExpectThrows(F f, const char *what) {
  try {
    f();
  } catch (const std::invalid_argument &) {
    return;
  }
  Expect(false, what);
}

}  // namespace

int main() {
  using llasa_rt::DecodeMaskLength;
  // Buckets of 256 positions: the past is rounded up, the new token added, the capacity caps it.
  Expect(DecodeMaskLength(0, 256, 2048) == 257, "past 0 -> one bucket + 1");
  Expect(DecodeMaskLength(1, 256, 2048) == 257, "past 1 -> 257");
  Expect(DecodeMaskLength(256, 256, 2048) == 257, "past 256 -> 257");
  Expect(DecodeMaskLength(257, 256, 2048) == 513, "past 257 -> 513");
  Expect(DecodeMaskLength(2047, 256, 2048) == 2049, "past 2047 -> capacity + 1");
  Expect(DecodeMaskLength(1900, 300, 2048) == 2049, "a bucket past the capacity is capped");
  ExpectThrows([] { DecodeMaskLength(2048, 256, 2048); }, "past == capacity is refused");
  ExpectThrows([] { DecodeMaskLength(5, 0, 2048); }, "bucket 0 is refused");

  // Uniform rows: past 3, one new token, mask padded to 6: 1 1 1 0 0 1.
  std::vector<int64_t> mask(12, -1);
  llasa_rt::FillUniformMask(2, 3, 1, 6, mask.data());
  const std::vector<int64_t> uniform = {1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1};
  Expect(mask == uniform, "uniform mask with padding");
  llasa_rt::FillUniformMask(1, 2, 3, 5, mask.data());
  Expect(std::vector<int64_t>(mask.begin(), mask.begin() + 5) == std::vector<int64_t>({1, 1, 1, 1, 1}),
         "uniform mask without padding is all ones");
  ExpectThrows([&] { llasa_rt::FillUniformMask(1, 5, 1, 5, mask.data()); }, "past + seq > mask_len is refused");

  // Scheduler rows (padded: ones for past + new, then zeros), one new token each, pasts 2 and 4:
  // portable mask length 5; row 0: 1 1 0 0 1, row 1: 1 1 1 1 1.
  const std::vector<int64_t> padded = {1, 1, 1, 0, 0, 0,  //
                                       1, 1, 1, 1, 1, 0};
  std::vector<int> past;
  std::vector<int64_t> out(12, -1);
  const int len = llasa_rt::PortableMaskFromPadded(padded.data(), 2, 6, 1, past, out.data());
  Expect(len == 5, "portable mask length = max past + seq");
  Expect(past == std::vector<int>({2, 4}), "per-row past lengths");
  Expect(std::vector<int64_t>(out.begin(), out.begin() + 10) ==
             std::vector<int64_t>({1, 1, 0, 0, 1, 1, 1, 1, 1, 1}),
         "portable mask rows");
  const std::vector<int64_t> holes = {1, 0, 1, 0};
  ExpectThrows([&] { llasa_rt::PortableMaskFromPadded(holes.data(), 1, 4, 1, past, out.data()); },
               "a one after a zero is refused");
  const std::vector<int64_t> short_row = {0, 0, 0, 0};
  ExpectThrows([&] { llasa_rt::PortableMaskFromPadded(short_row.data(), 1, 4, 1, past, out.data()); },
               "a row with fewer ones than new tokens is refused");

  if (failures == 0) std::printf("device_step_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
