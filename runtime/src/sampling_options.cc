// llasa-rt: validation of SamplingOptions (messages name the option and its valid range).
#include "llasa_rt/sampling_options.h"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace llasa_rt {

namespace {

template <typename T>
[[noreturn]] void Reject(const char *name, T value, const char *range) {
  std::ostringstream out;
  out << name << "=" << value << " is invalid: " << range;
  throw std::invalid_argument(out.str());
}

}  // namespace

void SamplingOptions::Validate() const {
  if (!(std::isfinite(temperature) && temperature >= 0.0)) {
    Reject("temperature", temperature, "must be a finite number >= 0 (0 = greedy)");
  }
  if (top_k < 0) Reject("top_k", top_k, "must be >= 0 (0 = off)");
  if (!(top_p > 0.0 && top_p <= 1.0)) Reject("top_p", top_p, "must be in (0, 1] (1 = off)");
  if (!(min_p >= 0.0 && min_p <= 1.0)) Reject("min_p", min_p, "must be in [0, 1] (0 = off)");
  if (!(std::isfinite(repetition_penalty) && repetition_penalty > 0.0)) {
    Reject("repetition_penalty", repetition_penalty, "must be a finite number > 0 (1 = off)");
  }
  if (min_new_tokens < 0) Reject("min_new_tokens", min_new_tokens, "must be >= 0");
  if (max_new_tokens < 0) Reject("max_new_tokens", max_new_tokens, "must be >= 0 (0 = until the context is full)");
  if (max_new_tokens > 0 && min_new_tokens > max_new_tokens) {
    std::ostringstream out;
    out << "min_new_tokens=" << min_new_tokens << " is invalid: must be <= max_new_tokens=" << max_new_tokens;
    throw std::invalid_argument(out.str());
  }
}

}  // namespace llasa_rt
