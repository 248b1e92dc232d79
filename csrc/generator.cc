// Binds llasa_rt::Generator. generate() releases the GIL for the whole loop; it is re-taken only inside a Python
// backend's forward and inside the Python callback.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>

#include <stdexcept>
#include <vector>

#include "bindings.h"
#include "llasa_rt/generator.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindGenerator(py::module_ &m) {
  py::class_<Generator>(m, "Generator",
                        "The decode loop: prefill once, fork to N candidates, batched decode over live candidates.")
      .def(py::init<Backend &, const GeneratorConfig &>(), py::arg("backend"), py::arg("config") = GeneratorConfig(),
           py::keep_alive<1, 2>())
      .def_property_readonly("config", &Generator::config)
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
          "Generates for `num_candidates` candidates (uids 0..N-1) continuing `prompt_ids` (token ids). "
          "`callback(controller)` runs every `callback_every` tokens (0 = only at the end) and once at the end "
          "with controller.done True. Returns a GenerationResult.");
}

}  // namespace python
}  // namespace llasa_rt
