// Binds sampling_options.h.
#include "llasa_rt/sampling_options.h"

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindSamplingOptions(py::module_ &m) {
  using O = SamplingOptions;
  BindOptions<O>(
      m, "SamplingOptions",
      "How each token is drawn, as transformers' generate() does it: repetition penalty, END blocked before "
      "min_new_tokens, then temperature, top-k, top-p, min-p. Keyword-only; invalid values raise InputError (also "
      "when a changed field is next used).",
      Optional("temperature", &O::temperature, "Divides the logits; 0 picks the most likely row (greedy)."),
      Optional("top_k", &O::top_k, "Keep the k most likely rows, ties at the k-th included; 0 keeps all."),
      Optional("top_p", &O::top_p, "Keep the most likely rows holding this much probability; in (0, 1], 1 = all."),
      Optional("min_p", &O::min_p, "Drop rows less likely than min_p times the most likely one; in [0, 1]."),
      Optional("repetition_penalty", &O::repetition_penalty,
               "> 1 makes rows already in the prompt or the candidate's tokens less likely; 1 = off."),
      Optional("min_new_tokens", &O::min_new_tokens, "Tokens before END may be drawn."),
      Optional("max_new_tokens", &O::max_new_tokens, "Tokens per candidate at most; 0 = until the KV cache is full."),
      Optional("seed", &O::seed, "Seed of the draws: a candidate's token depends only on (seed, its uid, step)."));
}

}  // namespace python
}  // namespace llasa_rt
