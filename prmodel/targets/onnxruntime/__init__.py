"""ONNX Runtime as a target: the target class, single-layer model builder, whole-network runs."""
