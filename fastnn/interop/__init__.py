"""Models in and out of fastnn: ONNX export and PyTorch conversion (optional dependencies, imported inside)."""
