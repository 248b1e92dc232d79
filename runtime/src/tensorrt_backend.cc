// llasa-rt: the TensorRT backend (see tensorrt_backend.h). Written to the TensorRT 10 C++ API (name-based tensors,
// enqueueV3, one execution context per optimisation profile); never compiled or run against TensorRT here.
#include "llasa_rt/tensorrt_backend.h"

#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_slots.h"
#include "device_step.h"

namespace llasa_rt {

namespace {

constexpr int kPrefillProfile = 0;  // build-engine's profile order (engines/profiles.py)
constexpr int kDecodeProfile = 1;

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char *message) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "llasa-rt: TensorRT: %s\n", message);
  }
};

Logger &TheLogger() {
  static Logger logger;
  return logger;
}

std::string Past(int layer, const char *kind) { return "past_key_values." + std::to_string(layer) + "." + kind; }
std::string Present(int layer, const char *kind) { return "present." + std::to_string(layer) + "." + kind; }

nvinfer1::Dims MakeDims(std::initializer_list<int64_t> values) {
  nvinfer1::Dims dims{};
  dims.nbDims = static_cast<int32_t>(values.size());
  int i = 0;
  for (int64_t v : values) dims.d[i++] = v;
  return dims;
}

}  // namespace

void TensorRtOptions::Validate() const {
  if (max_batch < 1) throw std::invalid_argument("TensorRtOptions max_batch must be >= 1");
  if (graph_bucket < 1) throw std::invalid_argument("TensorRtOptions graph_bucket must be >= 1");
  if (device < 0) throw std::invalid_argument("TensorRtOptions device must be >= 0");
}

struct TensorRtEngine::Impl {
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  int device = 0;
};

TensorRtEngine::TensorRtEngine(const std::string &plan, int device) : impl_(std::make_unique<Impl>()) {
  CudaCheck(cudaSetDevice(device), "cudaSetDevice");
  impl_->device = device;
  impl_->runtime.reset(nvinfer1::createInferRuntime(TheLogger()));
  if (!impl_->runtime) throw std::runtime_error("TensorRT: createInferRuntime failed");
  impl_->engine.reset(impl_->runtime->deserializeCudaEngine(plan.data(), plan.size()));
  if (!impl_->engine) {
    throw std::runtime_error("TensorRT cannot deserialise the plan (built by another TensorRT version or for "
                             "another GPU?); rebuild it here with `llasa-rt build-engine`");
  }
  if (impl_->engine->getNbOptimizationProfiles() != 2) {
    throw std::runtime_error("the plan has " + std::to_string(impl_->engine->getNbOptimizationProfiles()) +
                             " optimisation profiles, not llasa-rt's two (prefill, decode); rebuild it with "
                             "`llasa-rt build-engine`");
  }
}

TensorRtEngine::~TensorRtEngine() = default;

struct TensorRtBackend::Impl {
  KvCache &cache;
  TensorRtEngine::Impl &engine;
  TensorRtOptions options;
  KvCacheConfig config;
  int rows = 0;
  CudaStream stream;
  DeviceKvSlots slots;
  std::unique_ptr<nvinfer1::IExecutionContext> prefill;
  std::unique_ptr<nvinfer1::IExecutionContext> decode;
  DeviceBuffer ids, positions, mask, logits;
  std::vector<DeviceBuffer> present;  // per layer K, V: [max(max_batch, capacity) * kv_heads * head_dim] elements
  std::vector<int64_t> host_mask;     // the portable mask built on the host, [slots * (max_seq_len + 1)]
  std::vector<int> past_lens;         // ForwardRows: past length of each row
  CudaGraphCache graphs;
  long long graph_launches = 0;

  Impl(KvCache &c, TensorRtEngine &e, const TensorRtOptions &o, int logit_rows)
      : cache(c), engine(e.impl()), options(o), config(c.config()), rows(logit_rows),
        slots(c.config(), stream.get()) {}

