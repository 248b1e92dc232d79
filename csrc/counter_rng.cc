// Binds the counter-based RNG's uniform draw (so tests can reproduce the sampler's draws).
#include "bindings.h"
#include "llasa_rt/counter_rng.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindCounterRng(py::module_ &m) {
  m.def("uniform_draw", &UniformDraw, py::arg("seed"), py::arg("uid"), py::arg("step"),
        "The sampler's uniform draw in [0, 1) for candidate `uid` at generation step `step` under `seed`.");
}

}  // namespace python
}  // namespace llasa_rt
