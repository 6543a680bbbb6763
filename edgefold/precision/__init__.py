"""Precision preparation on the CPU, proven in onnxruntime before TensorRT sees it: FP16 ONNX, INT8 Q/DQ."""
