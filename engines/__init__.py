"""llasa_rt.engines: ONNX -> TensorRT plan building (builder, optimisation profiles, plan/version checks).

Reserved for the TensorRT path; nothing lives here yet. Bundles are written by `llasa_rt.bundle`.
"""
