// llasa-rt: the element-wise loops of elementwise.h compiled for AVX-512 F + BW (called only on CPUs that report
// them).
#include "elementwise.h"
#include "quant_linear.h"

namespace llasa_rt {
namespace quant {

void QuantizeRowsAvx512(const float *x, int rows, int k, int blocks, int block, int8_t *xq, float *xs, float *xz) {
  QuantizeRowsLoop(x, rows, k, blocks, block, xq, xs, xz);
}

void SiluMulAvx512(const float *gate, const float *up, int n, float *out) { SiluMulLoop(gate, up, n, out); }

}  // namespace quant
}  // namespace llasa_rt
