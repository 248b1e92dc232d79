// Binds errors.h: the core's exceptions become Python exceptions with the same message.
//   std::invalid_argument -> llasa_rt.errors.InputError (a ValueError)   AllocationError -> MemoryError
// Everything else keeps pybind11's mapping (std::out_of_range -> IndexError, other std::exception -> RuntimeError).
#include "llasa_rt/errors.h"

#include <stdexcept>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindErrors(py::module_ & /*m*/) {
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const AllocationError &e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const std::invalid_argument &e) {
      // Imported when first needed: the parent package llasa_rt is importable whenever its _core is.
      py::object input_error = py::module_::import("llasa_rt.errors").attr("InputError");
      PyErr_SetString(input_error.ptr(), e.what());
    }
  });
}

}  // namespace python
}  // namespace llasa_rt
