// Binds llasa_rt::KvCache. Its buffers are exposed as NumPy arrays without copying (the cache object is their
// base, so it outlives them), which lets a Python backend bind `.ctypes.data` pointers once.
#include <pybind11/numpy.h>

#include "bindings.h"
#include "llasa_rt/kv_cache.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

py::array BufferView(py::object self, void *data) {
  const KvCache &cache = self.cast<const KvCache &>();
  const KvCacheConfig &c = cache.config();
  const py::dtype dtype = c.dtype == KvDType::kFloat16 ? py::dtype("float16") : py::dtype::of<float>();
  const py::ssize_t elem = static_cast<py::ssize_t>(KvDTypeSize(c.dtype));
  const std::vector<py::ssize_t> shape{c.slots, c.num_kv_heads, c.max_seq_len, c.head_dim};
  const std::vector<py::ssize_t> strides{static_cast<py::ssize_t>(cache.SlotBytes()),
                                         static_cast<py::ssize_t>(c.max_seq_len) * c.head_dim * elem,
                                         static_cast<py::ssize_t>(c.head_dim) * elem, elem};
  return py::array(dtype, shape, strides, data, self);
}

}  // namespace

void BindKvCache(py::module_ &m) {
  py::class_<KvCache>(m, "KvCache",
                      "Per layer K and V buffers [slots, kv_heads, max_seq_len, head_dim], allocated once. Live "
                      "candidates occupy slots [0, live), so a step runs on the first rows of every buffer.")
      .def(py::init<const KvCacheConfig &>(), py::arg("config"),
           "Allocates every buffer (zero-filled, 64-byte aligned); raises MemoryError naming the shape and what "
           "to reduce when memory is short.")
      .def_property_readonly("config", &KvCache::config, "The cache's shape.")
      .def_property_readonly("total_bytes", &KvCache::TotalBytes, "Bytes reserved for all buffers.")
      .def(
          "key", [](py::object self, int layer) { return BufferView(self, self.cast<const KvCache &>().Key(layer)); },
          py::arg("layer"), "Layer `layer`'s key buffer as a NumPy view (no copy) [slots, kv_heads, max_seq_len, head_dim].")
      .def(
          "value",
          [](py::object self, int layer) { return BufferView(self, self.cast<const KvCache &>().Value(layer)); },
          py::arg("layer"), "Layer `layer`'s value buffer as a NumPy view (no copy).")
      .def("copy_slot", &KvCache::CopySlot, py::arg("src"), py::arg("dst"), py::arg("length"),
           "Copies positions [0, length) of slot `src` to slot `dst` in every layer (K and V, every head).");
}

}  // namespace python
}  // namespace llasa_rt
