// llasa-rt (internal): the checks every decode loop makes on a request, written once for Generator and Scheduler.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "llasa_rt/generator.h"
#include "llasa_rt/sampling_options.h"

namespace llasa_rt {

// Checks options, candidate count and prompt against a cache of `slots` x `max_seq_len`; fills `rows` with the
// prompt's tokens that are logits rows (speech codes and END: the repetition penalty's prompt history) and returns
// how many new tokens fit in the context. Throws std::invalid_argument naming the problem and the fix.
inline int CheckRequest(const GeneratorConfig &config, const std::vector<int64_t> &prompt_ids,
                        const SamplingOptions &options, int num_candidates, int slots, int max_seq_len,
                        std::vector<int32_t> &rows) {
  options.Validate();
  if (num_candidates < 1 || num_candidates > slots) {
    throw std::invalid_argument("num_candidates=" + std::to_string(num_candidates) + " is invalid: must be in [1, " +
                                std::to_string(slots) + "] (the KvCache's slots)");
  }
  const int prompt_len = static_cast<int>(prompt_ids.size());
  if (prompt_len == 0) throw std::invalid_argument("prompt_ids is empty: the prompt needs at least one token");
  if (prompt_len >= max_seq_len) {
    throw std::invalid_argument("the prompt has " + std::to_string(prompt_len) +
                                " tokens but the context (KvCache max_seq_len) holds " + std::to_string(max_seq_len) +
                                ", leaving no room to generate; shorten the prompt (text or voice prompt)");
  }
  const int context_limit = max_seq_len - prompt_len;
  if (options.max_new_tokens > context_limit) {
    throw std::invalid_argument("max_new_tokens=" + std::to_string(options.max_new_tokens) +
                                " is invalid: the prompt has " + std::to_string(prompt_len) +
                                " tokens and the context holds " + std::to_string(max_seq_len) + ", so at most " +
                                std::to_string(context_limit) +
                                " new tokens fit; lower max_new_tokens or shorten the prompt");
  }
  rows.clear();
  for (int64_t id : prompt_ids) {
    if (id < 0) throw std::invalid_argument("prompt_ids contains a negative token id " + std::to_string(id));
    if (id >= config.speech_token_base && id < config.speech_token_base + config.num_speech_tokens) {
      rows.push_back(static_cast<int32_t>(id - config.speech_token_base));
    } else if (id == config.end_token_id) {
      rows.push_back(static_cast<int32_t>(config.num_speech_tokens));
    }
  }
  return context_limit;
}

}  // namespace llasa_rt
