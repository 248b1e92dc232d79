// llasa-rt: what this build of the core contains (compiler, optional backends).
#pragma once

#include <string>

namespace llasa_rt {

// Facts fixed when the core was compiled.
struct BuildInfo {
  std::string version;    // llasa-rt core version.
  std::string compiler;   // Compiler id and version that built the core.
  bool tensorrt = false;  // True when the TensorRT backend was compiled in.
};

// Returns the facts of this build.
BuildInfo GetBuildInfo();

}  // namespace llasa_rt
