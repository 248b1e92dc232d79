// Binds generator.h: GeneratorConfig, StepTimings, GenerationResult and Generator. generate() runs the whole loop
// without the GIL; it is taken again only inside a Python backend's forward and inside the callback.
#include "llasa_rt/generator.h"

#include <pybind11/stl.h>

#include <stdexcept>
#include <vector>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindGenerator(py::module_ &m) {
  using G = GeneratorConfig;
  BindOptions<G>(m, "GeneratorConfig",
                 "Where the speech tokens are in the vocabulary, and the sampler's threads. Keyword-only; invalid "
                 "values raise InputError.",
                 Required("speech_token_base", &G::speech_token_base,
                          "Token id of speech code 0 (<|s_0|>); code c is token speech_token_base + c."),
                 Required("num_speech_tokens", &G::num_speech_tokens,
                          "Speech codes; a backend's logits rows are these plus END, last."),
                 Required("end_token_id", &G::end_token_id, "Id of the <|SPEECH_GENERATION_END|> token (END)."),
                 Optional("sampler_threads", &G::sampler_threads,
                          "Threads sampling a step's candidates; results are the same for any count."));

  using T = StepTimings;
  py::class_<T>(m, "StepTimings",
                "Where a generation's time went, in seconds. 'core' is the loop's own work (inputs, sampling, "
                "bookkeeping): neither Backend.forward nor the callback.")
      .def_readonly("prefill_forward_seconds", &T::prefill_forward_seconds, "Backend.forward over the prompt.")
      .def_readonly("prefill_core_seconds", &T::prefill_core_seconds, "Core time of the prefill, forks and first draw.")
      .def_property_readonly(
          "forward_seconds", [](const T &t) { return Copy(t.forward_seconds); },
          "Backend.forward time of each decode step (float64 array).")
      .def_property_readonly(
          "core_seconds", [](const T &t) { return Copy(t.core_seconds); },
          "Core time of each decode step (float64 array).")
      .def_property_readonly(
          "batch_sizes", [](const T &t) { return Copy(t.batch_sizes); },
          "Live candidates in each decode step (int32 array).")
      .def_readonly("callback_seconds", &T::callback_seconds, "Time in the callback, all calls together.");

  py::class_<GenerationResult>(m, "GenerationResult", "What Generator.generate returns.")
      .def_readonly("candidates", &GenerationResult::candidates,
                    "Every candidate not pruned, all finished, oldest first (list of Candidate).")
      .def_readonly("timings", &GenerationResult::timings, "A StepTimings.")
      .def_readonly("stopped", &GenerationResult::stopped, "Whether a callback called stop().");

  py::class_<Generator>(m, "Generator",
                        "The decode loop over a Backend: the prompt once, then steps over the live candidates, "
                        "without allocating per step.")
      .def(py::init<Backend &, const GeneratorConfig &>(), py::arg("backend"), py::arg("config"),
           py::keep_alive<1, 2>(), "Raises InputError unless the backend's logits rows are num_speech_tokens + 1.")
      .def_property_readonly("config", &Generator::config, py::return_value_policy::copy,
                             "The GeneratorConfig it was made with (a copy: changing it changes nothing).")
      .def(
          "generate",
          [](Generator &g, py::array_t<int64_t, py::array::c_style | py::array::forcecast> prompt_ids,
             const SamplingOptions &options, int num_candidates, py::object callback, int callback_every) {
            if (prompt_ids.ndim() != 1) throw std::invalid_argument("prompt_ids must be a 1-D sequence of token ids");
            std::vector<int64_t> ids(prompt_ids.data(), prompt_ids.data() + prompt_ids.shape(0));
            GenerationCallback cb;
            if (!callback.is_none()) {
              if (!PyCallable_Check(callback.ptr())) throw py::type_error("callback must be callable or None");
              PyObject *fn = callback.ptr();  // Borrowed: `callback` holds it for the whole call.
              cb = [fn](GenerationController &controller) {
                py::gil_scoped_acquire gil;
                py::handle callable(fn);
                callable(controller.shared_from_this());
              };
            }
            GenerationResult result;
            {
              py::gil_scoped_release release;
              result = g.Generate(ids, options, num_candidates, cb, callback_every);
            }
            return result;
          },
          py::arg("prompt_ids"), py::kw_only(), py::arg("options"), py::arg("num_candidates") = 1,
          py::arg("callback") = py::none(), py::arg("callback_every") = 1,
          "Continues `prompt_ids` (token ids) with `num_candidates` candidates, uids 0..N-1; returns a "
          "GenerationResult. `callback(controller)` is called every `callback_every` tokens (0: never during the "
          "run) and once more at the end with controller.done true. Runs without the GIL; what the backend or the "
          "callback raises is raised here.");
}

}  // namespace python
}  // namespace llasa_rt
