// Binds llasa_rt::GenerationResult.
#include <pybind11/stl.h>

#include "bindings.h"
#include "llasa_rt/generator.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindGenerationResult(py::module_ &m) {
  py::class_<GenerationResult>(m, "GenerationResult", "What Generator.generate returns.")
      .def_readonly("candidates", &GenerationResult::candidates,
                    "Every candidate not pruned (finished or stopped), in creation order.")
      .def_readonly("timings", &GenerationResult::timings, "Time per step inside the backend vs in the core.")
      .def_readonly("stopped", &GenerationResult::stopped, "A callback called stop().");
}

}  // namespace python
}  // namespace llasa_rt
