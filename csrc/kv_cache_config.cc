// Binds llasa_rt::KvCacheConfig (keyword-only constructor, one docstring per field).
#include <stdexcept>
#include <string>

#include "bindings.h"
#include "llasa_rt/kv_cache.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

KvDType ParseDType(const std::string &name) {
  if (name == "float32") return KvDType::kFloat32;
  if (name == "float16") return KvDType::kFloat16;
  throw std::invalid_argument("KvCache dtype '" + name + "' is not supported: use 'float32' or 'float16'");
}

}  // namespace

void BindKvCacheConfig(py::module_ &m) {
  py::class_<KvCacheConfig>(m, "KvCacheConfig", "Shape of a KV cache: per layer K and V of [slots, kv_heads, max_seq_len, head_dim].")
      .def(py::init([](int num_layers, int num_kv_heads, int head_dim, int slots, int max_seq_len,
                       const std::string &dtype) {
             KvCacheConfig c;
             c.num_layers = num_layers;
             c.num_kv_heads = num_kv_heads;
             c.head_dim = head_dim;
             c.slots = slots;
             c.max_seq_len = max_seq_len;
             c.dtype = ParseDType(dtype);
             c.Validate();
             return c;
           }),
           py::kw_only(), py::arg("num_layers"), py::arg("num_kv_heads"), py::arg("head_dim"), py::arg("slots") = 1,
           py::arg("max_seq_len"), py::arg("dtype") = "float32")
      .def_readwrite("num_layers", &KvCacheConfig::num_layers, "Decoder layers (one K and one V buffer each).")
      .def_readwrite("num_kv_heads", &KvCacheConfig::num_kv_heads, "Key/value heads per layer (GQA groups).")
      .def_readwrite("head_dim", &KvCacheConfig::head_dim, "Dimension of one head.")
      .def_readwrite("slots", &KvCacheConfig::slots, "Candidates that can be live at once (batch rows of a step).")
      .def_readwrite("max_seq_len", &KvCacheConfig::max_seq_len,
                     "Positions per slot: prompt + generated tokens must fit.")
      .def_property(
          "dtype", [](const KvCacheConfig &c) { return std::string(KvDTypeName(c.dtype)); },
          [](KvCacheConfig &c, const std::string &name) { c.dtype = ParseDType(name); },
          "Element type of the buffers: 'float32' or 'float16'.")
      .def("__repr__", [](const KvCacheConfig &c) {
        return "KvCacheConfig(num_layers=" + std::to_string(c.num_layers) + ", num_kv_heads=" +
               std::to_string(c.num_kv_heads) + ", head_dim=" + std::to_string(c.head_dim) + ", slots=" +
               std::to_string(c.slots) + ", max_seq_len=" + std::to_string(c.max_seq_len) + ", dtype='" +
               KvDTypeName(c.dtype) + "')";
      });
}

}  // namespace python
}  // namespace llasa_rt
