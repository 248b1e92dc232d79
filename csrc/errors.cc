// Maps the core's C++ exceptions to Python exceptions, keeping their messages:
// std::invalid_argument -> llasa_rt.errors.InputError (a ValueError), AllocationError -> MemoryError.
// Everything else keeps pybind11's default mapping (std::out_of_range -> IndexError, others -> RuntimeError).
#include <stdexcept>

#include "bindings.h"
#include "llasa_rt/errors.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

void BindErrors(py::module_ &m) {
  (void)m;
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const AllocationError &e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const std::invalid_argument &e) {
      // Imported lazily: llasa_rt (the parent package) is importable whenever its _core is.
      py::object input_error = py::module_::import("llasa_rt.errors").attr("InputError");
      PyErr_SetString(input_error.ptr(), e.what());
    }
  });
}

}  // namespace python
}  // namespace llasa_rt
