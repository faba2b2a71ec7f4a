"""A light view of one ONNX graph for the kernel mapper: nodes, tensor shapes, constants.

:class:`GraphView` holds the nodes of an exported or runtime-optimized graph with every known
tensor shape, element type and small constant; :meth:`GraphView.propagate_shapes` fills in the
shapes of tensors a runtime created (ONNX Runtime's NCHWc convs and pools, layout reorders,
fused ops), which ONNX's own shape inference does not know. :func:`window` and
:func:`window_outputs` resolve conv and pool windows (pads, ``auto_pad``, ``ceil_mode``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from prmodel.networks import STANDARD_DOMAINS, Shape

NCHWC_DOMAIN = "com.microsoft.nchwc"
"""ONNX Runtime's domain of blocked-layout (NCHWc) kernels."""
MS_DOMAIN = "com.microsoft"
"""ONNX Runtime's domain of its own fused kernels (FusedConv, FusedGemm, ...)."""


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]

    @property
    def qualified_op(self) -> str:
        if self.domain in (*STANDARD_DOMAINS, MS_DOMAIN):
            return self.op
        return f"{self.domain.rpartition('.')[2]}.{self.op}"


@dataclass
class GraphView:
    """Nodes of one graph plus every known tensor shape, dtype and small constant."""

    nodes: list[Node]
    shapes: dict[str, Shape]
    dtypes: dict[str, int]
    weights: dict[str, Shape]
    constants: dict[str, np.ndarray]
    graph_outputs: set[str]
    opset: int
    block: int = 1
    consumers: dict[str, list[Node]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, model: onnx.ModelProto, shapes: Mapping[str, Shape], dtypes: Mapping[str, int]
    ) -> GraphView:
        graph = model.graph
        nodes = [_node(n, i) for i, n in enumerate(graph.node)]
        view = cls(
            nodes=nodes,
            shapes=dict(shapes),
            dtypes=dict(dtypes),
            weights={t.name: tuple(t.dims) for t in graph.initializer},
            constants=_small_constants(graph),
            graph_outputs={v.name for v in graph.output},
            opset=max(
                (o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), default=17
            ),
        )
        for tensor in graph.initializer:
            view.shapes[tensor.name] = tuple(tensor.dims)
            view.dtypes[tensor.name] = tensor.data_type
        for node in nodes:
            for name in node.inputs:
                view.consumers.setdefault(name, []).append(node)
        return view

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name) if name else None

    def propagate_shapes(self) -> None:
        """Fill in shapes of tensors the runtime created (in topological order)."""
        for node in self.nodes:
            if all(name in self.shapes for name in node.outputs if name):
                continue
            for name, shape in zip(node.outputs, _output_shapes(self, node), strict=False):
                if name and shape is not None:
                    self.shapes.setdefault(name, shape)
                    if node.inputs and node.inputs[0] in self.dtypes:
                        self.dtypes.setdefault(name, self.dtypes[node.inputs[0]])

    def element_bytes(self, name: str) -> int:
        dtype = self.dtypes.get(name, onnx.TensorProto.FLOAT)
        try:
            return int(np.dtype(helper.tensor_dtype_to_np_dtype(dtype)).itemsize)
        except (KeyError, TypeError, ValueError):
            return 4

    def tensor_bytes(self, name: str) -> int:
        shape = self.shape(name)
        return math.prod(shape) * self.element_bytes(name) if shape is not None else 0


def _node(node: onnx.NodeProto, index: int) -> Node:
    attrs = {a.name: _attribute(a) for a in node.attribute}
    return Node(
        name=node.name or f"{node.op_type}_{index}",
        op=node.op_type,
        domain=node.domain,
        inputs=tuple(node.input),
        outputs=tuple(node.output),
        attrs=attrs,
    )


def _attribute(attr: onnx.AttributeProto) -> Any:
    if attr.type == onnx.AttributeProto.GRAPH:
        return None  # subgraphs (If/Loop bodies) are not inspected
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value) if math.prod(value.dims) <= 64 else None
    return value


def _small_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    constants: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if not external and math.prod(tensor.dims) <= 64:
            constants[tensor.name] = numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and math.prod(attr.t.dims) <= 64:
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    return constants


# -- shapes of tensors the runtime created ----------------------------------------------------


def _output_shapes(view: GraphView, node: Node) -> list[Shape | None]:
    rule = _SHAPE_RULES.get((node.domain, node.op))
    if rule is not None:
        return [rule(view, node)]
    if node.domain in STANDARD_DOMAINS:
        return _standard_output_shapes(view, node)
    if node.domain == MS_DOMAIN and node.op in _SAME_SHAPE_MS_OPS and node.inputs:
        return [view.shape(node.inputs[0])]
    return [None] * len(node.outputs)


_SAME_SHAPE_MS_OPS = frozenset(
    {"Gelu", "FastGelu", "BiasGelu", "QuickGelu", "SkipLayerNormalization", "BiasAdd"}
)


