// llasa-rt: options of the speech-row sampler and of the decode loop's length limits.
// Semantics follow Hugging Face transformers' logits processors, applied in generate()'s order:
// repetition penalty, END masking before min_new_tokens, then (sampling only) temperature, top-k, top-p, min-p.
#pragma once

#include <cstdint>

namespace llasa_rt {

struct SamplingOptions {
  double temperature = 1.0;         // Logits are divided by it before sampling; 0 = greedy (argmax). >= 0.
  int top_k = 0;                    // Keep rows whose logit >= the k-th largest (ties kept); 0 = off. >= 0.
  double top_p = 1.0;               // Nucleus: drop the least likely rows holding 1 - top_p of the mass. (0, 1].
  double min_p = 0.0;               // Drop rows whose probability < min_p * the largest probability. [0, 1].
  double repetition_penalty = 1.0;  // Rows already in the sequence: positive logits / it, negative * it. > 0.
  int min_new_tokens = 0;           // END is impossible until this many tokens were generated. >= 0.
  int max_new_tokens = 0;           // A candidate stops after this many tokens; 0 = when the context is full.
  uint64_t seed = 0;                // Seed of the counter-based RNG: a draw depends only on (seed, uid, step).

  // Throws std::invalid_argument naming the first option outside its valid range.
  void Validate() const;
};

}  // namespace llasa_rt
