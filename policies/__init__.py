"""Runtime policy artifacts: format, loading, validation, ONNX Runtime inference. Never imports torch."""
