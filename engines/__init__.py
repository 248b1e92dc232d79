"""llasa_rt.engines: ONNX -> TensorRT plans (`llasa-rt build-engine`).

- `profiles`: the optimisation profiles of the LM plan (prefill, decode) and the codec plan, from the bundle's facts;
- `build`: choosing the source graph of each precision, building with the TensorRT Python API, writing the plans
  and their facts (TensorRT version, GPU, profiles, source sha256) into the bundle.

The facts and the load-time checks live in the runtime (`llasa_rt.backends.trt_plan`), which never imports this
package. Nothing here has run with TensorRT (no GPU on the development machines); see docs/gpu.md.
"""
