// Declarations of the per-class binding functions, one per file in csrc/.
#pragma once

#include <pybind11/pybind11.h>

namespace llasa_rt {
namespace python {

void BindBuildInfo(pybind11::module_ &m);
void BindErrors(pybind11::module_ &m);
void BindCounterRng(pybind11::module_ &m);
void BindKvCacheConfig(pybind11::module_ &m);
void BindKvCache(pybind11::module_ &m);
void BindStepBuffers(pybind11::module_ &m);
void BindSamplingOptions(pybind11::module_ &m);
void BindSampler(pybind11::module_ &m);
void BindCandidate(pybind11::module_ &m);
void BindCandidateSet(pybind11::module_ &m);
void BindBackend(pybind11::module_ &m);
void BindGeneratorConfig(pybind11::module_ &m);
void BindStepTimings(pybind11::module_ &m);
void BindGenerationResult(pybind11::module_ &m);
void BindGenerationController(pybind11::module_ &m);
void BindGenerator(pybind11::module_ &m);

}  // namespace python
}  // namespace llasa_rt
