"""Using a trained policy outside training: ``PolicyRunner`` for game loops, ONNX / TorchScript export and
its parity check, and ``OnnxRunner``, which needs only numpy and onnxruntime (this package imports no torch
at import time, so ``agents.deploy.onnx_runner`` loads on a machine without it).
"""
