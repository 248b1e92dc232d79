// llasa-rt (internal): a counter-based random number generator. A draw is a pure function of (seed, uid, step),
// so a candidate samples the same tokens whatever the batch size, thread count or order of candidates.
// Public callers reach it through Sampler::UniformDraw.
#pragma once

#include <cstdint>

namespace llasa_rt {

// SplitMix64's finaliser: a bijective 64-bit mixer with good avalanche.
inline uint64_t SplitMix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform double in [0, 1) with 53 random bits for candidate `uid`'s draw at generation step `step`.
inline double UniformDraw(uint64_t seed, uint64_t uid, uint64_t step) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ uid);
  h = SplitMix64(h ^ step);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

}  // namespace llasa_rt
