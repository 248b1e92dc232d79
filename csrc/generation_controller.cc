// Binds generation_controller.h. Held by shared_ptr, so a reference kept past its callback never dangles: using it
// then raises RuntimeError.
#include "llasa_rt/generation_controller.h"

#include <pybind11/stl.h>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindGenerationController(py::module_ &m) {
  using C = GenerationController;
  py::class_<C, std::shared_ptr<C>>(m, "GenerationController",
                                    "What a generate() callback receives: read the candidates and final codes, "
                                    "stop, prune or fork. Valid only during that call.")
      .def_property_readonly("step", &C::step, "Tokens each live candidate has generated.")
      .def_property_readonly("done", &C::done, "True in the last call, after every candidate finished or stop().")
      .def_property_readonly(
          "new_final_codes", [](const C &c) { return Copy(c.new_final_codes()); },
          "Codes (int32 array) that became final since the previous call: every surviving candidate starts with "
          "them, so they can be played or decoded now.")
      .def_property_readonly("final_length", &C::final_length, "Codes final so far.")
      .def("candidates", &C::Candidates, "Snapshots of the surviving candidates (live and finished), oldest first.")
      .def("live_uids", &C::LiveUids, "The live candidates' uids (a list).")
      .def("stop", &C::Stop, "Ends the generation after this call; live candidates finish as 'stopped'.")
      .def("prune", &C::Prune, py::arg("uid"),
           "Drops candidate `uid` (live or finished); the last survivor cannot be pruned (use stop()).")
      .def("fork", &C::Fork, py::arg("uid"),
           "Copies live candidate `uid` into a free slot; returns the copy's uid, whose draws then differ.")
      .def("set_score", &C::SetScore, py::arg("uid"), py::arg("name"), py::arg("value"),
           "Sets scores[name] = value on candidate `uid` (e.g. a verifier's score).");
}

}  // namespace python
}  // namespace llasa_rt
