"""llasa_rt.export: Hugging Face checkpoints to ONNX graphs and engine bundles.

Needs the `export` extra (torch, transformers, safetensors, onnx). Never imported by the runtime.
"""
