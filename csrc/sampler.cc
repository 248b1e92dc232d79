// Binds sampler.h into llasa_rt._core.testing: the Sampler over NumPy logits, and the uniform draw behind it, so
// tests can compare the sampler with a reference. The decode loop runs the same Sampler internally.
#include "llasa_rt/sampler.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.h"

namespace llasa_rt {
namespace python {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using RowsArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using U64Array = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// Requests for a batch; `keep` holds the converted history arrays alive while the requests point into them.
std::vector<SampleRequest> MakeRequests(const Sampler &sampler, const FloatArray &logits, py::sequence histories,
                                        const U64Array &uids, const I64Array &steps, std::vector<RowsArray> &keep) {
  if (logits.ndim() != 2 || logits.shape(1) != sampler.rows()) {
    std::string shape = "[";
    for (py::ssize_t d = 0; d < logits.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(logits.shape(d));
    throw std::invalid_argument("logits must have shape [batch, " + std::to_string(sampler.rows()) + "], got " +
                                shape + "]");
  }
  const py::ssize_t batch = logits.shape(0);
  if (static_cast<py::ssize_t>(py::len(histories)) != batch || uids.ndim() != 1 || uids.shape(0) != batch ||
      steps.ndim() != 1 || steps.shape(0) != batch) {
    throw std::invalid_argument("histories, uids and steps need one entry per logits row (" + std::to_string(batch) +
                                ")");
  }
  std::vector<SampleRequest> requests(static_cast<size_t>(batch));
  keep.clear();
  for (py::ssize_t b = 0; b < batch; ++b) {
    keep.push_back(RowsArray::ensure(histories[static_cast<size_t>(b)]));
    const RowsArray &h = keep.back();
    if (!h || h.ndim() != 1) {
      throw std::invalid_argument("histories[" + std::to_string(b) + "] must be a 1-D sequence of rows");
    }
    if (steps.at(b) < 0) throw std::invalid_argument("steps[" + std::to_string(b) + "] must be >= 0");
    SampleRequest &q = requests[static_cast<size_t>(b)];
    q.logits = logits.data(b, 0);
    q.prompt_rows = h.data();
    q.prompt_rows_len = static_cast<size_t>(h.shape(0));
    q.uid = uids.at(b);
    q.step = static_cast<uint64_t>(steps.at(b));
  }
  return requests;
}

}  // namespace

void BindSampler(py::module_ &testing) {
  py::class_<Sampler>(testing, "Sampler",
                      "The decode loop's sampler on its own: one row per logits row, drawn as SamplingOptions say. "
                      "A draw depends only on (seed, uid, step), not on the batch, its order or the threads.")
      .def(py::init<int, int>(), py::kw_only(), py::arg("rows"), py::arg("threads") = 1,
           "`rows` logits per request, END last; `threads` share a batch.")
      .def_property_readonly("rows", &Sampler::rows, "Logits per request.")
      .def_property_readonly("threads", &Sampler::threads, "Threads sharing a batch, the caller's included.")
      .def(
          "sample",
          [](Sampler &s, const FloatArray &logits, py::sequence histories, const U64Array &uids, const I64Array &steps,
             const SamplingOptions &options) {
            std::vector<RowsArray> keep;
            std::vector<SampleRequest> requests = MakeRequests(s, logits, histories, uids, steps, keep);
            std::vector<SampleResult> results(requests.size());
            {
              py::gil_scoped_release release;
              s.Sample(requests.data(), static_cast<int>(requests.size()), options, results.data());
            }
            py::array_t<int32_t> rows(static_cast<py::ssize_t>(results.size()));
            py::array_t<double> logprobs(static_cast<py::ssize_t>(results.size()));
            for (size_t i = 0; i < results.size(); ++i) {
              rows.mutable_at(i) = results[i].row;
              logprobs.mutable_at(i) = results[i].logprob;
            }
            return py::make_tuple(rows, logprobs);
          },
          py::arg("logits"), py::arg("histories"), py::arg("uids"), py::arg("steps"), py::arg("options"),
          "Draws one row per logits row. logits: float32 [batch, rows]; per row: `histories` (rows counted by the "
          "repetition penalty), `uids` and `steps` (the draw's RNG stream and step; steps also count for "
          "min_new_tokens). Returns (rows int32 [batch], log-probs float64 [batch] under the unprocessed logits). "
          "Runs without the GIL.")
      .def(
          "distribution",
          [](Sampler &s, const FloatArray &logits, py::sequence histories, const I64Array &steps,
             const SamplingOptions &options) {
            U64Array uids(steps.size());
            std::fill(uids.mutable_data(), uids.mutable_data() + uids.size(), 0);
            std::vector<RowsArray> keep;
            std::vector<SampleRequest> requests = MakeRequests(s, logits, histories, uids, steps, keep);
            py::array_t<double> probs({static_cast<py::ssize_t>(requests.size()), static_cast<py::ssize_t>(s.rows())});
            for (size_t i = 0; i < requests.size(); ++i) s.Distribution(requests[i], options, probs.mutable_data(i, 0));
            return probs;
          },
          py::arg("logits"), py::arg("histories"), py::arg("steps"), py::arg("options"),
          "The probabilities each row would be drawn with (float64 [batch, rows]); one-hot when greedy.");
  testing.def("uniform_draw", &Sampler::UniformDraw, py::arg("seed"), py::arg("uid"), py::arg("step"),
              "The uniform number in [0, 1) that the sampler draws for candidate `uid` at `step` under `seed`.");
}

}  // namespace python
}  // namespace llasa_rt
