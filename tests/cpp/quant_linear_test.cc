// QuantLinear (runtime/src/quant_linear.h) without Python: random MatMulNBits weights (4 and 8 bits, blocks of 32,
// 64, 128 and 256, k not always a multiple of the block, n not a multiple of the 16-output tile) run through every kernel
// this CPU can run ("scalar", "avx2", "avx512vnni"), for 1..11 rows (more than one row group), y = and y +=, 1 and 2
// threads. Checks: (a) against a double-precision product of the dequantised weights and the same int8 activations
// (within a float rounding bound); (b) against the float product with the unquantised activations (within the
// activation quantisation's error bound); (c) the same bits from every kernel, thread count and row count; (d) no
// write beyond column n; (e) the checks are not vacuous (outputs not all zero, a one-step change in one weight of
// the reference fails check (a)). Exit status 0 when every check passes. A ctest test (tests/cpp/CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "quant_linear.h"
#include "thread_pool.h"

namespace {

using llasa_rt::QuantLinear;
using llasa_rt::ThreadPool;
namespace quant = llasa_rt::quant;

constexpr int kRows = 11;
constexpr float kSentinel = -12345.678f;
int g_failures = 0;

void Check(bool ok, const char *what, int bits, int block, int n, int k, const char *kernel, int rows) {
  if (!ok) {
    std::printf("FAILED: %s (bits %d block %d n %d k %d kernel %s rows %d)\n", what, bits, block, n, k, kernel, rows);
    ++g_failures;
  }
}

// Deterministic values in [0, 2^24).
uint32_t Next(uint32_t &state) {
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}
float Uniform(uint32_t &state) { return static_cast<float>(Next(state)) / 8388608.0f - 1.0f; }  // [-1, 1)

struct Reference {
  std::vector<double> quantized;  // [rows, n]: dequantised W times the int8 activations, in double.
  std::vector<double> rounding;   // [rows, n]: a bound on the kernels' float rounding error (first order).
  std::vector<double> exact;      // [rows, n]: dequantised W times the float activations.
  std::vector<double> x_bound;    // [rows, n]: sum_k |w| * xs / 2 (the activation quantisation's largest error).
};

struct Case {
  int bits, block, n, k;
};

void RunCase(const Case &cs, const std::vector<quant::Kernels> &kernels, ThreadPool *pools[2]) {
  const int bits = cs.bits, block = cs.block, n = cs.n, k = cs.k;
  const int blocks = (k + block - 1) / block;
  const int kp = blocks * block;
  uint32_t state = static_cast<uint32_t>(bits * 1000003 + block * 7919 + n * 131 + k);
  // MatMulNBits inputs: data [n, blocks, block * bits / 8], scales [n * blocks], zero points.
  const size_t row_bytes = static_cast<size_t>(kp) * bits / 8;
  const size_t zp_stride = bits == 4 ? static_cast<size_t>(blocks + 1) / 2 : blocks;
  std::vector<uint8_t> data(static_cast<size_t>(n) * row_bytes), zp(static_cast<size_t>(n) * zp_stride);
  std::vector<float> scales(static_cast<size_t>(n) * blocks);
  for (auto &v : data) v = static_cast<uint8_t>(Next(state));
  for (auto &v : zp) v = static_cast<uint8_t>(Next(state));
  for (auto &v : scales) v = 0.001f + 0.02f * (Uniform(state) + 1.0f);
  auto q_of = [&](int j, int kk) -> int {
    const uint8_t *r = data.data() + static_cast<size_t>(j) * row_bytes;
    return bits == 4 ? (r[kk / 2] >> (4 * (kk & 1))) & 0x0F : r[kk];
  };
  auto zp_of = [&](int j, int b) -> int {
    const uint8_t *z = zp.data() + static_cast<size_t>(j) * zp_stride;
    return bits == 4 ? (z[b / 2] >> (4 * (b & 1))) & 0x0F : z[b];
  };
  // Activations with a different magnitude per row and block; the runtime's int8 quantisation reproduced.
  std::vector<float> x(static_cast<size_t>(kRows) * k), xs(static_cast<size_t>(kRows) * blocks);
  std::vector<int> xq(static_cast<size_t>(kRows) * k);
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < blocks; ++b) {
      const float gain = std::ldexp(1.0f, static_cast<int>(Next(state) % 9) - 4);
      for (int kk = b * block; kk < k && kk < (b + 1) * block; ++kk) x[r * k + kk] = gain * Uniform(state);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < blocks; ++b) {
      float amax = 0.0f;
      for (int kk = b * block; kk < k && kk < (b + 1) * block; ++kk) amax = std::fmax(amax, std::fabs(x[r * k + kk]));
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      for (int kk = b * block; kk < k && kk < (b + 1) * block; ++kk) {
        const float scaled = x[r * k + kk] * inv;
        xq[r * k + kk] = static_cast<int>(std::nearbyint(scaled));
      }
      xs[r * blocks + b] = amax / 127.0f;
    }
  }
  // The kernels' float steps per block b: T1 = float(isum) * (ws * xs), T2 = (ws * zp) * (xs * sum(xq)), acc += T1,
  // acc -= T2; each rounding errs by at most 2^-24 of its result, which bounds their total error (`rounding`).
  const double unit = std::ldexp(1.0, -24);
  Reference ref;
  ref.quantized.assign(static_cast<size_t>(kRows) * n, 0.0);
  ref.rounding = ref.exact = ref.x_bound = ref.quantized;
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < n; ++j) {
      double acc = 0, err = 0, yf = 0, xb = 0;
      for (int b = 0; b < blocks; ++b) {
        const double ws = scales[static_cast<size_t>(j) * blocks + b], s = xs[r * blocks + b];
        const int z = zp_of(j, b);
        long long isum = 0, xsum = 0;
        for (int kk = b * block; kk < k && kk < (b + 1) * block; ++kk) {
          const int q = q_of(j, kk);
          isum += static_cast<long long>(q) * xq[r * k + kk];
          xsum += xq[r * k + kk];
          const double w = (q - z) * ws;
          yf += w * x[r * k + kk];
          xb += std::fabs(w) * s * 0.5;
        }
        const double t1 = static_cast<double>(isum) * ws * s, t2 = ws * z * s * static_cast<double>(xsum);
        err += unit * (std::fabs(t1) + std::fabs(acc + t1) + std::fabs(acc + t1 - t2) + 2.0 * std::fabs(t2));
        acc += t1 - t2;
      }
      ref.quantized[r * n + j] = acc;
      ref.rounding[r * n + j] = err;
      ref.exact[r * n + j] = yf;
      ref.x_bound[r * n + j] = xb;
    }
  }

  const QuantLinear layer(n, k, bits, block, data.data(), scales.data(), zp.data());
  const int ldy = n + 5;
  std::vector<float> y0(static_cast<size_t>(kRows) * ldy), y(y0.size()), first(y0.size());
  for (auto &v : y0) v = Uniform(state);
  std::vector<uint8_t> scratch;
  bool have_first = false;
  for (const quant::Kernels &kern : kernels) {
    for (int pi = 0; pi < 2; ++pi) {
      for (int accumulate = 0; accumulate < 2; ++accumulate) {
        for (int rows = 1; rows <= kRows; ++rows) {
          for (int r = 0; r < kRows; ++r) {
            for (int j = 0; j < ldy; ++j) y[r * ldy + j] = accumulate && j < n && r < rows ? y0[r * ldy + j] : kSentinel;
          }
          layer.Run(x.data(), rows, y.data(), ldy, accumulate != 0, kern, *pools[pi], scratch);
          bool close_q = true, close_f = true, untouched = true, same = true;
          int nonzero = 0;
          for (int r = 0; r < kRows; ++r) {
            for (int j = 0; j < ldy; ++j) {
              const float got = y[r * ldy + j];
              if (r >= rows || j >= n) {
                untouched = untouched && std::memcmp(&got, &kSentinel, sizeof got) == 0;
                continue;
              }
              const double base = accumulate ? y0[r * ldy + j] : 0.0;
              const double v = got - base;
              nonzero += v != 0.0;
              const double tol = 2.0 * ref.rounding[r * n + j] + 2.0 * unit * (std::fabs(base) + std::fabs(got));
              close_q = close_q && std::fabs(v - ref.quantized[r * n + j]) <= tol;
              close_f = close_f && std::fabs(v - ref.exact[r * n + j]) <= ref.x_bound[r * n + j] * 1.0001 + tol;
              // The same bits as the first kernel's y = for all rows (accumulate: y0 + those bits, in float).
              if (have_first) {
                const float want = accumulate ? y0[r * ldy + j] + first[r * ldy + j] : first[r * ldy + j];
                same = same && std::memcmp(&got, &want, sizeof got) == 0;
              }
            }
          }
          if (!have_first && rows == kRows && !accumulate) {  // The first kernel's y = for every row fixes the bits.
            first = y;
            have_first = true;
          }
          Check(close_q, "(a) differs from the double product with the same int8 activations", bits, block, n, k,
                kern.name, rows);
          Check(close_f, "(b) beyond the activation quantisation bound from the float product", bits, block, n, k,
                kern.name, rows);
          Check(untouched, "(d) wrote beyond column n or beyond the rows", bits, block, n, k, kern.name, rows);
          Check(nonzero > rows * n / 2, "(e) mostly zero outputs", bits, block, n, k, kern.name, rows);
          if (have_first) {
            Check(same, "(c) not the same bits as the first kernel with 1 thread", bits, block, n, k, kern.name, rows);
          }
          if (rows == kRows && !accumulate) {
            // (e) A one-step change of one weight of output 0 (at row 0's largest activation) must fail check (a).
            int bb = 0;
            for (int b = 1; b < blocks; ++b) bb = xs[b] > xs[bb] ? b : bb;
            int at = bb * block;
            for (int kk = at; kk < k && kk < (bb + 1) * block; ++kk) at = std::abs(xq[kk]) > std::abs(xq[at]) ? kk : at;
            const double step = scales[bb] * xq[at] * xs[bb];
            const double tol = 2.0 * ref.rounding[0];
            Check(std::fabs(y[0] - (ref.quantized[0] + step)) > tol, "(e) check (a) misses a one-step weight error",
                  bits, block, n, k, kern.name, rows);
          }
        }
      }
    }
  }
  // Rows 1..10 ran before the bits were fixed by the 11-row run: compare the first kernel's y = once more.
  for (int rows = 1; rows < kRows; ++rows) {
    std::fill(y.begin(), y.end(), kSentinel);
    layer.Run(x.data(), rows, y.data(), ldy, false, kernels[0], *pools[0], scratch);
    Check(std::memcmp(y.data(), first.data(), sizeof(float) * (static_cast<size_t>(rows - 1) * ldy + n)) == 0,
          "(c) not the same bits for fewer rows", bits, block, n, k, kernels[0].name, rows);
  }
}

}  // namespace

int main() {
  std::vector<quant::Kernels> kernels;
  for (const char *name : {"scalar", "avx2", "avx512vnni"}) {
    quant::Kernels kern;
    if (llasa_rt::QuantKernelsByName(name, &kern)) {
      kernels.push_back(kern);
    } else {
      std::printf("note: kernel %s is not available in this build or on this CPU: skipped\n", name);
    }
  }
  ThreadPool one(1), two(2);
  ThreadPool *pools[2] = {&one, &two};
  int cases = 0;
  for (int bits : {4, 8}) {
    for (int block : {32, 64, 128, 256}) {
      for (int n : {16, 37, 100, 1001}) {
        for (int k : {128, 200, 256, 2048}) {
          RunCase({bits, block, n, k}, kernels, pools);
          ++cases;
        }
      }
    }
  }
  std::printf("quant_linear_test: %d cases x %zu kernels\n", cases, kernels.size());
  std::printf(g_failures == 0 ? "quant_linear_test passed\n" : "quant_linear_test: %d failures\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
