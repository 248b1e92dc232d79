// Binds llasa_rt::BuildInfo.
#include "llasa_rt/build_info.h"

#include "bindings.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindBuildInfo(py::module_ &m) {
  py::class_<BuildInfo>(m, "BuildInfo", "What this build of the C++ core contains.")
      .def_readonly("version", &BuildInfo::version, "llasa-rt core version.")
      .def_readonly("compiler", &BuildInfo::compiler, "Compiler id and version that built the core.")
      .def_readonly("tensorrt", &BuildInfo::tensorrt, "True when the TensorRT backend was compiled in.")
      .def("__repr__", [](const BuildInfo &b) {
        return "BuildInfo(version='" + b.version + "', compiler='" + b.compiler +
               "', tensorrt=" + (b.tensorrt ? "True" : "False") + ")";
      });
  m.def("build_info", &GetBuildInfo, "Returns what this build of the C++ core contains.");
}

}  // namespace python
}  // namespace llasa_rt
