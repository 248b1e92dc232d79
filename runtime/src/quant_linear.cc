// llasa-rt: QuantLinear (repacking MatMulNBits weights, quantising activations, splitting the work) and the
// portable kernel.
#include "quant_linear.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "elementwise.h"
#include "thread_pool.h"

namespace llasa_rt {

namespace {

std::string Int(long long v) { return std::to_string(v); }

size_t Align64(size_t n) { return (n + 63) / 64 * 64; }

// Bytes of one block of one tile's weights.
size_t BlockWeightBytes(int bits, int block) { return static_cast<size_t>(quant::kTileN) * block * bits / 8; }

}  // namespace

QuantLinear::QuantLinear(int n, int k, int bits, int block, const uint8_t *data, const float *scales,
                         const uint8_t *zero_points)
    : n_(n), k_(k), bits_(bits), block_(block) {
  if (n < 1 || k < 1) throw std::invalid_argument("QuantLinear: n and k must be >= 1, got " + Int(n) + ", " + Int(k));
  if (bits != 4 && bits != 8) throw std::invalid_argument("QuantLinear: bits must be 4 or 8, got " + Int(bits));
  if (block < 32 || block % 32 != 0) {
    throw std::invalid_argument("QuantLinear: block must be a multiple of 32, got " + Int(block));
  }
  if (data == nullptr || scales == nullptr || zero_points == nullptr) {
    throw std::invalid_argument("QuantLinear: null weight, scale or zero-point data");
  }
  blocks_ = (k + block - 1) / block;  // The last block is zero-padded when block does not divide k.
  tiles_ = (n + quant::kTileN - 1) / quant::kTileN;
  const size_t wbytes = BlockWeightBytes(bits, block);
  tile_bytes_ = static_cast<size_t>(blocks_) * (wbytes + 2 * quant::kTileN * sizeof(float));
  packed_.assign(tile_bytes_ * tiles_ + 64, 0);
  offset_ = (64 - reinterpret_cast<uintptr_t>(packed_.data()) % 64) % 64;
  uint8_t *out = packed_.data() + offset_;
  const size_t row_bytes = static_cast<size_t>(blocks_) * block * bits / 8;  // One output's packed weights.
  const size_t zp_stride = bits == 4 ? static_cast<size_t>(blocks_ + 1) / 2 : blocks_;
  auto q_of = [&](int row, int kk) -> unsigned {  // The stored (unsigned) weight of output row, input kk.
    const uint8_t *r = data + static_cast<size_t>(row) * row_bytes;
    return bits == 4 ? (r[kk / 2] >> (4 * (kk & 1))) & 0x0F : r[kk];
  };
  auto zp_of = [&](int row, int b) -> unsigned {
    const uint8_t *z = zero_points + static_cast<size_t>(row) * zp_stride;
    return bits == 4 ? (z[b / 2] >> (4 * (b & 1))) & 0x0F : z[b];
  };
  for (int t = 0; t < tiles_; ++t) {
    uint8_t *p = out + tile_bytes_ * t;
    for (int b = 0; b < blocks_; ++b) {
      const int k0 = b * block;
      if (bits == 4) {
        for (int c = 0; c < block / 8; ++c) {
          for (int j = 0; j < quant::kTileN; ++j) {
            const int row = t * quant::kTileN + j;
            for (int s = 0; s < 4; ++s) {
              const int kk = k0 + c * 8 + s;
              p[c * 64 + 4 * j + s] = row < n ? static_cast<uint8_t>(q_of(row, kk) | (q_of(row, kk + 4) << 4)) : 0;
            }
          }
        }
      } else {
        for (int c = 0; c < block / 4; ++c) {
          for (int j = 0; j < quant::kTileN; ++j) {
            const int row = t * quant::kTileN + j;
            for (int s = 0; s < 4; ++s) {
              p[c * 64 + 4 * j + s] = row < n ? static_cast<uint8_t>(q_of(row, k0 + c * 4 + s)) : 0;
            }
          }
        }
      }
      p += wbytes;
      float ws[quant::kTileN], zw[quant::kTileN];
      for (int j = 0; j < quant::kTileN; ++j) {
        const int row = t * quant::kTileN + j;
        ws[j] = row < n ? scales[static_cast<size_t>(row) * blocks_ + b] : 0.0f;
        zw[j] = row < n ? ws[j] * static_cast<float>(zp_of(row, b)) : 0.0f;
      }
      std::memcpy(p, ws, sizeof(ws));
      std::memcpy(p + sizeof(ws), zw, sizeof(zw));
      p += sizeof(ws) + sizeof(zw);
    }
  }
}

namespace {

struct RunContext {
  quant::KernelArgs args;
  quant::KernelFn kernel;
  int row_groups;
  int tiles;
  int tiles_per_task;
  int tasks_per_group;
  int rows;
  size_t x_stride;  // Elements between rows in xq (k padded to whole blocks).
};

}  // namespace

void QuantLinear::Run(const float *x, int rows, float *y, int ldy, bool accumulate, const quant::Kernels &kernels,
                      ThreadPool &pool, std::vector<uint8_t> &scratch) const {
  if (rows < 1) throw std::invalid_argument("QuantLinear::Run: rows must be >= 1, got " + Int(rows));
  if (x == nullptr || y == nullptr) throw std::invalid_argument("QuantLinear::Run: null input or output");
  if (ldy < n_) throw std::invalid_argument("QuantLinear::Run: ldy " + Int(ldy) + " < n " + Int(n_));
  // 1. Activations: int8 per row and block, symmetric, round to nearest.
  const size_t kp = static_cast<size_t>(blocks_) * block_;  // k padded to whole blocks (zeros beyond k).
  const size_t q_bytes = Align64(static_cast<size_t>(rows) * kp);
  const size_t f_bytes = Align64(static_cast<size_t>(rows) * blocks_ * sizeof(float));
  if (scratch.size() < q_bytes + 2 * f_bytes + 64) scratch.resize(q_bytes + 2 * f_bytes + 64);
  uint8_t *base = scratch.data() + (64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64;
  int8_t *xq = reinterpret_cast<int8_t *>(base);
  float *xs = reinterpret_cast<float *>(base + q_bytes);
  float *xz = reinterpret_cast<float *>(base + q_bytes + f_bytes);
  kernels.quantize(x, rows, k_, blocks_, block_, xq, xs, xz);
  // 2. Tasks: (group of up to kMaxRows rows) x (run of tiles); every output is written by exactly one task.
  RunContext c;
  c.args.packed = data();
  c.args.tile_bytes = tile_bytes_;
  c.args.blocks = blocks_;
  c.args.block = block_;
  c.args.bits = bits_;
  c.args.xq = xq;
  c.args.xs = xs;
  c.args.xz = xz;
  c.args.y = y;
  c.args.ldy = ldy;
  c.args.n = n_;
  c.args.accumulate = accumulate;
  c.kernel = kernels.matmul;
  c.rows = rows;
  c.x_stride = kp;
  c.row_groups = (rows + quant::kMaxRows - 1) / quant::kMaxRows;
  c.tiles = tiles_;
  const int want = pool.size() * 4;  // Several tasks per thread keep the threads evenly busy.
  c.tiles_per_task = tiles_ / want > 1 ? tiles_ / want : 1;
  c.tasks_per_group = (tiles_ + c.tiles_per_task - 1) / c.tiles_per_task;
  pool.Run(
      c.row_groups * c.tasks_per_group,
      [](void *context, int task, int) {
        const RunContext &c = *static_cast<const RunContext *>(context);
        const int group = task / c.tasks_per_group;
        const int t0 = (task % c.tasks_per_group) * c.tiles_per_task;
        const int t1 = t0 + c.tiles_per_task < c.tiles ? t0 + c.tiles_per_task : c.tiles;
        quant::KernelArgs a = c.args;
        const int r0 = group * quant::kMaxRows;
        a.rows = c.rows - r0 < quant::kMaxRows ? c.rows - r0 : quant::kMaxRows;
        a.xq += static_cast<size_t>(r0) * c.x_stride;
        a.xs += static_cast<size_t>(r0) * a.blocks;
        a.xz += static_cast<size_t>(r0) * a.blocks;
        a.y += static_cast<size_t>(r0) * a.ldy;
        c.kernel(a, t0, t1);
      },
      &c);
}

namespace quant {

void StoreTile(const KernelArgs &a, int tile, const float *acc) {
  const int c0 = tile * kTileN;
  const int width = a.n - c0 < kTileN ? a.n - c0 : kTileN;
  for (int r = 0; r < a.rows; ++r) {
    float *dst = a.y + static_cast<size_t>(r) * a.ldy + c0;
    const float *src = acc + r * kTileN;
    if (a.accumulate) {
      for (int j = 0; j < width; ++j) dst[j] += src[j];
    } else {
      for (int j = 0; j < width; ++j) dst[j] = src[j];
    }
  }
}

void KernelScalar(const KernelArgs &a, int tile0, int tile1) {
  const size_t wbytes = static_cast<size_t>(kTileN) * a.block * a.bits / 8;
  const size_t K = static_cast<size_t>(a.blocks) * a.block;
  float acc[kMaxRows * kTileN];
  for (int t = tile0; t < tile1; ++t) {
    const uint8_t *p = a.packed + a.tile_bytes * t;
    std::memset(acc, 0, sizeof(acc));
    for (int b = 0; b < a.blocks; ++b) {
      float ws[kTileN], zw[kTileN];
      std::memcpy(ws, p + wbytes, sizeof(ws));
      std::memcpy(zw, p + wbytes + sizeof(ws), sizeof(zw));
      for (int r = 0; r < a.rows; ++r) {
        const int8_t *x = a.xq + r * K + static_cast<size_t>(b) * a.block;
        int32_t isum[kTileN] = {0};
        if (a.bits == 4) {
          for (int c = 0; c < a.block / 8; ++c) {
            const uint8_t *chunk = p + c * 64;
            for (int j = 0; j < kTileN; ++j) {
              for (int s = 0; s < 4; ++s) {
                const uint8_t v = chunk[4 * j + s];
                isum[j] += (v & 0x0F) * x[c * 8 + s] + (v >> 4) * x[c * 8 + 4 + s];
              }
            }
          }
        } else {
          for (int c = 0; c < a.block / 4; ++c) {
            const uint8_t *chunk = p + c * 64;
            for (int j = 0; j < kTileN; ++j) {
              for (int s = 0; s < 4; ++s) isum[j] += chunk[4 * j + s] * x[c * 4 + s];
            }
          }
        }
        const float xs = a.xs[static_cast<size_t>(r) * a.blocks + b];
        const float xz = a.xz[static_cast<size_t>(r) * a.blocks + b];
        // The same rounding steps as the SIMD kernels (scale product, then two fused multiply-adds), so that every
        // kernel returns the same bits.
        for (int j = 0; j < kTileN; ++j) {
          const float scale = ws[j] * xs;
          const float v = std::fma(static_cast<float>(isum[j]), scale, acc[r * kTileN + j]);
          acc[r * kTileN + j] = std::fma(-zw[j], xz, v);
        }
      }
      p += wbytes + 2 * kTileN * sizeof(float);
    }
    StoreTile(a, t, acc);
  }
}

void QuantizeRowsScalar(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz) {
  QuantizeRowsLoop(x, rows, k, blocks, block, xq, xs, xz);
}

void SiluMulScalar(const float *gate, const float *up, int n, float *out) { SiluMulLoop(gate, up, n, out); }

}  // namespace quant

bool QuantKernelsByName(const char *name, quant::Kernels *out) {
  const std::string n = name ? name : "auto";
  quant::Kernels k;
#ifdef LLASA_RT_QUANT_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vnni");
  if ((n == "auto" || n == "avx512vnni") && vnni) {
    k = {"avx512vnni", quant::KernelAvx512Vnni, quant::QuantizeRowsAvx512, quant::SiluMulAvx512};
  } else if ((n == "auto" || n == "avx2") && avx2) {
    k = {"avx2", quant::KernelAvx2, quant::QuantizeRowsAvx2, quant::SiluMulAvx2};
  } else if (n == "auto" || n == "scalar") {
    k = {"scalar", quant::KernelScalar, quant::QuantizeRowsScalar, quant::SiluMulScalar};
  }
#else
  if (n == "auto" || n == "scalar") {
    k = {"scalar", quant::KernelScalar, quant::QuantizeRowsScalar, quant::SiluMulScalar};
  }
#endif
  if (k.matmul == nullptr) return false;
  if (out) *out = k;
  return true;
}

}  // namespace llasa_rt
