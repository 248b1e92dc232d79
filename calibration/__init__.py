"""llasa_rt.calibration: quantisation calibration (activation ranges, smoothing, Q/DQ insertion for INT8/INT4).

Reserved for the TensorRT path's explicit quantisation; nothing lives here yet. How far a quantised bundle
drifts from a reference (`llasa-rt compare`) is measured by `llasa_rt.evaluation`.
"""
