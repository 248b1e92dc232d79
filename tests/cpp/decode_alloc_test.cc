// Counts heap allocations made by the decode loop's steps. Global operator new is replaced in this test binary;
// the callback (called after every token) notes the count when it is entered and left, so allocations made by the
// callback itself (fork copies tokens) are excluded and everything else between two calls is the core's own.
// Exit status 0 when every step ran (4 candidates x 1,000 tokens) and the decode steps made no allocation at all,
// 1 otherwise. A ctest test (tests/cpp/CMakeLists.txt), built and run by tests/test_runtime_memory.py.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

#include "llasa_rt/generator.h"

#include "alloc_counter.h"

namespace {

using namespace llasa_rt;

// Writes K/V that depend on (token, position) and logits that depend on the slot's cached keys, from a fixed
// noise table (cheap, and every row is a real function of the KV it reads). END is impossible so that the run
// lasts every step.
class NoiseBackend : public Backend {
 public:
  NoiseBackend(KvCache &cache, StepBuffers &buffers) : Backend(cache, buffers), noise_(2 * buffers.rows()) {
    uint64_t state = 12345;
    for (float &v : noise_) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      v = static_cast<float>((state >> 40) % 10000) / 1000.0f;
    }
  }

  void Forward(const int64_t *input_ids, int batch, int seq_len, int past_len, float *logits) override {
    const KvCacheConfig &c = cache().config();
    const int rows = buffers().rows();
    for (int b = 0; b < batch; ++b) {
      float feature = 0.0f;
      for (int layer = 0; layer < c.num_layers; ++layer) {
        float *k = static_cast<float *>(cache().Key(layer));
        float *v = static_cast<float *>(cache().Value(layer));
        for (int h = 0; h < c.num_kv_heads; ++h) {
          float *k_head = k + ((static_cast<size_t>(b) * c.num_kv_heads + h) * c.max_seq_len) * c.head_dim;
          float *v_head = v + ((static_cast<size_t>(b) * c.num_kv_heads + h) * c.max_seq_len) * c.head_dim;
          for (int j = 0; j < seq_len; ++j) {
            const int pos = past_len + j;
            for (int d = 0; d < c.head_dim; ++d) {
              k_head[pos * c.head_dim + d] = std::sin(0.001f * input_ids[b * seq_len + j] + 0.1f * pos + d);
              v_head[pos * c.head_dim + d] = -k_head[pos * c.head_dim + d];
            }
          }
          for (int pos = 0; pos < past_len + seq_len; ++pos) feature += k_head[pos * c.head_dim];
        }
      }
      const int offset = static_cast<int>(std::fabs(feature) * 1000.0f) % rows;
      float *out = logits + static_cast<size_t>(b) * rows;
      for (int r = 0; r < rows; ++r) out[r] = noise_[static_cast<size_t>(r + offset)];
      out[rows - 1] = -std::numeric_limits<float>::infinity();
    }
  }

 private:
  std::vector<float> noise_;
};

}  // namespace

int main() {
  const int prompt_len = 20, steps = 1000, slots = 4;
  KvCacheConfig config;
  config.num_layers = 2;
  config.num_kv_heads = 2;
  config.head_dim = 8;
  config.slots = slots;
  config.max_seq_len = prompt_len + steps;
  KvCache cache(config);
  // Llasa's token layout, as a bundle's manifest gives it to the core (python/llasa_rt/layout.py).
  GeneratorConfig generator_config;
  generator_config.speech_token_base = 128264;
  generator_config.num_speech_tokens = 65536;
  generator_config.end_token_id = 128261;
  generator_config.sampler_threads = 2;
  StepBuffers buffers(cache, generator_config.num_speech_tokens + 1);
  NoiseBackend backend(cache, buffers);
  Generator generator(backend, generator_config);

  std::vector<int64_t> prompt;
  for (int i = 0; i < prompt_len; ++i) prompt.push_back(i % 3 == 0 ? generator_config.speech_token_base + 7 * i : 1000 + i);
  SamplingOptions options;
  options.temperature = 0.9;
  options.top_k = 100;
  options.top_p = 0.9;
  options.repetition_penalty = 1.1;
  options.max_new_tokens = steps;
  options.seed = 7;

  long long left_previous = -1, during_steps = 0, calls = 0;
  int last_step = 0;
  auto callback = [&](GenerationController &controller) {
    const long long entered = g_allocations.load();
    if (left_previous >= 0) during_steps += entered - left_previous;
    ++calls;
    last_step = controller.step();
    // Called after tokens 1..999 and once at the end (after token 1000 every candidate has finished).
    // Exercise compaction and forking mid-run; their own allocations are not counted.
    if (controller.step() == 300) controller.Prune(1);
    if (controller.step() == 600) controller.Fork(controller.LiveUids().front());
    left_previous = g_allocations.load();
  };
  const GenerationResult result = generator.Generate(prompt, options, slots, callback, 1);

  long long tokens = 0;
  for (const Candidate &c : result.candidates) tokens += static_cast<long long>(c.tokens.size());
  std::printf("callbacks=%lld last_step=%d candidates=%zu tokens=%lld allocations_during_decode_steps=%lld\n", calls,
              last_step, result.candidates.size(), tokens, during_steps);
  const bool ran_every_step = calls == steps && last_step == steps && result.candidates.size() == 4 &&
                              tokens == static_cast<long long>(slots) * steps;
  if (!ran_every_step) {
    std::printf("FAIL: the run did not last %d steps\n", steps);
    return 1;
  }
  if (during_steps != 0) {
    std::printf("FAIL: the decode steps allocated %lld times\n", during_steps);
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
