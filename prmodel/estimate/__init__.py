"""From an ONNX network to latency: kernels as the runtime runs them, per-kernel and total
estimates, comparison with a measurement, and the whole-network calibration."""
