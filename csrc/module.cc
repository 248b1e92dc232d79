// llasa_rt._core: the pybind11 module. Each bound class lives in its own file; this file only
// calls their Bind* functions.
#include <pybind11/pybind11.h>

#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "llasa-rt C++ decode core (KV cache, candidates, sampler, decode loop).";
  llasa_rt::python::BindBuildInfo(m);
}
