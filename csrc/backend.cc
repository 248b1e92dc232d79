// Binds backend.h with a trampoline, so a Python subclass implements the model step. The decode loop runs without
// the GIL; the trampoline takes it only around the Python forward call.
#include "llasa_rt/backend.h"

#include <stdexcept>

#include "bindings.h"

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
    // Views over the StepBuffers, whose owner (this backend) keeps them alive; valid during this call only.
    py::object self = py::cast(static_cast<Backend *>(this));
    forward(View(self, input_ids, {batch, seq_len}, /*writeable=*/false), past_len,
            View(self, logits, {batch, buffers().rows()}));
  }

  void ForwardRows(const int64_t *input_ids, int first_slot, int batch, int seq_len, int mask_len,
                   float *logits) override {
    py::gil_scoped_acquire gil;
    py::function forward = py::get_override(static_cast<const Backend *>(this), "forward_rows");
    if (!forward) {
      throw std::logic_error("this Backend subclass does not implement forward_rows(input_ids, first_slot, "
                             "mask_len, logits), so it cannot batch requests (Scheduler)");
    }
    py::object self = py::cast(static_cast<Backend *>(this));
    forward(View(self, input_ids, {batch, seq_len}, /*writeable=*/false), first_slot, mask_len,
            View(self, logits, {batch, buffers().rows()}));
  }

  bool SharesPrefix() const override {
    py::gil_scoped_acquire gil;
    py::function shares = py::get_override(static_cast<const Backend *>(this), "shares_prefix");
    if (!shares) return Backend::SharesPrefix();
    return shares().cast<bool>();
  }

  void SetSharedPrefix(int slot, int length) override {
    py::gil_scoped_acquire gil;
    py::function set = py::get_override(static_cast<const Backend *>(this), "set_shared_prefix");
    if (!set) return Backend::SetSharedPrefix(slot, length);
    set(slot, length);
  }
};

}  // namespace

void BindBackend(py::module_ &m) {
  py::class_<Backend, PyBackend>(
      m, "Backend",
      "One model step for Generator. Subclass it and implement\n"
      "    forward(self, input_ids, past_len, logits) -> None\n"
      "input_ids: read-only int64 [batch, seq_len]; logits: float32 [batch, rows] to fill with the last position's "
      "logits. Row b's keys/values for positions [0, past_len) are in KV slot b of `cache`; write the new ones at "
      "[past_len, past_len + seq_len). position_ids and the attention mask are in `buffers`.\n"
      "For request batching (Scheduler) also implement\n"
      "    forward_rows(self, input_ids, first_slot, mask_len, logits) -> None\n"
      "over KV slots [first_slot, first_slot + batch) with buffers.padded_mask as the [batch, mask_len] mask.\n"
      "To keep the prompt's KV once for all candidates (Generator only) also implement\n"
      "    shares_prefix(self) -> bool            (True)\n"
      "    set_shared_prefix(self, slot, length) -> None\n"
      "set_shared_prefix(0, prompt_len) follows the prefill: from then on read positions [0, prompt_len) of every "
      "row from slot 0 (forks copy only later positions); set_shared_prefix(-1, 0) ends it when generate returns "
      "or raises.")
      .def(py::init<KvCache &, StepBuffers &>(), py::arg("cache"), py::arg("buffers"), py::keep_alive<1, 2>(),
           py::keep_alive<1, 3>(), "Raises InputError if `buffers` was made for another cache shape.")
      .def_property_readonly(
          "cache", [](Backend &b) -> KvCache & { return b.cache(); }, py::return_value_policy::reference_internal,
          "The KvCache it reads and writes.")
      .def("shares_prefix", [](const Backend &b) { return b.Backend::SharesPrefix(); },
           "Whether the backend reads the prompt prefix from slot 0 for every row (default False).")
      .def(
          "set_shared_prefix", [](Backend &b, int slot, int length) { b.Backend::SetSharedPrefix(slot, length); },
          py::arg("slot"), py::arg("length"), "Called by Generator (see the class doc); the default does nothing.")
      .def_property_readonly(
          "buffers", [](Backend &b) -> StepBuffers & { return b.buffers(); },
          py::return_value_policy::reference_internal, "The StepBuffers it reads and writes.");
}

}  // namespace python
}  // namespace llasa_rt
