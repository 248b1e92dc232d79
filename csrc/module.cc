// llasa_rt._core: calls each header's Bind* function, a class before any signature that uses it.
#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace llasa_rt::python;
  m.doc() = "llasa-rt's C++ decode core: KV cache, candidates, sampler and decode loop. The Python API in "
            "llasa_rt (Engine) drives it.";
  py::module_ testing = m.def_submodule(
      "testing", "Parts of the core that the decode loop uses internally, bound for tests and tools (Sampler, "
                 "uniform_draw, CandidateSet). Not needed to generate speech.");
  BindErrors(m);
  BindBuildInfo(m);
  BindKvCache(m);
  BindAttention(m);
  BindNativeLm(m);
  BindStepBuffers(m);
  BindSamplingOptions(m);
  BindSampler(testing);
  BindCandidates(m, testing);
  BindBackend(m);
  BindGenerationController(m);
  BindGenerator(m);
  BindScheduler(m);
#if LLASA_RT_TENSORRT_BACKEND
  BindTensorRtBackend(m);
#endif
}
