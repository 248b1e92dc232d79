// llasa_rt._core: what every binding file shares. csrc/<header>.cc binds everything declared in
// runtime/include/llasa_rt/<header>.h through one Bind* function; module.cc calls them in dependency order.
// Shared here, written once: NumPy views of core-owned buffers and NumPy copies of vectors, the keyword-only
// constructor (+ attributes + repr) of the option structs, and enums crossing into Python as their names.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "llasa_rt/candidates.h"
#include "llasa_rt/kv_cache.h"

namespace llasa_rt {
namespace python {

namespace py = pybind11;

// ---- one per public header, in the order module.cc calls them --------------------------------------------------
// `testing` is the llasa_rt._core.testing submodule: classes that tests and tools use, the decode loop internally.

void BindErrors(py::module_ &m);                                 // errors.h
void BindBuildInfo(py::module_ &m);                              // build_info.h
void BindKvCache(py::module_ &m);                                // kv_cache.h
void BindAttention(py::module_ &m);                              // attention.h
void BindNativeLm(py::module_ &m);                               // native_lm.h
void BindStepBuffers(py::module_ &m);                            // step_buffers.h
void BindSamplingOptions(py::module_ &m);                        // sampling_options.h
void BindSampler(py::module_ &testing);                          // sampler.h
void BindCandidates(py::module_ &m, py::module_ &testing);       // candidates.h
void BindBackend(py::module_ &m);                                // backend.h
void BindGenerationController(py::module_ &m);                   // generation_controller.h
void BindGenerator(py::module_ &m);                              // generator.h
void BindScheduler(py::module_ &m);                              // scheduler.h
void BindTensorRtBackend(py::module_ &m);                        // tensorrt_backend.h (TensorRT builds only)

// ---- NumPy -----------------------------------------------------------------------------------------------------

// A NumPy view (no copy) of `data` with `shape` and byte `strides`, whose base is `owner`: the Python object that
// owns the memory, so the memory outlives the view. `writeable` false makes NumPy refuse writes.
inline py::array View(py::handle owner, const py::dtype &dtype, void *data, std::vector<py::ssize_t> shape,
                      std::vector<py::ssize_t> strides, bool writeable = true) {
  py::array view(dtype, std::move(shape), std::move(strides), data, owner);
  if (!writeable) py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

// The same for a C-contiguous buffer of T.
template <typename T>
py::array View(py::handle owner, T *data, std::vector<py::ssize_t> shape, bool writeable = true) {
  using Element = std::remove_const_t<T>;
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = sizeof(Element);
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return View(owner, py::dtype::of<Element>(), const_cast<Element *>(data), std::move(shape), std::move(strides),
              writeable);
}

// A 1-D NumPy copy of `values`.
template <typename T>
py::array_t<T> Copy(const std::vector<T> &values) {
  return py::array_t<T>(static_cast<py::ssize_t>(values.size()), values.data());
}

// `array` as T* after checking dtype, shape (-1 = any extent) and C order; `who` (the call) and `what` (the argument)
// name it in errors, which say what to pass instead.
template <typename T>
T *Checked(const py::array &array, const char *who, const char *what, const std::vector<py::ssize_t> &shape,
           bool writable, const char *dtype_name) {
  const std::string where = std::string(who) + ": " + what;
  if (!array.dtype().is(py::dtype::of<T>())) {
    throw std::invalid_argument(where + " has dtype " + std::string(py::str(array.dtype())) + "; pass a C-contiguous " +
                                dtype_name + " array (np.ascontiguousarray(x, dtype=np." + dtype_name + "))");
  }
  std::string expected = "[";
  bool ok = array.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    expected += (i ? ", " : "") + (shape[i] >= 0 ? std::to_string(shape[i]) : std::string("any"));
    if (ok && shape[i] >= 0 && array.shape(i) != shape[i]) ok = false;
  }
  expected += "]";
  if (!ok) {
    std::string got = "[";
    for (py::ssize_t i = 0; i < array.ndim(); ++i) got += (i ? ", " : "") + std::to_string(array.shape(i));
    got += "]";
    throw std::invalid_argument(where + " has shape " + got + ", expected " + expected);
  }
  if (!(array.flags() & py::array::c_style)) {
    throw std::invalid_argument(where + " is not C-contiguous; pass np.ascontiguousarray(x)");
  }
  if (writable && !array.writeable()) throw std::invalid_argument(where + " is read-only; pass a writable array");
  return static_cast<T *>(const_cast<void *>(array.data()));
}

// ---- option structs --------------------------------------------------------------------------------------------
// An options struct (plain fields with default member initialisers, and a Validate() that throws
// std::invalid_argument) is bound from a list of its fields: a keyword-only constructor whose defaults are the C++
// defaults and which validates, a read-write attribute per field, validate() and a repr that lists every field.

template <typename S, typename M, bool Required>
struct Field {
  using Struct = S;
  using Type = M;
  const char *name;
  M S::*member;
  const char *doc;

