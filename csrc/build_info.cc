// Binds build_info.h.
#include "llasa_rt/build_info.h"

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindBuildInfo(py::module_ &m) {
  py::class_<BuildInfo>(m, "BuildInfo", "How the C++ core was built; returned by build_info().")
      .def_readonly("version", &BuildInfo::version, "llasa-rt version of the core (the same as the package's).")
      .def_readonly("compiler", &BuildInfo::compiler, "Compiler id and version, e.g. 'GNU 12.2.0'.")
      .def_readonly("tensorrt", &BuildInfo::tensorrt,
                    "Whether the TensorRT backend (TensorRtEngine, TensorRtBackend) is compiled in.")
      .def("__repr__", [](const BuildInfo &b) {
        return "BuildInfo(version='" + b.version + "', compiler='" + b.compiler +
               "', tensorrt=" + (b.tensorrt ? "True" : "False") + ")";
      });
  m.def("build_info", &GetBuildInfo, "How this C++ core was built (version, compiler, backends).");
}

}  // namespace python
}  // namespace llasa_rt
