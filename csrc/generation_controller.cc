// Binds llasa_rt::GenerationController (shared ownership, so a stray Python reference never dangles; using it
// outside its callback raises RuntimeError).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "llasa_rt/generation_controller.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindGenerationController(py::module_ &m) {
  py::class_<GenerationController, std::shared_ptr<GenerationController>>(
      m, "GenerationController", "Passed to the generation callback: see and steer the candidates.")
      .def_property_readonly("step", &GenerationController::step,
                             "Tokens generated so far by each live candidate.")
      .def_property_readonly("done", &GenerationController::done,
                             "True in the final call (every candidate finished or generation stopped).")
      .def_property_readonly(
          "new_final_codes",
          [](const GenerationController &c) {
            const std::vector<int32_t> &codes = c.new_final_codes();
            return py::array_t<int32_t>(static_cast<py::ssize_t>(codes.size()), codes.data());
          },
          "Codes that became final since the previous call (all surviving candidates agree on them).")
      .def_property_readonly("final_length", &GenerationController::final_length, "Codes final so far.")
      .def("candidates", &GenerationController::Candidates,
           "Snapshots of every surviving candidate (live and finished), in creation order.")
      .def("live_uids", &GenerationController::LiveUids, "Uids of the live candidates, in slot order.")
      .def("stop", &GenerationController::Stop, "Ends generation after this call; live candidates become 'stopped'.")
      .def("prune", &GenerationController::Prune, py::arg("uid"),
           "Removes candidate `uid` (live or finished); the last surviving candidate cannot be pruned.")
      .def("fork", &GenerationController::Fork, py::arg("uid"),
           "Copies live candidate `uid` into a free KV slot; returns the new uid.")
      .def("set_score", &GenerationController::SetScore, py::arg("uid"), py::arg("name"), py::arg("value"),
           "Sets a named score on candidate `uid`.");
}

}  // namespace python
}  // namespace llasa_rt
