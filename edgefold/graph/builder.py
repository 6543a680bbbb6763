"""A small builder for ONNX models made in code: the demo model, test fixtures and benchmarks."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class ModelBuilder:
    def __init__(self, opset: int = 17, seed: int = 0) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def input(self, name: str, shape: list, dtype=np.float32) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape))
        return name

    def const(self, value, stem: str = "c", as_node: bool = False) -> str:
        """An initializer, or a ``Constant`` node (as paddle2onnx writes every weight) with ``as_node``."""
        arr = np.asarray(value)
        name = self.name(stem)
        if as_node:
            self.nodes.append(helper.make_node("Constant", [], [name], name=name + "_node",
                                               value=numpy_helper.from_array(arr, name)))
        else:
            self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        return self.op_n(op_type, inputs, 1, name, **attrs)[0]

    def op_n(self, op_type: str, inputs: list[str], outputs: int, name: str | None = None, **attrs) -> list[str]:
        node_name = name or self.name(op_type.lower())
        outs = [f"{node_name}_out{i}" if outputs > 1 else f"{node_name}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs

    def conv(self, x: str, cin: int, cout: int, k: int | tuple[int, int] = 3, stride: int = 1, pad=None,
             group: int = 1, dilation: int = 1, bias: bool = True, auto_pad: str | None = None,
             name: str | None = None, const_nodes: bool = False) -> str:
        kh, kw = (k, k) if isinstance(k, int) else k
        fan_in = cin // group * kh * kw
        w = (self.rng.standard_normal((cout, cin // group, kh, kw)) / np.sqrt(fan_in)).astype(np.float32)
        ins = [x, self.const(w, "W", as_node=const_nodes)]
        if bias:
            ins.append(self.const((self.rng.standard_normal(cout) * 0.1).astype(np.float32), "B", as_node=const_nodes))
        attrs: dict = {"kernel_shape": [kh, kw], "strides": [stride, stride], "dilations": [dilation, dilation],
                       "group": group}
        if auto_pad:
            attrs["auto_pad"] = auto_pad
        else:
            if pad is None:
                pad = [kh // 2 * dilation, kw // 2 * dilation] * 2
            elif isinstance(pad, int):
                pad = [pad] * 4
            attrs["pads"] = list(pad)
        return self.op("Conv", ins, name=name, **attrs)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        outs = [helper.make_value_info(o, helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)) for o in outputs]
        graph = helper.make_graph(self.nodes, "edgefold_test", self.inputs, outs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="edgefold-builder")
        model.ir_version = min(model.ir_version, 8 if self.opset < 19 else 9)
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
        return model


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def gray_normalise(b: ModelBuilder, x: str, cast: bool = True) -> str:
    """The preprocessing users run on the CPU today, in the graph: u8 gray -> float, x3, /255, -mean, /std."""
    if cast:
        x = b.op("Cast", [x], to=onnx.TensorProto.FLOAT, name="to_float")
    x = b.op("Concat", [x, x, x], axis=1, name="gray_to_rgb")
    x = b.op("Div", [x, b.const(np.float32(255.0), "k255")], name="div255")
    x = b.op("Sub", [x, b.const(IMAGENET_MEAN.reshape(1, 3, 1, 1), "mean")], name="sub_mean")
    return b.op("Div", [x, b.const(IMAGENET_STD.reshape(1, 3, 1, 1), "std")], name="div_std")
