"""The runtimes edgefold checks models with: onnxruntime on the CPU and TensorRT (through Polygraphy),
imported lazily; nothing above this layer imports tensorrt or onnxruntime directly."""
