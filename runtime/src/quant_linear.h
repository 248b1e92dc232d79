// llasa-rt (internal): weight-only quantised linear layers y = x W^T for the few rows of a decode step (one row per
// candidate), on the CPU. The weights come in ONNX Runtime's MatMulNBits layout (4 or 8 bits, block-wise along K,
// asymmetric with zero points) and are repacked once into the kernels' layout; activations are quantised per row
// and block to int8 (symmetric) at each call, and the products accumulate in int32 per block:
//
//   y[r, n] = sum_b  ws[n, b] * xs[r, b] * (sum_{k in b} q[n, k] * xq[r, k])  -  zp[n, b] * ws[n, b] * xs[r, b] *
//                    (sum_{k in b} xq[r, k])
//
// Packed layout: outputs in tiles of kTileN = 16; per tile, per block: the block's weights in chunks (4 bits: 64 bytes
// = 16 outputs x 8 consecutive k, byte 4j + t holds k0 + t of output j in its low nibble and k0 + 4 + t in its high
// nibble; 8 bits: 64 bytes = 16 outputs x 4 consecutive k, byte 4j + t = k0 + t of output j), then 16 scales ws and
// 16 products zp * ws (float32). One tile's whole K is one contiguous stream (read once per call for all rows).
// Kernels for AVX-512 VNNI, AVX2 and plain C++ live in quant_linear_{avx512,avx2,scalar}.cc; the one this CPU runs is
// picked at construction. Every kernel computes the same integer sums and scales them with the same float steps per
// block (s = ws * xs; acc = fma(float(isum), s, acc); acc = fma(-zw, xz, acc)), so all kernels return the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llasa_rt {

class ThreadPool;

namespace quant {

constexpr int kTileN = 16;  // Outputs per tile.
constexpr int kMaxRows = 8;  // Rows one kernel call handles (more rows: the caller loops).

// One call of a kernel: output tiles [tile0, tile1) of the rows [0, rows).
struct KernelArgs {
  const uint8_t *packed = nullptr;  // The packed weights (all tiles).
  size_t tile_bytes = 0;            // Bytes of one tile's stream.
  int blocks = 0;                   // Blocks along K.
  int block = 0;                    // K per block.
  int bits = 0;                     // 4 or 8.
  const int8_t *xq = nullptr;       // Quantised activations [rows, blocks * block] (zero beyond k).
  const float *xs = nullptr;        // Their scales [rows, blocks].
  const float *xz = nullptr;        // xs * (sum of the block's xq) [rows, blocks].
  int rows = 0;                     // 1 .. kMaxRows.
  float *y = nullptr;               // Output [rows, ldy]; columns [tile0 * 16, min(tile1 * 16, n)).
  int ldy = 0;
  int n = 0;             // Valid outputs (the last tile may be partly padding).
  bool accumulate = false;  // y += result instead of y = result.
};

using KernelFn = void (*)(const KernelArgs &args, int tile0, int tile1);
// Quantises x [rows, k] to xq [rows, blocks * block] (int8 per row and block, zero beyond k), xs [rows, blocks] (the
// scales) and xz [rows, blocks] (scale * sum of the block's xq); elementwise.h has the loop.
using QuantizeFn = void (*)(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz);
// out[i] = gate[i] * sigmoid(gate[i]) * up[i] for i < n.
using SiluMulFn = void (*)(const float *gate, const float *up, int n, float *out);

// The functions of one instruction set.
struct Kernels {
  const char *name = "scalar";   // "avx512vnni", "avx2" or "scalar".
  KernelFn matmul = nullptr;      // QuantLinear's product.
  QuantizeFn quantize = nullptr;  // Its activation quantisation.
  SiluMulFn silu_mul = nullptr;   // The MLP's gate.
};

void KernelScalar(const KernelArgs &args, int tile0, int tile1);
void QuantizeRowsScalar(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz);
void SiluMulScalar(const float *gate, const float *up, int n, float *out);
#ifdef LLASA_RT_QUANT_X86  // Set by CMakeLists.txt when it compiles the *_avx2.cc and *_avx512.cc files.
void KernelAvx2(const KernelArgs &args, int tile0, int tile1);
void KernelAvx512Vnni(const KernelArgs &args, int tile0, int tile1);
void QuantizeRowsAvx2(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz);
void SiluMulAvx2(const float *gate, const float *up, int n, float *out);
void QuantizeRowsAvx512(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz);
void SiluMulAvx512(const float *gate, const float *up, int n, float *out);
#endif

// Stores the result of one tile's rows (float accumulators [rows][16]) into y, honouring n and accumulate. Defined
// in quant_linear.cc (baseline code) so that no inline copy built for one instruction set serves another.
void StoreTile(const KernelArgs &a, int tile, const float *acc);

}  // namespace quant

// A weight W [n, k] in MatMulNBits form, repacked for the kernels.
class QuantLinear {
 public:
  // data uint8 [n, k / block, block * bits / 8]; scales float [n * k / block]; zero_points uint8 (4 bits: two per
  // byte, low nibble first, each row padded to a whole byte; 8 bits: one per block), with k / block rounded up
  // (MatMulNBits zero-pads the last block). block must be a multiple of 32. Throws std::invalid_argument otherwise.
  QuantLinear(int n, int k, int bits, int block, const uint8_t *data, const float *scales,
              const uint8_t *zero_points);

  int n() const { return n_; }
  int k() const { return k_; }
  int bits() const { return bits_; }
  size_t bytes() const { return packed_.size(); }

  // y [rows, ldy] (=|+=) x [rows, k] W^T for any rows >= 1, with `kernels` on `pool`'s threads. `scratch` holds the
  // quantised activations (grown as needed; reuse it between calls so that nothing is allocated per step).
  void Run(const float *x, int rows, float *y, int ldy, bool accumulate, const quant::Kernels &kernels,
           ThreadPool &pool, std::vector<uint8_t> &scratch) const;

 private:
  int n_, k_, bits_, block_, blocks_, tiles_;
  size_t tile_bytes_;
  std::vector<uint8_t> packed_;  // 64-byte aligned start inside (see data()).
  size_t offset_ = 0;            // Where the aligned data starts in packed_.
  const uint8_t *data() const { return packed_.data() + offset_; }
};

// The kernels called `name`: "avx512vnni", "avx2", "scalar", or "auto" = the best this CPU runs (AVX-512 VNNI, else
// AVX2 + FMA, else portable). Returns false (and leaves `out` alone) when this build or CPU cannot run them.
bool QuantKernelsByName(const char *name, quant::Kernels *out);

}  // namespace llasa_rt