  void CheckPlan() const {
    const nvinfer1::ICudaEngine &plan = *engine.engine;
    const nvinfer1::DataType kv = config.dtype == KvDType::kFloat16 ? nvinfer1::DataType::kHALF
                                                                    : nvinfer1::DataType::kFLOAT;
    for (int layer = 0; layer < config.num_layers; ++layer) {
      const std::string name = Past(layer, "key");
      if (plan.getTensorIOMode(name.c_str()) != nvinfer1::TensorIOMode::kINPUT) {
        throw std::invalid_argument("the plan has no input " + name + ": it was not built from a portable graph of "
                                    "this model; rebuild it with `llasa-rt build-engine`");
      }
      if (plan.getTensorDataType(name.c_str()) != kv) {
        throw std::invalid_argument("the plan's KV type differs from the bundle's model.kv_dtype (" +
                                    std::string(KvDTypeName(config.dtype)) + "); rebuild it");
      }
    }
    const nvinfer1::Dims kv_max =
        plan.getProfileShape(Past(0, "key").c_str(), kDecodeProfile, nvinfer1::OptProfileSelector::kMAX);
    if (kv_max.nbDims != 4 || kv_max.d[1] != config.num_kv_heads || kv_max.d[2] != config.max_seq_len ||
        kv_max.d[3] != config.head_dim) {
      throw std::invalid_argument("the plan's KV inputs do not have the cache's shape [*, " +
                                  std::to_string(config.num_kv_heads) + ", " + std::to_string(config.max_seq_len) +
                                  ", " + std::to_string(config.head_dim) + "]; rebuild it for this bundle");
    }
    if (kv_max.d[0] < options.max_batch) {
      throw std::invalid_argument("the plan's decode profile serves " + std::to_string(kv_max.d[0]) +
                                  " rows, fewer than max_batch " + std::to_string(options.max_batch));
    }
  }

  nvinfer1::IExecutionContext &Context(int batch, int seq) {
    if (seq == 1 && batch <= options.max_batch) return *decode;
    if (batch == 1) return *prefill;
    throw std::invalid_argument("the TensorRT plan runs prefill of one row or decode of up to " +
                                std::to_string(options.max_batch) + " rows of one token, not " +
                                std::to_string(batch) + " rows of " + std::to_string(seq));
  }

  // Sets shapes and addresses of one step on `context` (KV of slots [first_slot, first_slot + batch)).
  void Bind(nvinfer1::IExecutionContext &context, int first_slot, int batch, int seq, int mask_len) {
    auto set_input = [&](const std::string &name, nvinfer1::Dims dims, void *address) {
      if (!context.setInputShape(name.c_str(), dims) || !context.setTensorAddress(name.c_str(), address)) {
        throw std::runtime_error("TensorRT refused the shape or address of " + name + " (batch " +
                                 std::to_string(batch) + ", " + std::to_string(seq) + " tokens, mask " +
                                 std::to_string(mask_len) + "): outside the plan's profiles; rebuild with a larger "
                                 "--max-batch / --max-context");
      }
    };
    set_input("input_ids", MakeDims({batch, seq}), ids.get());
    set_input("position_ids", MakeDims({batch, seq}), positions.get());
    set_input("attention_mask", MakeDims({batch, mask_len}), mask.get());
    const nvinfer1::Dims kv = MakeDims({batch, config.num_kv_heads, config.max_seq_len, config.head_dim});
    for (int layer = 0; layer < config.num_layers; ++layer) {
      for (int kind = 0; kind < 2; ++kind) {
        const char *k = kind == 0 ? "key" : "value";
        set_input(Past(layer, k), kv, slots.Slot(layer, kind, first_slot));
        context.setTensorAddress(Present(layer, k).c_str(), present[2 * layer + kind].get());
      }
    }
    context.setTensorAddress("logits", logits.get());
  }

  void Enqueue(nvinfer1::IExecutionContext &context) {
    if (!context.enqueueV3(stream.get())) throw std::runtime_error("TensorRT enqueueV3 failed (see its messages)");
  }

  void CopyIn(const int64_t *input_ids, const int64_t *position_ids, int count, int mask_elems) {
    cudaStream_t s = stream.get();
    CudaCheck(cudaMemcpyAsync(ids.get(), input_ids, count * sizeof(int64_t), cudaMemcpyHostToDevice, s), "ids copy");
    CudaCheck(cudaMemcpyAsync(positions.get(), position_ids, count * sizeof(int64_t), cudaMemcpyHostToDevice, s),
              "position ids copy");
    CudaCheck(cudaMemcpyAsync(mask.get(), host_mask.data(), mask_elems * sizeof(int64_t), cudaMemcpyHostToDevice, s),
              "mask copy");
  }

  void CopyOut(int batch, float *host_logits) {
    CudaCheck(cudaMemcpyAsync(host_logits, logits.get(), static_cast<size_t>(batch) * rows * sizeof(float),
                              cudaMemcpyDeviceToHost, stream.get()),
              "logits copy");
    stream.Synchronize();
  }
};

