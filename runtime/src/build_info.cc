// llasa-rt: what this build of the core contains.
#include "llasa_rt/build_info.h"

namespace llasa_rt {

BuildInfo GetBuildInfo() {
  BuildInfo info;
  info.version = LLASA_RT_VERSION;
  info.compiler = LLASA_RT_COMPILER;
  info.tensorrt = LLASA_RT_HAVE_TENSORRT != 0;
  return info;
}

}  // namespace llasa_rt
