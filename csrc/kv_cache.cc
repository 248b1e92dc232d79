// Binds kv_cache.h: KvCacheConfig and KvCache. The dtype crosses as 'float32' / 'float16'; each layer's K and V
// buffer is a NumPy view (no copy) whose base is the cache, so a Python backend can bind its address once.
#include "llasa_rt/kv_cache.h"

#include "bindings.h"

namespace llasa_rt {
namespace python {

namespace {

// Layer buffer at `data` of the cache `owner` as [slots, kv_heads, max_seq_len, head_dim].
py::array LayerView(py::object owner, void *data) {
  const KvCache &cache = owner.cast<const KvCache &>();
  const KvCacheConfig &c = cache.config();
  const py::dtype dtype = c.dtype == KvDType::kFloat16 ? py::dtype("float16") : py::dtype::of<float>();
  const py::ssize_t elem = static_cast<py::ssize_t>(KvDTypeSize(c.dtype));
  return View(owner, dtype, data, {c.slots, c.num_kv_heads, c.max_seq_len, c.head_dim},
              {static_cast<py::ssize_t>(cache.SlotBytes()), static_cast<py::ssize_t>(c.max_seq_len) * c.head_dim * elem,
               static_cast<py::ssize_t>(c.head_dim) * elem, elem});
}

}  // namespace

void BindKvCache(py::module_ &m) {
  BindOptions<KvCacheConfig>(
      m, "KvCacheConfig", "Shape of a KvCache. Keyword-only; invalid values raise InputError.",
      Required("num_layers", &KvCacheConfig::num_layers, "num_hidden_layers of the model."),
      Required("num_kv_heads", &KvCacheConfig::num_kv_heads,
               "num_key_value_heads of the model (grouped-query attention)."),
      Required("head_dim", &KvCacheConfig::head_dim,
               "Size of one attention head (hidden_size / num_attention_heads)."),
      Optional("slots", &KvCacheConfig::slots, "Most candidates decoded at once (the step's batch limit)."),
      Required("max_seq_len", &KvCacheConfig::max_seq_len, "Positions per slot: prompt plus generated tokens."),
      Optional("dtype", &KvCacheConfig::dtype, "'float32' or 'float16', the dtype of the model's KV inputs."));

  py::class_<KvCache>(m, "KvCache",
                      "Per layer one K and one V buffer [slots, kv_heads, max_seq_len, head_dim], allocated once. "
                      "Live candidates use slots [0, live), so a step's batch is the first rows of each buffer.")
      .def(py::init<const KvCacheConfig &>(), py::arg("config"),
           "Allocates the buffers (zero-filled); raises MemoryError with the size and what to reduce.")
      .def_property_readonly("config", &KvCache::config, py::return_value_policy::copy,
                             "The KvCacheConfig it was made with (a copy: changing it changes nothing).")
      .def_property_readonly("total_bytes", &KvCache::TotalBytes, "Bytes reserved for all buffers.")
      .def(
          "key", [](py::object self, int layer) { return LayerView(self, self.cast<const KvCache &>().Key(layer)); },
          py::arg("layer"), "Key buffer of `layer`: a writable NumPy view, no copy.")
      .def(
          "value",
          [](py::object self, int layer) { return LayerView(self, self.cast<const KvCache &>().Value(layer)); },
          py::arg("layer"), "Value buffer of `layer`: a writable NumPy view, no copy.")
      .def("copy_slot", &KvCache::CopySlot, py::arg("src"), py::arg("dst"), py::arg("length"),
           "Copies positions [0, length) of slot `src` over slot `dst`, all layers; IndexError if out of range.")
      .def("copy_slot_range", &KvCache::CopySlotRange, py::arg("src"), py::arg("dst"), py::arg("begin"),
           py::arg("end"),
           "Copies positions [begin, end) of slot `src` over slot `dst`, all layers; IndexError if out of range.");
}

}  // namespace python
}  // namespace llasa_rt
