// Binds step_buffers.h. Each buffer is a writable NumPy view (no copy) whose base is the StepBuffers object; its
// address never changes, so a backend binds it once (e.g. ONNX Runtime IOBinding).
#include "llasa_rt/step_buffers.h"

#include "bindings.h"

namespace llasa_rt {
namespace python {

namespace {

// A property returning a flat [slots * max_seq_len] view of the int64 buffer `buffer` returns.
template <int64_t *(StepBuffers::*buffer)()>
py::array IdsView(py::object self) {
  StepBuffers &b = self.cast<StepBuffers &>();
  return View(self, (b.*buffer)(), {static_cast<py::ssize_t>(b.ids_capacity())});
}

}  // namespace

void BindStepBuffers(py::module_ &m) {
  py::class_<StepBuffers>(m, "StepBuffers",
                          "A backend's inputs and outputs, allocated once by the core. A step with `batch` rows "
                          "of `seq_len` tokens uses the first batch * seq_len ids and the first `batch` logits rows.")
      .def(py::init<const KvCache &, int>(), py::arg("cache"), py::kw_only(), py::arg("rows"),
           "Sized for `cache` (its slots and max_seq_len) and `rows` logits per row (speech codes + END).")
      .def_property_readonly("slots", &StepBuffers::slots, "Rows of the largest step (the cache's slots).")
      .def_property_readonly("max_seq_len", &StepBuffers::max_seq_len, "Longest step (the cache's max_seq_len).")
      .def_property_readonly("rows", &StepBuffers::rows, "Logits per row.")
      .def_property_readonly("input_ids", &IdsView<&StepBuffers::input_ids>,
                             "int64 [slots * max_seq_len]; a step's [batch, seq_len] ids, row-major, come first.")
      .def_property_readonly("position_ids", &IdsView<&StepBuffers::position_ids>,
                             "int64, laid out like input_ids; filled by the core before each forward.")
      .def_property_readonly("attention_mask", &IdsView<&StepBuffers::attention_mask>,
                             "int64 ones [slots * max_seq_len]; any [batch, past_len + seq_len] prefix is a mask.")
      .def_property_readonly("padded_mask", &IdsView<&StepBuffers::padded_mask>,
                             "int64 [slots * max_seq_len]; a Scheduler step's [batch, mask_len] mask (ones, then "
                             "zeros per row) comes first.")
      .def_property_readonly(
          "logits",
          [](py::object self) {
            StepBuffers &b = self.cast<StepBuffers &>();
            return View(self, b.logits(), {b.slots(), b.rows()});
          },
          "float32 [slots, rows]; the backend writes a step's last-position logits into the first `batch` rows.");
}

}  // namespace python
}  // namespace llasa_rt
