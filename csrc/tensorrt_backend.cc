// Binds tensorrt_backend.h: TensorRtOptions, TensorRtEngine and TensorRtBackend. Compiled only with the TensorRT
// backend (CMake option LLASA_RT_WITH_TENSORRT, when TensorRT and CUDA are found); llasa_rt.backends creates them
// for a bundle's "tensorrt" graph entry after checking the plan's facts and sha256 (backends/trt_plan.py).
#include "llasa_rt/tensorrt_backend.h"

#include <string>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindTensorRtBackend(py::module_ &m) {
  using O = TensorRtOptions;
  BindOptions<O>(m, "TensorRtOptions", "How the TensorRT backend runs a plan. Keyword-only; invalid values raise "
                                       "InputError.",
                 Optional("max_batch", &O::max_batch, "Rows of the plan's decode profile (build-engine --max-batch)."),
                 Optional("cuda_graphs", &O::cuda_graphs,
                          "Replay decode steps as CUDA graphs, one per (batch, mask bucket)."),
                 Optional("graph_bucket", &O::graph_bucket,
                          "With cuda_graphs: decode masks cover the past rounded up to this many positions."),
                 Optional("device", &O::device, "CUDA device."));

  py::class_<TensorRtEngine>(m, "TensorRtEngine", "A deserialised TensorRT plan, shared by its backends.")
      .def(py::init([](py::bytes plan, int device) {
             std::string data = plan;
             py::gil_scoped_release release;
             return new TensorRtEngine(data, device);
           }),
           py::arg("plan"), py::arg("device") = 0,
           "Deserialises the plan's bytes (read and checked by llasa_rt.backends.trt_plan.read_plan).");

  py::class_<TensorRtBackend, Backend>(m, "TensorRtBackend",
                                       "The LM plan as the decode loop's Backend, KV slots on the GPU.")
      .def(py::init<KvCache &, StepBuffers &, TensorRtEngine &, const TensorRtOptions &>(), py::arg("cache"),
           py::arg("buffers"), py::arg("engine"), py::arg("options"), py::keep_alive<1, 2>(), py::keep_alive<1, 3>(),
           py::keep_alive<1, 4>(), "Allocates the device slots and step buffers; the cache's slot copies go to it.")
      .def_property_readonly("graph_launches", &TensorRtBackend::graph_launches,
                             "Decode steps replayed from a captured CUDA graph so far.");
}

}  // namespace python
}  // namespace llasa_rt
