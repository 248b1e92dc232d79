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

// A Python KvSlotCopier (a device backend written in Python). The core calls it without the GIL held.
class PyKvSlotCopier : public KvSlotCopier {
 public:
  void CopySlotRange(int src, int dst, int begin, int end) override {
    py::gil_scoped_acquire gil;
    PYBIND11_OVERRIDE_PURE_NAME(void, KvSlotCopier, "copy_slot_range", CopySlotRange, src, dst, begin, end);
  }
};

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

  py::class_<KvSlotCopier, PyKvSlotCopier>(
      m, "KvSlotCopier",
      "Where a device backend keeps the slots' keys/values. Subclass it and implement\n"
      "    copy_slot_range(self, src, dst, begin, end) -> None\n"
      "copying positions [begin, end) of slot src to slot dst in every layer (K and V); then "
      "KvCache.set_slot_copier(copier) sends the cache's slot copies (forks, compaction) to it.")
      .def(py::init<>());

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
           "Copies positions [0, length) of slot `src` over slot `dst`, all layers; IndexError if out of range. "
           "With a slot copier set, the copier does the copy.")
      .def("copy_slot_range", &KvCache::CopySlotRange, py::arg("src"), py::arg("dst"), py::arg("begin"),
           py::arg("end"),
           "Copies positions [begin, end) of slot `src` over slot `dst`, all layers; IndexError if out of range. "
           "With a slot copier set, the copier does the copy.")
      .def(
          "set_slot_copier",
          [](KvCache &cache, KvSlotCopier *copier) { cache.SetSlotCopier(copier); }, py::arg("copier").none(true),
          py::keep_alive<1, 2>(),
          "Sends later slot copies to `copier` (a KvSlotCopier: the slots live elsewhere, e.g. on a GPU) or back "
          "to this host memory with None. The cache keeps the copier alive.")
      .def_property_readonly(
          "has_slot_copier", [](const KvCache &cache) { return cache.slot_copier() != nullptr; },
          "True when slot copies go to a KvSlotCopier rather than this host memory.");
}

}  // namespace python
}  // namespace llasa_rt
