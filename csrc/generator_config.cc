// Binds llasa_rt::GeneratorConfig (keyword-only constructor that validates, one docstring per field).
#include "bindings.h"
#include "llasa_rt/generator.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindGeneratorConfig(py::module_ &m) {
  py::class_<GeneratorConfig>(m, "GeneratorConfig", "How token ids map to logits rows, and how the loop runs.")
      .def(py::init([](int64_t speech_token_base, int num_speech_tokens, int64_t end_token_id, int sampler_threads) {
             GeneratorConfig c;
             c.speech_token_base = speech_token_base;
             c.num_speech_tokens = num_speech_tokens;
             c.end_token_id = end_token_id;
             c.sampler_threads = sampler_threads;
             c.Validate();
             return c;
           }),
           py::kw_only(), py::arg("speech_token_base") = 128264, py::arg("num_speech_tokens") = 65536,
           py::arg("end_token_id") = 128261, py::arg("sampler_threads") = 1)
      .def_readwrite("speech_token_base", &GeneratorConfig::speech_token_base,
                     "Token id of speech code 0 (<|s_0|>): row r < num_speech_tokens is token base + r.")
      .def_readwrite("num_speech_tokens", &GeneratorConfig::num_speech_tokens,
                     "Speech codes; the logits have this + 1 rows, END last.")
      .def_readwrite("end_token_id", &GeneratorConfig::end_token_id,
                     "Token id of END (<|SPEECH_GENERATION_END|>), the last logits row.")
      .def_readwrite("sampler_threads", &GeneratorConfig::sampler_threads,
                     "Threads sampling the candidates of one step (results do not depend on it).");
}

}  // namespace python
}  // namespace llasa_rt
