// Binds llasa_rt::Backend with a trampoline so a Python class can implement Forward. The decode loop runs with
// the GIL released; the trampoline takes it only for the duration of the Python `forward` call.
#include <pybind11/numpy.h>

#include <stdexcept>
#include <vector>

#include "bindings.h"
#include "llasa_rt/backend.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

class PyBackend : public Backend {
 public:
  using Backend::Backend;

  void Forward(const int64_t *input_ids, int batch, int seq_len, int past_len, float *logits) override {
    py::gil_scoped_acquire gil;
    py::function forward = py::get_override(static_cast<const Backend *>(this), "forward");
    if (!forward) {
      throw std::runtime_error("Backend subclass does not implement forward(input_ids, past_len, logits)");
    }
    // Views over the core's buffers, no copy. Their base is this backend's Python object, which keeps the
    // buffers alive; they are only meaningful during this call.
    py::object self = py::cast(static_cast<Backend *>(this));
    const py::ssize_t b = batch, s = seq_len, rows = buffers().rows();
    py::array ids(py::dtype::of<int64_t>(), std::vector<py::ssize_t>{b, s}, std::vector<py::ssize_t>{s * 8, 8},
                  input_ids, self);
    py::detail::array_proxy(ids.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    py::array out(py::dtype::of<float>(), std::vector<py::ssize_t>{b, rows}, std::vector<py::ssize_t>{rows * 4, 4},
                  logits, self);
    forward(ids, past_len, out);
  }
};

}  // namespace

void BindBackend(py::module_ &m) {
  py::class_<Backend, PyBackend>(
      m, "Backend",
      "A model step for the decode loop. Subclass it in Python and implement\n"
      "    forward(self, input_ids: int64 [batch, seq_len], past_len: int, logits: float32 [batch, rows]) -> None\n"
      "Row b's keys/values for positions [0, past_len) are in KV slot b; write the new ones in place at\n"
      "[past_len, past_len + seq_len) and the last position's logits into `logits` (views over core buffers).\n"
      "position_ids (filled by the core) and an all-ones attention mask are in `buffers`.")
      .def(py::init<KvCache &, StepBuffers &>(), py::arg("cache"), py::arg("buffers"), py::keep_alive<1, 2>(),
           py::keep_alive<1, 3>())
      .def_property_readonly(
          "cache", [](Backend &b) -> KvCache & { return b.cache(); }, py::return_value_policy::reference_internal,
          "The KvCache this backend writes.")
      .def_property_readonly(
          "buffers", [](Backend &b) -> StepBuffers & { return b.buffers(); },
          py::return_value_policy::reference_internal, "The StepBuffers this backend reads and writes.");
}

}  // namespace python
}  // namespace llasa_rt
