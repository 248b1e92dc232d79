"""llasa_rt.calibration: prompt sets and measurements of how far quantised graphs drift from a reference.

`drift.measure_drift(reference_bundle, candidate_bundle)` (CLI: `llasa-rt compare`) compares two LMs on the
same tokens. INT8 calibration data for TensorRT (explicit Q/DQ) will live here too; it does not exist yet.
"""
