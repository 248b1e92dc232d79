// llasa-rt: NativeLm, the decoder's forward pass for short steps (see native_lm.h).
#include "llasa_rt/native_lm.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant_linear.h"
#include "thread_pool.h"

namespace llasa_rt {

namespace {

std::string Int(long long v) { return std::to_string(v); }

struct Layer {
  std::vector<float> input_norm, post_norm;
  std::unique_ptr<QuantLinear> qkv, o, gate_up, down;
};

// x / sqrt(mean(x^2) + eps) * weight, in double for the sum (like ONNX Runtime's float accumulation, closely).
void RmsNorm(const float *x, const float *weight, int n, float eps, float *out) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}

// Non-interleaved rotary of one head in place: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).
void Rotate(float *x, const float *cos, const float *sin, int half) {
  for (int i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

std::unique_ptr<QuantLinear> Make(const QuantMatrix &m, int n, int k, const char *what) {
  if (m.n != n || m.k != k) {
    throw std::invalid_argument(std::string("NativeLm: ") + what + " is [" + Int(m.n) + ", " + Int(m.k) +
                                "], the config needs [" + Int(n) + ", " + Int(k) + "]");
  }
  return std::make_unique<QuantLinear>(m.n, m.k, m.bits, m.block, m.data, m.scales, m.zero_points);
}

}  // namespace

void NativeLmConfig::Validate() const {
  auto positive = [](int v, const char *name) {
    if (v < 1) throw std::invalid_argument(std::string("NativeLmConfig ") + name + " must be >= 1, got " + Int(v));
  };
  positive(num_layers, "num_layers");
  positive(hidden_size, "hidden_size");
  positive(num_heads, "num_heads");
  positive(num_kv_heads, "num_kv_heads");
  positive(head_dim, "head_dim");
  positive(intermediate_size, "intermediate_size");
  positive(head_rows, "head_rows");
  positive(max_positions, "max_positions");
  positive(threads, "threads");
  if (head_dim % 2) throw std::invalid_argument("NativeLmConfig head_dim must be even, got " + Int(head_dim));
  if (num_heads % num_kv_heads) {
    throw std::invalid_argument("NativeLmConfig num_heads (" + Int(num_heads) +
                                ") must be a multiple of num_kv_heads (" + Int(num_kv_heads) + ")");
  }
  if (!(rms_norm_eps > 0.0f)) throw std::invalid_argument("NativeLmConfig rms_norm_eps must be > 0");
  if (!QuantKernelsByName(kernel.c_str(), nullptr)) {
    throw std::invalid_argument("NativeLmConfig kernel '" + kernel +
                                "' is not one this build and CPU can run; use 'auto', 'avx512vnni', 'avx2' or "
                                "'scalar'");
  }
}

struct NativeLm::Impl {
  std::mutex run;  // Serialises Run (scratch, buffers and the attention object are shared by all calls).
  quant::Kernels kernels;
  ThreadPool pool;
  KvCache *cache = nullptr;               // The cache `attention` was made for.
  std::unique_ptr<Attention> attention;  // Remade when Run is given another cache.
  // Embedding (views).
  int vocab = 0, embed_bits = 0, embed_block = 0;
  const uint8_t *embed_data = nullptr;
  const float *embed_scales = nullptr;
  const uint8_t *embed_zp = nullptr;
  std::vector<float> cos, sin;
  std::vector<Layer> layers;
  std::vector<bool> layer_set;
  std::vector<float> final_norm;
  std::unique_ptr<QuantLinear> head;
  // Step buffers (grown, never shrunk).
  std::vector<float> residual, normed, qkv, q, k, v, attn, gate_up, act, last;
  std::vector<uint8_t> scratch;

  explicit Impl(const NativeLmConfig &c) : pool(c.threads, /*spin=*/true) {
    QuantKernelsByName(c.kernel.c_str(), &kernels);  // Validate() checked that it exists.
    layers.resize(c.num_layers);
    layer_set.assign(c.num_layers, false);
  }

  static void Grow(std::vector<float> &v, size_t n) {
    if (v.size() < n) v.resize(n);
  }
};

NativeLm::NativeLm(const NativeLmConfig &config) : config_(config) {
  config_.Validate();
  impl_ = std::make_unique<Impl>(config_);
}

NativeLm::~NativeLm() = default;

const char *NativeLm::kernel() const { return impl_->kernels.name; }

size_t NativeLm::weight_bytes() const {
  size_t total = impl_->head ? impl_->head->bytes() : 0;
  for (const Layer &l : impl_->layers) {
    for (const auto *m : {l.qkv.get(), l.o.get(), l.gate_up.get(), l.down.get()}) total += m ? m->bytes() : 0;
  }
  return total;
}

void NativeLm::SetEmbedding(int vocab, int bits, int block, const uint8_t *data, const float *scales,
                            const uint8_t *zero_points) {
  if (vocab < 1 || (bits != 4 && bits != 8) || block < 2 || config_.hidden_size % block) {
    throw std::invalid_argument("NativeLm::SetEmbedding: vocab " + Int(vocab) + ", bits " + Int(bits) + ", block " +
                                Int(block) + " (bits must be 4 or 8, block must divide hidden_size " +
                                Int(config_.hidden_size) + ")");
  }
  if (data == nullptr || scales == nullptr || zero_points == nullptr) {
    throw std::invalid_argument("NativeLm::SetEmbedding: null table, scale or zero-point data");
  }
  Impl &im = *impl_;
  im.vocab = vocab;
  im.embed_bits = bits;
  im.embed_block = block;
  im.embed_data = data;
  im.embed_scales = scales;
  im.embed_zp = zero_points;
}

void NativeLm::SetRotary(const float *cos, const float *sin) {
  if (cos == nullptr || sin == nullptr) throw std::invalid_argument("NativeLm::SetRotary: null table");
  const size_t n = static_cast<size_t>(config_.max_positions) * (config_.head_dim / 2);
  impl_->cos.assign(cos, cos + n);
  impl_->sin.assign(sin, sin + n);
}

void NativeLm::SetLayer(int layer, const float *input_norm, const QuantMatrix &qkv, const QuantMatrix &o,
                        const float *post_norm, const QuantMatrix &gate_up, const QuantMatrix &down) {
  const NativeLmConfig &c = config_;
  if (layer < 0 || layer >= c.num_layers) {
    throw std::out_of_range("NativeLm::SetLayer: layer " + Int(layer) + " outside [0, " + Int(c.num_layers) + ")");
  }
  if (input_norm == nullptr || post_norm == nullptr) {
    throw std::invalid_argument("NativeLm::SetLayer: null norm weight");
  }
  const int H = c.hidden_size, D = c.head_dim;
  Layer l;
  l.input_norm.assign(input_norm, input_norm + H);
  l.post_norm.assign(post_norm, post_norm + H);
  l.qkv = Make(qkv, (c.num_heads + 2 * c.num_kv_heads) * D, H, "q|k|v");
  l.o = Make(o, H, c.num_heads * D, "o_proj");
  l.gate_up = Make(gate_up, 2 * c.intermediate_size, H, "gate|up");
  l.down = Make(down, H, c.intermediate_size, "down_proj");
  impl_->layers[layer] = std::move(l);
  impl_->layer_set[layer] = true;
}

void NativeLm::SetHead(const float *final_norm, const QuantMatrix &head) {
  if (final_norm == nullptr) throw std::invalid_argument("NativeLm::SetHead: null norm weight");
  impl_->final_norm.assign(final_norm, final_norm + config_.hidden_size);
  impl_->head = Make(head, config_.head_rows, config_.hidden_size, "the head");
}

bool NativeLm::ready() const {
  const Impl &im = *impl_;
  if (im.embed_data == nullptr || im.cos.empty() || !im.head) return false;
  for (bool set : im.layer_set) {
    if (!set) return false;
  }
  return true;
}

void NativeLm::Run(KvCache &cache, const int64_t *input_ids, const int64_t *position_ids, int batch, int seq,
                   const int *slots,
                   const int *past_lens, int prefix_slot, int prefix_len, float *logits) {
  if (!ready()) {
    throw std::invalid_argument("NativeLm::Run: the weights are not all set (embedding, rotary, layers, head)");
  }
  if (batch < 1 || seq < 1) {
    throw std::invalid_argument("NativeLm::Run: batch and seq must be >= 1, got " + Int(batch) + ", " + Int(seq));
  }
  if (input_ids == nullptr || position_ids == nullptr || logits == nullptr) {
    throw std::invalid_argument("NativeLm::Run got a null pointer");
  }
  const NativeLmConfig &c = config_;
  Impl &im = *impl_;
  std::lock_guard<std::mutex> lock(im.run);
  const KvCacheConfig &kc = cache.config();
  if (kc.num_layers != c.num_layers || kc.num_kv_heads != c.num_kv_heads || kc.head_dim != c.head_dim) {
    throw std::invalid_argument("NativeLm::Run: the KvCache has " + Int(kc.num_layers) + " layers of " +
                                Int(kc.num_kv_heads) + " KV heads of " + Int(kc.head_dim) + " but the model has " +
                                Int(c.num_layers) + " / " + Int(c.num_kv_heads) + " / " + Int(c.head_dim));
  }
  if (im.cache != &cache) {  // Attention reads the cache's slots, length and dtype at each call.
    im.attention = std::make_unique<Attention>(cache, AttentionConfig{c.num_heads, c.num_kv_heads, c.head_dim,
                                                                      1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                                                                      c.threads},
                                               &im.pool);
    im.cache = &cache;
  }
  const int T = batch * seq, H = c.hidden_size, D = c.head_dim, half = D / 2;
  const int qw = c.num_heads * D, kw = c.num_kv_heads * D, I = c.intermediate_size;
  for (int t = 0; t < T; ++t) {
    if (input_ids[t] < 0 || input_ids[t] >= im.vocab) {
      throw std::out_of_range("NativeLm::Run: token id " + Int(input_ids[t]) + " outside [0, " + Int(im.vocab) + ")");
    }
    if (position_ids[t] < 0 || position_ids[t] >= c.max_positions) {
      throw std::out_of_range("NativeLm::Run: position " + Int(position_ids[t]) + " outside [0, " +
                              Int(c.max_positions) + ")");
    }
  }
  Impl::Grow(im.residual, static_cast<size_t>(T) * H);
  Impl::Grow(im.normed, static_cast<size_t>(T) * H);
  Impl::Grow(im.qkv, static_cast<size_t>(T) * (qw + 2 * kw));
  Impl::Grow(im.q, static_cast<size_t>(T) * qw);
  Impl::Grow(im.k, static_cast<size_t>(T) * kw);
  Impl::Grow(im.v, static_cast<size_t>(T) * kw);
  Impl::Grow(im.attn, static_cast<size_t>(T) * qw);
  Impl::Grow(im.gate_up, static_cast<size_t>(T) * 2 * I);
  Impl::Grow(im.act, static_cast<size_t>(T) * I);
  Impl::Grow(im.last, static_cast<size_t>(batch) * H);
  float *residual = im.residual.data(), *normed = im.normed.data();

  // Embedding: (q - zp) * scale per block of the row.
  const int eblocks = H / im.embed_block;
  const size_t row_bytes = static_cast<size_t>(H) * im.embed_bits / 8;
  const size_t zp_row = im.embed_bits == 4 ? static_cast<size_t>(eblocks + 1) / 2 : eblocks;
  for (int t = 0; t < T; ++t) {
    const size_t id = static_cast<size_t>(input_ids[t]);
    const uint8_t *row = im.embed_data + id * row_bytes;
    const float *scale = im.embed_scales + id * eblocks;
    const uint8_t *zp = im.embed_zp + id * zp_row;
    float *out = residual + static_cast<size_t>(t) * H;
    for (int b = 0; b < eblocks; ++b) {
      const float z = static_cast<float>(im.embed_bits == 4 ? (zp[b / 2] >> (4 * (b & 1))) & 0x0F : zp[b]);
      for (int i = b * im.embed_block; i < (b + 1) * im.embed_block; ++i) {
        const unsigned q = im.embed_bits == 4 ? (row[i / 2] >> (4 * (i & 1))) & 0x0F : row[i];
        out[i] = (static_cast<float>(q) - z) * scale[b];
      }
    }
  }

  for (int layer = 0; layer < c.num_layers; ++layer) {
    const Layer &l = im.layers[layer];
    for (int t = 0; t < T; ++t) {
      RmsNorm(residual + static_cast<size_t>(t) * H, l.input_norm.data(), H, c.rms_norm_eps,
              normed + static_cast<size_t>(t) * H);
    }
    l.qkv->Run(normed, T, im.qkv.data(), qw + 2 * kw, false, im.kernels, im.pool, im.scratch);
    for (int t = 0; t < T; ++t) {
      const float *src = im.qkv.data() + static_cast<size_t>(t) * (qw + 2 * kw);
      float *q = im.q.data() + static_cast<size_t>(t) * qw;
      float *k = im.k.data() + static_cast<size_t>(t) * kw;
      std::memcpy(q, src, qw * sizeof(float));
      std::memcpy(k, src + qw, kw * sizeof(float));
      std::memcpy(im.v.data() + static_cast<size_t>(t) * kw, src + qw + kw, kw * sizeof(float));
      const size_t pos = static_cast<size_t>(position_ids[t]) * half;
      const float *cs = im.cos.data() + pos, *sn = im.sin.data() + pos;
      for (int h = 0; h < c.num_heads; ++h) Rotate(q + h * D, cs, sn, half);
      for (int h = 0; h < c.num_kv_heads; ++h) Rotate(k + h * D, cs, sn, half);
    }
    im.attention->Run(layer, im.q.data(), im.k.data(), im.v.data(), batch, seq, slots, past_lens, prefix_slot,
                     prefix_len, im.attn.data());
    l.o->Run(im.attn.data(), T, residual, H, true, im.kernels, im.pool, im.scratch);
    for (int t = 0; t < T; ++t) {
      RmsNorm(residual + static_cast<size_t>(t) * H, l.post_norm.data(), H, c.rms_norm_eps,
              normed + static_cast<size_t>(t) * H);
    }
    l.gate_up->Run(normed, T, im.gate_up.data(), 2 * I, false, im.kernels, im.pool, im.scratch);
    for (int t = 0; t < T; ++t) {
      const float *gu = im.gate_up.data() + static_cast<size_t>(t) * 2 * I;
      im.kernels.silu_mul(gu, gu + I, I, im.act.data() + static_cast<size_t>(t) * I);
    }
    l.down->Run(im.act.data(), T, residual, H, true, im.kernels, im.pool, im.scratch);
  }
  for (int b = 0; b < batch; ++b) {
    RmsNorm(residual + (static_cast<size_t>(b) * seq + seq - 1) * H, im.final_norm.data(), H, c.rms_norm_eps,
            im.last.data() + static_cast<size_t>(b) * H);
  }
  im.head->Run(im.last.data(), batch, logits, c.head_rows, false, im.kernels, im.pool, im.scratch);
}

}  // namespace llasa_rt