  // The constructor's keyword argument: without default when required, else the C++ default member value.
  auto arg() const {
    if constexpr (Required) {
      return py::arg(name);
    } else {
      return py::arg(name) = S{}.*member;
    }
  }
};

// A field whose keyword argument defaults to the struct's default member initialiser.
template <typename S, typename M>
Field<S, M, false> Optional(const char *name, M S::*member, const char *doc) {
  return {name, member, doc};
}

// A field that must be given to the constructor.
template <typename S, typename M>
Field<S, M, true> Required(const char *name, M S::*member, const char *doc) {
  return {name, member, doc};
}

template <typename S, typename... F>
py::class_<S> BindOptions(py::module_ &m, const char *name, const char *doc, F... fields) {
  py::class_<S> cls(m, name, doc);
  cls.def(py::init([fields...](typename F::Type... values) {
            S options;
            ((options.*(fields.member) = std::move(values)), ...);
            options.Validate();
            return options;
          }),
          py::kw_only(), fields.arg()...);
  (cls.def_readwrite(fields.name, fields.member, fields.doc), ...);
  cls.def("validate", &S::Validate, "Raises InputError naming the first field out of range.");
  cls.def("__repr__", [name, fields...](const S &options) {
    std::string out = std::string(name) + "(";
    const char *separator = "";
    ((out += separator + std::string(fields.name) + "=" + std::string(py::repr(py::cast(options.*(fields.member)))),
      separator = ", "),
     ...);
    return out + ")";
  });
  return cls;
}

// ---- enums cross as their names --------------------------------------------------------------------------------
// EnumNames<E> lists the names Python may pass (`loadable`), what they name (`what`, for errors) and the name of any
// value; type_caster<E> then turns a Python str into E (a name outside `loadable` raises InputError) and E into str.

template <typename E>
struct EnumNames;

template <>
struct EnumNames<KvDType> {
  static constexpr const char *what = "KvCache dtype";
  static constexpr KvDType loadable[] = {KvDType::kFloat32, KvDType::kFloat16};
  static const char *Name(KvDType value) { return KvDTypeName(value); }
};

template <>
struct EnumNames<FinishReason> {
  static constexpr const char *what = "finish reason";
  static constexpr FinishReason loadable[] = {FinishReason::kEnd, FinishReason::kMaxNewTokens,
                                              FinishReason::kContextFull, FinishReason::kStopped};
  static const char *Name(FinishReason value) { return FinishReasonName(value); }
};

template <typename E>
struct EnumNameCaster {
  PYBIND11_TYPE_CASTER(E, py::detail::const_name("str"));

  bool load(py::handle src, bool /*convert*/) {
    if (!py::isinstance<py::str>(src)) return false;
    const std::string name = src.cast<std::string>();
    std::string names;
    for (E candidate : EnumNames<E>::loadable) {
      if (name == EnumNames<E>::Name(candidate)) {
        value = candidate;
        return true;
      }
      names += (names.empty() ? "'" : ", '") + std::string(EnumNames<E>::Name(candidate)) + "'";
    }
    throw std::invalid_argument(std::string(EnumNames<E>::what) + " '" + name + "' is not one of " + names);
  }

  static py::handle cast(E value, py::return_value_policy /*policy*/, py::handle /*parent*/) {
    return py::str(EnumNames<E>::Name(value)).release();
  }
};

}  // namespace python
}  // namespace llasa_rt

namespace pybind11 {
namespace detail {

template <>
struct type_caster<llasa_rt::KvDType> : llasa_rt::python::EnumNameCaster<llasa_rt::KvDType> {};
template <>
struct type_caster<llasa_rt::FinishReason> : llasa_rt::python::EnumNameCaster<llasa_rt::FinishReason> {};

}  // namespace detail
}  // namespace pybind11