def _standard_output_shapes(
    view: GraphView, node: Node, op: str | None = None
) -> list[Shape | None]:
    """Output shapes by ONNX's own inference for one (standard-domain) node."""
    proto = helper.make_node(op or node.op, list(node.inputs), list(node.outputs))
    proto.attribute.extend(
        helper.make_attribute(k, v)
        for k, v in node.attrs.items()
        if v is not None and not k.startswith("activation")
    )
    types: dict[str, onnx.TypeProto] = {}
    for name in node.inputs:
        shape = view.shape(name)
        if name and shape is not None:
            types[name] = helper.make_tensor_type_proto(view.dtypes.get(name, 1), list(shape))
    # Shape-like operands (Reshape's shape, Split's sizes) must be passed by value.
    data = {
        name: numpy_helper.from_array(view.constants[name], name)
        for name in node.inputs
        if name in view.constants
    }
    try:
        schema = onnx.defs.get_schema(op or node.op, view.opset, "")
        outputs = shape_inference.infer_node_outputs(schema, proto, types, data)
    except Exception:  # an op or shape ONNX cannot infer: the tensor stays unknown
        return [None] * len(node.outputs)
    result: list[Shape | None] = []
    for name in node.outputs:
        tensor_type = outputs[name].tensor_type if name in outputs else None
        if tensor_type is None or not tensor_type.HasField("shape"):
            result.append(None)
            continue
        dims = tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims)
        result.append(tuple(d.dim_value for d in dims) if known else None)
    return result


def _conv_shape(view: GraphView, node: Node) -> Shape | None:
    x, w = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if x is None or w is None:
        return None
    spatial = window_outputs(x[2:], w[2:], node.attrs)
    return (x[0], w[0], *spatial) if spatial is not None else None


def _pool_shape(view: GraphView, node: Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    kernel = tuple(node.attrs.get("kernel_shape", ()))
    if x is None or not kernel:
        return None
    spatial = window_outputs(x[2:], kernel, node.attrs)
    return (x[0], x[1], *spatial) if spatial is not None else None


def _global_pool_shape(view: GraphView, node: Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    return (x[0], x[1], *([1] * (len(x) - 2))) if x is not None else None


def _reorder_input_shape(view: GraphView, node: Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    if x is None or len(x) != 4:
        return None
    n, c, h, w = (x[0], x[3], x[1], x[2]) if node.attrs.get("channels_last") else x
    return (n, math.ceil(c / view.block) * view.block, h, w)


def _reorder_output_shape(view: GraphView, node: Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    channels = int(node.attrs.get("channels", 0))
    if x is None or len(x) != 4 or channels < 1:
        return None
    if node.attrs.get("channels_last"):
        return (x[0], x[2], x[3], channels)
    return (x[0], channels, x[2], x[3])


def _upsample_shape(view: GraphView, node: Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    scales = node.attrs.get("scales") or ()
    if x is None or len(scales) != len(x):
        return None
    return tuple(int(d * s) for d, s in zip(x, scales, strict=True))


def _fused_gemm_shape(view: GraphView, node: Node) -> Shape | None:
    return _standard_output_shapes(view, node, "Gemm")[0]


def _fused_matmul_shape(view: GraphView, node: Node) -> Shape | None:
    a, b = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    m = a[-1] if node.attrs.get("transA") else a[-2]
    n = b[-2] if node.attrs.get("transB") else b[-1]
    batch = a[:-2] if len(a) >= len(b) else b[:-2]
    return (*batch, m, n)


_SHAPE_RULES: dict[tuple[str, str], Callable[[GraphView, Node], Shape | None]] = {
    (NCHWC_DOMAIN, "Conv"): _conv_shape,
    (MS_DOMAIN, "FusedConv"): _conv_shape,
    (NCHWC_DOMAIN, "MaxPool"): _pool_shape,
    (NCHWC_DOMAIN, "AveragePool"): _pool_shape,
    (NCHWC_DOMAIN, "GlobalMaxPool"): _global_pool_shape,
    (NCHWC_DOMAIN, "GlobalAveragePool"): _global_pool_shape,
    (NCHWC_DOMAIN, "ReorderInput"): _reorder_input_shape,
    (NCHWC_DOMAIN, "ReorderOutput"): _reorder_output_shape,
    (NCHWC_DOMAIN, "Upsample"): _upsample_shape,
    (MS_DOMAIN, "FusedGemm"): _fused_gemm_shape,
    (MS_DOMAIN, "FusedMatMul"): _fused_matmul_shape,
}


@dataclass(frozen=True)
class Window:
    """Per spatial axis: kernel, stride, begin pad, end pad, dilation."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool


def window(spatial: Sequence[int], kernel: Sequence[int], attrs: Mapping[str, Any]) -> Window:
    rank = len(kernel)
    strides = tuple(attrs.get("strides") or [1] * rank)
    dilations = tuple(attrs.get("dilations") or [1] * rank)
    pads = list(attrs.get("pads") or [0] * (2 * rank))
    auto_pad = str(attrs.get("auto_pad") or "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(rank):
            out = math.ceil(spatial[i] / strides[i])
            extent = dilations[i] * (kernel[i] - 1) + 1
            total = max((out - 1) * strides[i] + extent - spatial[i], 0)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + rank] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    return Window(
        kernel=tuple(kernel),
        strides=strides,
        begins=tuple(pads[:rank]),
        ends=tuple(pads[rank:]),
        dilations=dilations,
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )


def window_outputs(
    spatial: Sequence[int], kernel: Sequence[int], attrs: Mapping[str, Any]
) -> Shape | None:
    if len(spatial) != len(kernel):
        return None
    win = window(spatial, kernel, attrs)
    outputs = []
    for i, size in enumerate(spatial):
        span = size + win.begins[i] + win.ends[i] - win.dilations[i] * (win.kernel[i] - 1) - 1
        steps = math.ceil(span / win.strides[i]) if win.ceil_mode else span // win.strides[i]
        outputs.append(steps + 1)
    return tuple(outputs)


__all__ = [
    "MS_DOMAIN",
    "NCHWC_DOMAIN",
    "GraphView",
    "Node",
    "Window",
    "window",
    "window_outputs",
]
