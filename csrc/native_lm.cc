// Binds native_lm.h: NativeLmConfig, QuantMatrix (a MatMulNBits weight as three NumPy arrays) and NativeLm. Arrays
// are taken as they are (C-contiguous, exact dtypes, no copies; anything else raises InputError saying what to pass);
// run() releases the GIL around the step.
#include "llasa_rt/native_lm.h"

#include <stdexcept>
#include <string>

#include "bindings.h"

namespace llasa_rt {
namespace python {

namespace {

// A QuantMatrix with the arrays it points into (kept alive while the Python object lives).
struct PyQuantMatrix {
  QuantMatrix matrix;
  py::array data, scales, zero_points;
};

PyQuantMatrix MakeMatrix(int n, int k, int bits, int block, const py::array &data, const py::array &scales,
                         const py::array &zero_points) {
  const char *who = "QuantMatrix";
  if (n < 1 || k < 1 || (bits != 4 && bits != 8) || block < 1) {
    throw std::invalid_argument("QuantMatrix: n " + std::to_string(n) + ", k " + std::to_string(k) + ", bits " +
                                std::to_string(bits) + ", block " + std::to_string(block) +
                                " (n, k, block >= 1, bits 4 or 8)");
  }
  const py::ssize_t blocks = (k + block - 1) / block;
  const py::ssize_t zp_row = bits == 4 ? (blocks + 1) / 2 : blocks;
  PyQuantMatrix m{QuantMatrix{}, data, scales, zero_points};
  // Shapes as MatMulNBits stores them: data [n, blocks, block * bits / 8], scales and zero points flat.
  m.matrix.n = n;
  m.matrix.k = k;
  m.matrix.bits = bits;
  m.matrix.block = block;
  m.matrix.data = Checked<uint8_t>(data, who, "data", {n, blocks, block * bits / 8}, false, "uint8");
  m.matrix.scales = Checked<float>(scales, who, "scales", {n * blocks}, false, "float32");
  m.matrix.zero_points = Checked<uint8_t>(zero_points, who, "zero_points", {n * zp_row}, false, "uint8");
  return m;
}

}  // namespace

void BindNativeLm(py::module_ &m) {
  using C = NativeLmConfig;
  BindOptions<C>(m, "NativeLmConfig",
                 "Shape of the decoder NativeLm runs. Keyword-only; invalid values raise InputError.",
                 Required("num_layers", &C::num_layers, "Decoder layers."),
                 Required("hidden_size", &C::hidden_size, "Width of the residual stream."),
                 Required("num_heads", &C::num_heads, "Query heads."),
                 Required("num_kv_heads", &C::num_kv_heads, "Key/value heads (GQA)."),
                 Required("head_dim", &C::head_dim, "Dimension of one head (even)."),
                 Required("intermediate_size", &C::intermediate_size, "Width of the MLP."),
                 Required("head_rows", &C::head_rows, "Rows of the output head (logits per row)."),
                 Required("max_positions", &C::max_positions, "Rows of the rotary tables."),
                 Optional("rms_norm_eps", &C::rms_norm_eps, "RMSNorm epsilon."),
                 Optional("threads", &C::threads, "Threads of the matrix products and of attention."),
                 Optional("kernel", &C::kernel, "Matrix kernel: 'auto', 'avx512vnni', 'avx2' or 'scalar'."));

  py::class_<PyQuantMatrix>(m, "QuantMatrix",
                            "A weight-only quantised matrix W [n, k] in ONNX Runtime's MatMulNBits layout (y = x W^T): "
                            "data uint8 [n, ceil(k/block), block*bits/8], scales float32 [n*ceil(k/block)], "
                            "zero_points uint8 (4 bits: two per byte per row, rows padded to whole bytes; 8 bits: one "
                            "per block).")
      .def(py::init(&MakeMatrix), py::kw_only(), py::arg("n"), py::arg("k"), py::arg("bits"), py::arg("block"),
           py::arg("data"), py::arg("scales"), py::arg("zero_points"))
      .def_property_readonly("n", [](const PyQuantMatrix &q) { return q.matrix.n; })
      .def_property_readonly("k", [](const PyQuantMatrix &q) { return q.matrix.k; })
      .def_property_readonly("bits", [](const PyQuantMatrix &q) { return q.matrix.bits; })
      .def_property_readonly("block", [](const PyQuantMatrix &q) { return q.matrix.block; });

  const char *who = "NativeLm";
  py::class_<NativeLm>(m, "NativeLm",
                       "A Llama decoder's forward pass in C++ for decode steps (few rows) over a quantised layered "
                       "LM's weights, with llasa-rt's int4/int8 matrix kernels and attention over a KvCache. Set the "
                       "embedding, rotary tables, every layer and the head, then run() (calls from several threads are "
                       "serialised).")
      .def(py::init<const NativeLmConfig &>(), py::arg("config"), "Raises InputError when the config is invalid.")
      .def_property_readonly("config", &NativeLm::config, py::return_value_policy::copy, "The NativeLmConfig (a copy).")
      .def_property_readonly("kernel", &NativeLm::kernel, "The matrix kernel in use: 'avx512vnni', 'avx2' or 'scalar'.")
      .def_property_readonly("weight_bytes", &NativeLm::weight_bytes, "Bytes of the repacked weights it holds.")
      .def_property_readonly("ready", &NativeLm::ready, "True once every weight is set.")
      .def(
          "set_embedding",
          [who](NativeLm &self, int bits, int block, const py::array &data, const py::array &scales,
                const py::array &zero_points) {
            const int hidden = self.config().hidden_size;
            if (data.ndim() != 2) throw std::invalid_argument("NativeLm.set_embedding: data must be [vocab, bytes]");
            const py::ssize_t vocab = data.shape(0);
            const py::ssize_t blocks = block > 0 ? hidden / block : 0;
            const py::ssize_t zp_row = bits == 4 ? (blocks + 1) / 2 : blocks;
            const auto *d = Checked<uint8_t>(data, who, "embedding data", {vocab, hidden * bits / 8}, false, "uint8");
            const auto *s = Checked<float>(scales, who, "embedding scales", {vocab, blocks}, false, "float32");
            const auto *z =
                Checked<uint8_t>(zero_points, who, "embedding zero_points", {vocab, zp_row}, false, "uint8");
            self.SetEmbedding(static_cast<int>(vocab), bits, block, d, s, z);
          },
          py::arg("bits"), py::arg("block"), py::arg("data"), py::arg("scales"), py::arg("zero_points"),
          py::keep_alive<1, 4>(), py::keep_alive<1, 5>(), py::keep_alive<1, 6>(),
          "Token embeddings in GatherBlockQuantized layout: data uint8 [vocab, hidden*bits/8], scales float32 "
          "[vocab, hidden/block], zero_points uint8 [vocab, hidden/block*bits/8]. Not copied (kept alive).")
      .def(
          "set_rotary",
          [who](NativeLm &self, const py::array &cos, const py::array &sin) {
            const NativeLmConfig &c = self.config();
            const std::vector<py::ssize_t> shape{c.max_positions, c.head_dim / 2};
            self.SetRotary(Checked<float>(cos, who, "cos", shape, false, "float32"),
                           Checked<float>(sin, who, "sin", shape, false, "float32"));
          },
          py::arg("cos"), py::arg("sin"), "Rotary tables float32 [max_positions, head_dim/2]; copied.")
      .def(
          "set_layer",
          [who](NativeLm &self, int layer, const py::array &input_norm, const PyQuantMatrix &qkv,
                const PyQuantMatrix &o,
                const py::array &post_norm, const PyQuantMatrix &gate_up, const PyQuantMatrix &down) {
            const py::ssize_t h = self.config().hidden_size;
            const float *in = Checked<float>(input_norm, who, "input_norm", {h}, false, "float32");
            const float *post = Checked<float>(post_norm, who, "post_norm", {h}, false, "float32");
            py::gil_scoped_release release;
            self.SetLayer(layer, in, qkv.matrix, o.matrix, post, gate_up.matrix, down.matrix);
          },
          py::arg("layer"), py::arg("input_norm"), py::arg("qkv"), py::arg("o"), py::arg("post_norm"),
          py::arg("gate_up"), py::arg("down"),
          "Layer weights: RMSNorm weights float32 [hidden], QuantMatrix q|k|v, o_proj, gate|up, down; copied.")
      .def(
          "set_head",
          [who](NativeLm &self, const py::array &final_norm, const PyQuantMatrix &head) {
            const float *norm = Checked<float>(final_norm, who, "final_norm", {self.config().hidden_size}, false,
                                               "float32");
            py::gil_scoped_release release;
            self.SetHead(norm, head.matrix);
          },
          py::arg("final_norm"), py::arg("head"), "Final RMSNorm weight float32 [hidden] and the head; copied.")
      .def(
          "run",
          [who](NativeLm &self, KvCache &cache, const py::array &input_ids, const py::array &position_ids,
                const py::array &slots,
                const py::array &past_lens, int prefix_slot, int prefix_len, const py::array &logits) {
            if (input_ids.ndim() != 2) throw std::invalid_argument("NativeLm.run: input_ids must be [batch, seq]");
            const py::ssize_t batch = input_ids.shape(0), seq = input_ids.shape(1);
            const auto *ids = Checked<int64_t>(input_ids, who, "input_ids", {batch, seq}, false, "int64");
            const auto *pos = Checked<int64_t>(position_ids, who, "position_ids", {batch, seq}, false, "int64");
            const int *sp = Checked<int>(slots, who, "slots", {batch}, false, "int32");
            const int *pp = Checked<int>(past_lens, who, "past_lens", {batch}, false, "int32");
            float *out = Checked<float>(logits, who, "logits", {batch, self.config().head_rows}, true, "float32");
            py::gil_scoped_release release;
            self.Run(cache, ids, pos, static_cast<int>(batch), static_cast<int>(seq), sp, pp, prefix_slot, prefix_len,
                     out);
          },
          py::arg("cache"), py::arg("input_ids"), py::arg("position_ids"), py::arg("slots"), py::arg("past_lens"),
          py::arg("prefix_slot"),
          py::arg("prefix_len"), py::arg("logits"),
          "One step over `cache` (a KvCache of this model's shape; keep it alive while this NativeLm is used with it): "
          "input_ids and position_ids int64 [batch, seq], slots and past_lens int32 [batch] (as "
          "Attention.run), logits float32 [batch, head_rows] of each row's last position. Bad arguments raise "
          "InputError / IndexError before anything is written.");
}

}  // namespace python
}  // namespace llasa_rt
