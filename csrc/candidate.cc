// Binds llasa_rt::Candidate (read-only snapshot: tokens are copied into a NumPy array).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "llasa_rt/candidates.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindCandidate(py::module_ &m) {
  py::class_<Candidate>(m, "Candidate", "One decode candidate (a snapshot).")
      .def_readonly("uid", &Candidate::uid, "Stable id within a generation (also its RNG stream).")
      .def_readonly("slot", &Candidate::slot, "KV slot while live; -1 once finished.")
      .def_property_readonly(
          "tokens",
          [](const Candidate &c) {
            return py::array_t<int32_t>(static_cast<py::ssize_t>(c.tokens.size()), c.tokens.data());
          },
          "Generated rows (speech codes, int32); END is not included.")
      .def_readonly("logprob", &Candidate::logprob, "Sum of raw log-probs of every chosen row, END included.")
      .def_readonly("finished", &Candidate::finished, "Left the live set.")
      .def_property_readonly(
          "finish_reason", [](const Candidate &c) { return std::string(FinishReasonName(c.finish_reason)); },
          "'none' (live), 'end', 'max_new_tokens', 'context_full' or 'stopped'.")
      .def_readonly("scores", &Candidate::scores, "Named scores set by verifiers (a dict copy).")
      .def("__repr__", [](const Candidate &c) {
        return "Candidate(uid=" + std::to_string(c.uid) + ", tokens=" + std::to_string(c.tokens.size()) +
               ", logprob=" + std::to_string(c.logprob) + ", finish_reason='" + FinishReasonName(c.finish_reason) +
               "')";
      });
}

}  // namespace python
}  // namespace llasa_rt
