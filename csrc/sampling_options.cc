// Binds llasa_rt::SamplingOptions (keyword-only constructor that validates, one docstring per field).
#include <sstream>

#include "bindings.h"
#include "llasa_rt/sampling_options.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindSamplingOptions(py::module_ &m) {
  py::class_<SamplingOptions>(
      m, "SamplingOptions",
      "Sampling over the speech rows, with Hugging Face semantics in generate()'s order: repetition penalty, END "
      "masked before min_new_tokens, then temperature, top-k, top-p, min-p. Invalid values raise InputError.")
      .def(py::init([](double temperature, int top_k, double top_p, double min_p, double repetition_penalty,
                       int min_new_tokens, int max_new_tokens, uint64_t seed) {
             SamplingOptions o;
             o.temperature = temperature;
             o.top_k = top_k;
             o.top_p = top_p;
             o.min_p = min_p;
             o.repetition_penalty = repetition_penalty;
             o.min_new_tokens = min_new_tokens;
             o.max_new_tokens = max_new_tokens;
             o.seed = seed;
             o.Validate();
             return o;
           }),
           py::kw_only(), py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
           py::arg("min_p") = 0.0, py::arg("repetition_penalty") = 1.0, py::arg("min_new_tokens") = 0,
           py::arg("max_new_tokens") = 0, py::arg("seed") = 0)
      .def_readwrite("temperature", &SamplingOptions::temperature,
                     "Logits are divided by it before sampling; 0 = greedy (argmax). >= 0.")
      .def_readwrite("top_k", &SamplingOptions::top_k,
                     "Keep rows whose logit >= the k-th largest (ties kept); 0 = off. >= 0.")
      .def_readwrite("top_p", &SamplingOptions::top_p,
                     "Nucleus: drop the least likely rows holding 1 - top_p of the mass. In (0, 1]; 1 = off.")
      .def_readwrite("min_p", &SamplingOptions::min_p,
                     "Drop rows whose probability < min_p * the largest probability. In [0, 1]; 0 = off.")
      .def_readwrite("repetition_penalty", &SamplingOptions::repetition_penalty,
                     "Rows already in the sequence: positive logits are divided by it, negative multiplied. > 0.")
      .def_readwrite("min_new_tokens", &SamplingOptions::min_new_tokens,
                     "END is impossible until this many tokens were generated. >= 0.")
      .def_readwrite("max_new_tokens", &SamplingOptions::max_new_tokens,
                     "A candidate stops after this many tokens; 0 = when the context is full.")
      .def_readwrite("seed", &SamplingOptions::seed,
                     "Seed of the counter-based RNG: a draw depends only on (seed, uid, step).")
      .def("validate", &SamplingOptions::Validate, "Raises InputError naming the first option out of range.")
      .def("__repr__", [](const SamplingOptions &o) {
        std::ostringstream out;
        out << "SamplingOptions(temperature=" << o.temperature << ", top_k=" << o.top_k << ", top_p=" << o.top_p
            << ", min_p=" << o.min_p << ", repetition_penalty=" << o.repetition_penalty
            << ", min_new_tokens=" << o.min_new_tokens << ", max_new_tokens=" << o.max_new_tokens
            << ", seed=" << o.seed << ")";
        return out.str();
      });
}

}  // namespace python
}  // namespace llasa_rt
