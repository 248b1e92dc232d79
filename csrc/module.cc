// llasa_rt._core: the pybind11 module. Each bound class lives in its own file; this file only
// calls their Bind* functions (in dependency order: a class is bound before signatures that use it).
#include <pybind11/pybind11.h>

#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "llasa-rt C++ decode core (KV cache, candidates, sampler, decode loop).";
  using namespace llasa_rt::python;
  BindBuildInfo(m);
  BindErrors(m);
  BindCounterRng(m);
  BindKvCacheConfig(m);
  BindKvCache(m);
  BindStepBuffers(m);
  BindSamplingOptions(m);
  BindSampler(m);
  BindCandidate(m);
  BindCandidateSet(m);
  BindBackend(m);
  BindGeneratorConfig(m);
  BindStepTimings(m);
  BindGenerationResult(m);
  BindGenerationController(m);
  BindGenerator(m);
}