TensorRtBackend::TensorRtBackend(KvCache &cache, StepBuffers &buffers, TensorRtEngine &engine,
                                 const TensorRtOptions &options)
    : Backend(cache, buffers) {
  options.Validate();
  CudaCheck(cudaSetDevice(options.device), "cudaSetDevice");
  impl_ = std::make_unique<Impl>(cache, engine, options, buffers.rows());
  Impl &d = *impl_;
  d.CheckPlan();
  const KvCacheConfig &c = d.config;
  d.prefill.reset(d.engine.engine->createExecutionContext());
  d.decode.reset(d.engine.engine->createExecutionContext());
  if (!d.prefill || !d.decode) throw std::runtime_error("TensorRT cannot create an execution context (GPU memory?)");
  if (!d.prefill->setOptimizationProfileAsync(kPrefillProfile, d.stream.get()) ||
      !d.decode->setOptimizationProfileAsync(kDecodeProfile, d.stream.get())) {
    throw std::runtime_error("TensorRT cannot select the plan's prefill / decode profiles");
  }
  const size_t tokens = static_cast<size_t>(std::max(c.slots, 1)) * (c.max_seq_len + 1);
  d.ids = DeviceBuffer(tokens * sizeof(int64_t));
  d.positions = DeviceBuffer(tokens * sizeof(int64_t));
  d.mask = DeviceBuffer(tokens * sizeof(int64_t));
  d.logits = DeviceBuffer(static_cast<size_t>(c.slots) * d.rows * sizeof(float));
  const size_t new_positions = static_cast<size_t>(std::max(options.max_batch, c.max_seq_len));
  for (int i = 0; i < 2 * c.num_layers; ++i) {
    d.present.emplace_back(new_positions * c.num_kv_heads * c.head_dim * KvDTypeSize(c.dtype));
  }
  d.host_mask.assign(tokens, 1);
  d.past_lens.reserve(c.slots);
  d.stream.Synchronize();
  cache.SetSlotCopier(this);
}

TensorRtBackend::~TensorRtBackend() {
  if (cache().slot_copier() == this) cache().SetSlotCopier(nullptr);
}

void TensorRtBackend::Forward(const int64_t *input_ids, int batch, int seq_len, int past_len, float *logits) {
  Impl &d = *impl_;
  nvinfer1::IExecutionContext &context = d.Context(batch, seq_len);
  const bool graph = d.options.cuda_graphs && seq_len == 1;
  const int mask_len =
      graph ? DecodeMaskLength(past_len, d.options.graph_bucket, d.config.max_seq_len) : past_len + seq_len;
  FillUniformMask(batch, past_len, seq_len, mask_len, d.host_mask.data());
  d.CopyIn(input_ids, buffers().position_ids(), batch * seq_len, batch * mask_len);
  const std::pair<int, int> key{batch, mask_len};
  if (graph && d.graphs.Launch(key, d.stream.get())) {
    ++d.graph_launches;
  } else {
    d.Bind(context, 0, batch, seq_len, mask_len);
    d.Enqueue(context);  // the first run of a shape also does TensorRT's deferred set-up, outside any capture
    if (graph) {
      d.stream.Synchronize();
      d.graphs.Capture(key, d.stream.get(), [&] { d.Enqueue(context); });
    }
  }
  for (int layer = 0; layer < d.config.num_layers; ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      d.slots.WriteUniform(layer, kind, d.present[2 * layer + kind].get(), 0, batch, seq_len, past_len);
    }
  }
  d.CopyOut(batch, logits);
}

void TensorRtBackend::ForwardRows(const int64_t *input_ids, int first_slot, int batch, int seq_len, int mask_len,
                                  float *logits) {
  Impl &d = *impl_;
  nvinfer1::IExecutionContext &context = d.Context(batch, seq_len);
  const int portable_len =
      PortableMaskFromPadded(buffers().padded_mask(), batch, mask_len, seq_len, d.past_lens, d.host_mask.data());
  d.CopyIn(input_ids, buffers().position_ids(), batch * seq_len, batch * portable_len);
  d.Bind(context, first_slot, batch, seq_len, portable_len);
  d.Enqueue(context);
  for (int layer = 0; layer < d.config.num_layers; ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      d.slots.WriteRows(layer, kind, d.present[2 * layer + kind].get(), first_slot, d.past_lens, seq_len);
    }
  }
  d.CopyOut(batch, logits);
}

void TensorRtBackend::CopySlotRange(int src, int dst, int begin, int end) {
  impl_->slots.CopySlotRange(src, dst, begin, end);
}

long long TensorRtBackend::graph_launches() const { return impl_->graph_launches; }

}  // namespace llasa_rt
