// llasa-rt (internal): the sampler's full-row loops over 65,537 logits. They are written so that the compiler
// vectorises them, and on x86-64 with GCC each is compiled for AVX-512, AVX2 and the baseline, the best one being
// picked at load time (the wheel stays portable). exp is a float polynomial (Cephes expf, ~1 ulp), like the float32
// softmax transformers runs; sums are accumulated in double.
#pragma once

#include <cstdint>

namespace llasa_rt {
namespace kernels {

// Max of x[0, n); sets *invalid when any element is NaN or +inf.
float MaxChecked(const float *x, int n, bool *invalid);
// Max of x[0, n) (no NaN present).
float Max(const float *x, int n);
// sum_i exp(x[i] - shift). SumExp and Sum are the same blocked reduction (float lanes per block, blocks added in
// double) with a different element operation.
double SumExp(const float *x, int n, float shift);
// w[i] = exp(s[i] - shift); returns the sum.
double ExpWeights(const float *s, int n, float shift, float *w);
// s[i] = s[i] / divisor (a division, as transformers does, not a multiplication by the reciprocal).
void Divide(float *s, int n, float divisor);
// s[i] = -inf where s[i] < threshold.
void MaskBelow(float *s, int n, float threshold);
// sum_i w[i].
double Sum(const float *w, int n);

// Top-p buckets of weights w in [0, 1]: by binary exponent and the top two mantissa bits (a quarter octave each),
// bucket 0 holding the largest weights and the last one everything below 2^-64 (and zeros). Monotonic in w.
constexpr int kWeightBuckets = 256;
void WeightBuckets(const float *w, int n, uint8_t *bucket);
// w[i] = 0 where bucket[i] > cut.
void ZeroAboveBucket(float *w, const uint8_t *bucket, int n, uint8_t cut);

}  // namespace kernels
}  // namespace llasa_rt
