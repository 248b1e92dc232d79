// Binds attention.h: AttentionConfig and Attention. run() takes NumPy arrays as they are (C-contiguous, exact
// dtypes, no copies; anything else raises InputError saying what to pass) and releases the GIL around the kernel.
#include "llasa_rt/attention.h"

#include <stdexcept>
#include <string>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindAttention(py::module_ &m) {
  using C = AttentionConfig;
  BindOptions<C>(m, "AttentionConfig", "Shape of one layer's attention. Keyword-only; invalid values raise InputError.",
                 Required("num_heads", &C::num_heads, "Query heads (num_attention_heads)."),
                 Required("num_kv_heads", &C::num_kv_heads,
                          "Key/value heads (num_key_value_heads; num_heads is a multiple of it)."),
                 Required("head_dim", &C::head_dim, "Dimension of one head."),
                 Required("scale", &C::scale, "Softmax scale, usually 1/sqrt(head_dim)."),
                 Optional("threads", &C::threads, "Threads of one run; results are the same for any count."));

  py::class_<Attention>(
      m, "Attention",
      "Grouped-query attention of one layer over a KvCache (float32 or float16), causal, with an optional prompt "
      "prefix shared by all rows (read once per call for all of them). Not for concurrent use from several "
      "threads.")
      .def(py::init<KvCache &, const AttentionConfig &>(), py::arg("cache"), py::arg("config"),
           py::keep_alive<1, 2>(), "Raises InputError when the cache's KV heads / head_dim differ from config.")
      .def_property_readonly("config", &Attention::config, py::return_value_policy::copy,
                             "The AttentionConfig it was made with (a copy).")
      .def_property_readonly("kernel", &Attention::kernel,
                             "The kernel picked for this CPU: 'avx512', 'avx2' or 'scalar'.")
      .def(
          "run",
          [](Attention &self, int layer, const py::array &q, const py::array &k, const py::array &v,
             const py::array &slots, const py::array &past_lens, int prefix_slot, int prefix_len,
             const py::array &out) {
            const AttentionConfig &c = self.config();
            if (q.ndim() != 3) {
              throw std::invalid_argument("Attention.run: q must be [batch, seq, num_heads*head_dim], got " +
                                          std::to_string(q.ndim()) + " dimensions");
            }
            const py::ssize_t batch = q.shape(0), seq = q.shape(1);
            const py::ssize_t qw = static_cast<py::ssize_t>(c.num_heads) * c.head_dim;
            const py::ssize_t kw = static_cast<py::ssize_t>(c.num_kv_heads) * c.head_dim;
            const float *qp = Checked<float>(q, "Attention.run", "q", {batch, seq, qw}, false, "float32");
            const float *kp = Checked<float>(k, "Attention.run", "k", {batch, seq, kw}, false, "float32");
            const float *vp = Checked<float>(v, "Attention.run", "v", {batch, seq, kw}, false, "float32");
            const int *sp = Checked<int>(slots, "Attention.run", "slots", {batch}, false, "int32");
            const int *pp = Checked<int>(past_lens, "Attention.run", "past_lens", {batch}, false, "int32");
            float *op = Checked<float>(out, "Attention.run", "out", {batch, seq, qw}, true, "float32");
            py::gil_scoped_release release;
            self.Run(layer, qp, kp, vp, static_cast<int>(batch), static_cast<int>(seq), sp, pp, prefix_slot,
                     prefix_len, op);
          },
          py::arg("layer"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("slots"), py::arg("past_lens"),
          py::arg("prefix_slot"), py::arg("prefix_len"), py::arg("out"),
          "One layer: q float32 [batch, seq, num_heads*head_dim], k and v float32 [batch, seq, "
          "num_kv_heads*head_dim] (rotary applied), slots and past_lens int32 [batch]. Stores k/v at positions "
          "[past_lens[b], past_lens[b] + seq) of cache slot slots[b] (in the cache dtype), then writes "
          "out[b, s] = causal softmax(scale q K^T) V over positions [0, past_lens[b] + s], positions "
          "[0, prefix_len) being read from slot prefix_slot (prefix_len 0: nothing shared). out: float32 like q. "
          "Bad arguments raise InputError / IndexError and write nothing.");
}

}  // namespace python
}  // namespace llasa_rt
