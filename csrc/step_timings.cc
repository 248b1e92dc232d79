// Binds llasa_rt::StepTimings (per-step arrays as NumPy copies).
#include <pybind11/numpy.h>

#include "bindings.h"
#include "llasa_rt/generator.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

template <typename T>
py::array_t<T> ToArray(const std::vector<T> &v) {
  return py::array_t<T>(static_cast<py::ssize_t>(v.size()), v.data());
}

}  // namespace

void BindStepTimings(py::module_ &m) {
  py::class_<StepTimings>(m, "StepTimings",
                          "Where a generation's time went; 'core' = the loop's own work (inputs, sampling, "
                          "bookkeeping), excluding Backend.forward and the callback.")
      .def_readonly("prefill_forward_seconds", &StepTimings::prefill_forward_seconds,
                    "Backend.forward of the prompt.")
      .def_readonly("prefill_core_seconds", &StepTimings::prefill_core_seconds,
                    "Input setup, forks to N candidates and the first draw.")
      .def_property_readonly(
          "forward_seconds", [](const StepTimings &t) { return ToArray(t.forward_seconds); },
          "Per decode step: time inside Backend.forward.")
      .def_property_readonly(
          "core_seconds", [](const StepTimings &t) { return ToArray(t.core_seconds); },
          "Per decode step: the core's own time.")
      .def_property_readonly(
          "batch_sizes", [](const StepTimings &t) { return ToArray(t.batch_sizes); },
          "Per decode step: live candidates run.")
      .def_readonly("callback_seconds", &StepTimings::callback_seconds, "Total time spent in the callback.");
}

}  // namespace python
}  // namespace llasa_rt
