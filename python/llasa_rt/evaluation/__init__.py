"""llasa_rt.evaluation: measuring bundles against each other (no torch).

`drift.measure_drift(reference_bundle, candidate_bundle)` (CLI: `llasa-rt compare`) feeds two LMs the same
tokens and reports how far the candidate's distributions drift from the reference's.
"""
