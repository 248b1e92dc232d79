// Binds llasa_rt::StepBuffers; each buffer is a NumPy view without copy (the StepBuffers object is its base).
#include <pybind11/numpy.h>

#include "bindings.h"
#include "llasa_rt/step_buffers.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

template <typename T>
py::array View(py::object self, T *data, std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape, data, self);
}

}  // namespace

void BindStepBuffers(py::module_ &m) {
  py::class_<StepBuffers>(m, "StepBuffers",
                          "A backend's per-step inputs and outputs, owned by the core and allocated once: bind "
                          "them once (e.g. IOBinding) and read the current step's part as [batch, seq_len] / "
                          "[batch, rows] prefixes.")
      .def(py::init<const KvCache &, int>(), py::arg("cache"), py::kw_only(), py::arg("rows") = 65537,
           "Buffers for cache.config.slots rows of up to max_seq_len positions and `rows` logits per row.")
      .def_property_readonly("slots", &StepBuffers::slots)
      .def_property_readonly("max_seq_len", &StepBuffers::max_seq_len)
      .def_property_readonly("rows", &StepBuffers::rows, "Logits per row (speech codes + END).")
      .def_property_readonly(
          "input_ids",
          [](py::object self) {
            StepBuffers &b = self.cast<StepBuffers &>();
            return View(self, b.input_ids(), {static_cast<py::ssize_t>(b.ids_capacity())});
          },
          "int64 [slots * max_seq_len]: a step's input_ids are its first batch * seq_len elements.")
      .def_property_readonly(
          "position_ids",
          [](py::object self) {
            StepBuffers &b = self.cast<StepBuffers &>();
            return View(self, b.position_ids(), {static_cast<py::ssize_t>(b.ids_capacity())});
          },
          "int64 [slots * max_seq_len]: a step's position_ids (filled by the core), same layout as input_ids.")
      .def_property_readonly(
          "attention_mask",
          [](py::object self) {
            StepBuffers &b = self.cast<StepBuffers &>();
            return View(self, b.attention_mask(), {static_cast<py::ssize_t>(b.ids_capacity())});
          },
          "int64 ones [slots * max_seq_len]: view the first batch * (past_len + seq_len) as the attention mask.")
      .def_property_readonly(
          "logits",
          [](py::object self) {
            StepBuffers &b = self.cast<StepBuffers &>();
            return View(self, b.logits(), {b.slots(), b.rows()});
          },
          "float32 [slots, rows]: a step's last-position logits are its first batch rows.");
}

}  // namespace python
}  // namespace llasa_rt
