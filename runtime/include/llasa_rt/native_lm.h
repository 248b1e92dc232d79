// llasa-rt: a Llama decoder's forward pass in C++ over the weights of a quantised layered LM bundle, for decode
// steps (a few rows, one new token each: the live candidates) and prompts alike. It computes what the layered
// flavour's ONNX segment graphs compute (embedding, RMSNorm, q|k|v with rotary, attention over the KvCache with the
// shared prompt, o_proj, SiLU MLP, final norm, the 65,537-row head at the last position) with llasa-rt's own
// weight-only int4/int8 matrix kernels, which stream the weights once per group of up to 8 rows (AVX-512 VNNI, AVX2
// or portable, picked at run time). The KvCache slots are the ones the ONNX Runtime segments would use, so either
// can continue the other's sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "llasa_rt/attention.h"
#include "llasa_rt/kv_cache.h"

namespace llasa_rt {

// Shape of the decoder and how to run it.
struct NativeLmConfig {
  int num_layers = 0;           // Decoder layers.
  int hidden_size = 0;          // Width of the residual stream.
  int num_heads = 0;            // Query heads.
  int num_kv_heads = 0;         // Key/value heads (GQA).
  int head_dim = 0;             // Dimension of one head (even).
  int intermediate_size = 0;    // Width of the MLP.
  int head_rows = 0;            // Rows of the output head (logits per row).
  int max_positions = 0;        // Rows of the rotary tables (positions must stay below it).
  float rms_norm_eps = 1e-5f;   // RMSNorm epsilon.
  int threads = 1;              // Threads of the matrix products and of attention.
  std::string kernel = "auto";  // Matrix kernel: "auto", "avx512vnni", "avx2" or "scalar".

  // Throws std::invalid_argument naming the first field out of range.
  void Validate() const;
};

// One weight-only quantised matrix W [n, k] in ONNX Runtime's MatMulNBits layout (y = x W^T): data uint8
// [n, ceil(k / block), block * bits / 8] (the last block zero-padded; 4 bits: two per byte, low nibble first),
// scales float [n * ceil(k / block)],
// zero_points uint8 (4 bits: two per byte per row, each row padded to a whole byte; 8 bits: one per block). Views:
// NativeLm copies them into its own layout.
struct QuantMatrix {
  int n = 0;                              // Outputs.
  int k = 0;                              // Inputs.
  int bits = 0;                           // 4 or 8.
  int block = 0;                          // Inputs per quantisation block (a multiple of 32).
  const uint8_t *data = nullptr;          // Packed weights.
  const float *scales = nullptr;          // One per (output, block).
  const uint8_t *zero_points = nullptr;   // One per (output, block), packed like the weights.
};

class NativeLm {
 public:
  // Throws std::invalid_argument naming the first config field out of range.
  explicit NativeLm(const NativeLmConfig &config);
  ~NativeLm();
  NativeLm(const NativeLm &) = delete;
  NativeLm &operator=(const NativeLm &) = delete;

  const NativeLmConfig &config() const { return config_; }
  // The matrix kernel in use: "avx512vnni", "avx2" or "scalar".
  const char *kernel() const;
  // Bytes of the repacked weights held (the embedding table is not copied).
  size_t weight_bytes() const;

  // Token embeddings, block-quantised along the hidden size (GatherBlockQuantized layout): data uint8 [vocab,
  // hidden * bits / 8], scales float [vocab, hidden / block], zero_points uint8 [vocab, hidden / block * bits / 8].
  // Not copied: the arrays must outlive this object (a memory-mapped bundle file is fine).
  void SetEmbedding(int vocab, int bits, int block, const uint8_t *data, const float *scales,
                    const uint8_t *zero_points);
  // Rotary tables cos/sin [max_positions, head_dim / 2] (non-interleaved halves); copied.
  void SetRotary(const float *cos, const float *sin);
  // Layer `layer`: input RMSNorm weight [hidden], q|k|v [(heads + 2 kv_heads) * head_dim, hidden], o_proj [hidden,
  // heads * head_dim], post-attention RMSNorm weight [hidden], gate|up [2 * intermediate, hidden], down [hidden,
  // intermediate]; copied.
  void SetLayer(int layer, const float *input_norm, const QuantMatrix &qkv, const QuantMatrix &o,
                const float *post_norm, const QuantMatrix &gate_up, const QuantMatrix &down);
  // Final RMSNorm weight [hidden] and the head [head_rows, hidden]; copied.
  void SetHead(const float *final_norm, const QuantMatrix &head);
  // True once the embedding, rotary tables, every layer and the head are set.
  bool ready() const;

  // One step over `cache` (float32 or float16 K/V of this model's shape; the same weights serve any number of caches
  // in turn): `batch` rows x `seq` new tokens, input_ids / position_ids [batch, seq]; row b uses KV slot slots[b]
  // holding past_lens[b] positions, positions [0, prefix_len) read from slot prefix_slot (a prompt shared by all
  // rows; prefix_len 0 = nothing shared). Stores the new K/V, writes logits [batch, head_rows] of each row's last
  // position. Throws std::invalid_argument / std::out_of_range on bad arguments or when not ready(); nothing is
  // written to the cache then. Allocates nothing after the first call of a shape. Calls from several threads (e.g.
  // backends over different caches) are serialised.
  void Run(KvCache &cache, const int64_t *input_ids, const int64_t *position_ids, int batch, int seq, const int *slots,
           const int *past_lens, int prefix_slot, int prefix_len, float *logits);

 private:
  struct Impl;
  NativeLmConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llasa_rt
