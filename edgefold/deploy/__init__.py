"""TensorRT engines: the build plan, the one module that imports TensorRT (trt.py), sidecars."""
