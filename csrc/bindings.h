// Declarations of the per-class binding functions, one per file in csrc/.
#pragma once

#include <pybind11/pybind11.h>

namespace llasa_rt {
namespace python {

void BindBuildInfo(pybind11::module_ &m);

}  // namespace python
}  // namespace llasa_rt
