// llasa-rt: what this build of the core contains.
#include "llasa_rt/build_info.h"

// Set to 1 by CMake only when the TensorRT backend is compiled into the core (LLASA_RT_WITH_TENSORRT and found).
#ifndef LLASA_RT_TENSORRT_BACKEND
#define LLASA_RT_TENSORRT_BACKEND 0
#endif

namespace llasa_rt {

BuildInfo GetBuildInfo() {
  BuildInfo info;
  info.version = LLASA_RT_VERSION;
  info.compiler = LLASA_RT_COMPILER;
  info.tensorrt = LLASA_RT_TENSORRT_BACKEND != 0;
  return info;
}

}  // namespace llasa_rt
