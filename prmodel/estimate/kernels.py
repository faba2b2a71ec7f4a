"""ONNX networks as the kernels a runtime executes: fusion and the mapping of ops to layers.

:func:`network_kernels` lists the kernels a target runs for a loaded
:class:`~prmodel.networks.Network`, each mapped to a :class:`~prmodel.layers.LayerConfig`
where prmodel has a layer kind for it:

- **Targets whose runtime rewrites the graph** (a :class:`~prmodel.targets.base.GraphOptimizer`,
  e.g. ONNX Runtime): the target hands over the graph it runs, so the kernels are the
  runtime's fused ones: ``FusedConv``, ``com.microsoft.nchwc`` ``Conv`` with a fused activation
  and residual ("Sum") input, ``FusedGemm``, NCHWc pools, ``ReorderInput``/``ReorderOutput``,
  MatMul+Add as ``Gemm``, batch-norm folded into the conv.
- **Other targets** (simulators, the analytic model): the exported graph with a simple
  fusion of our own: conv (+ batch-norm) (+ residual add) (+ activation), MatMul + bias add
  as dense, Gemm (+ activation).

NCHWc tensors carry channel counts padded up to the block size (16 with AVX-512). A kernel
inside an NCHWc region is mapped with the **padded** channel counts read from ORT's
reordered weights: that is the computation the kernel performs, and it is also exactly what
a lone layer with the logical count runs (ORT pads it the same way, so both sit on the same
latency plateau, at its upper end, where the Performance Representatives were measured).
The first conv of a network reads the NCHW input directly and keeps its real input
channels, as ORT does.

Reshape-like ops cost nothing (``free``); ops without a layer kind (Concat, Softmax,
Transpose, layout reorders, ...) are listed as unmapped with their bytes moved, so the
estimator can give them a fallback cost; compute-heavy ops prmodel cannot express (3-D or
transposed convolutions, recurrent layers, ...) are refused unless ``strict=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from prmodel.estimate._graph import (
    MS_DOMAIN,
    NCHWC_DOMAIN,
    GraphView,
    Node,
    Window,
    window,
)
from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind
from prmodel.networks import Network, NetworkError, Shape, load_network
from prmodel.targets.base import GraphOptimizer, Target

FREE_OPS = frozenset(
    {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Size", "Constant"}
    | {"Dropout"}
)
"""Ops that cost nothing: metadata changes and views (ORT runs them in place)."""

LAYOUT_OPS = frozenset(
    {"ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost"}
)
"""Ops that only move data between layouts or devices (unmapped, with their bytes moved)."""

COMPUTE_OPS = frozenset(
    {
        "ConvTranspose",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "DeformConv",
        "LSTM",
        "GRU",
        "RNN",
        "Einsum",
        "Attention",
        "MultiHeadAttention",
        "GroupQueryAttention",
    }
)
"""Compute-heavy ops without a layer kind: a bytes-moved fallback would hide their cost."""

_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "Relu": ("relu", ""),
    "Sigmoid": ("sigmoid", ""),
    "HardSwish": ("hardswish", ""),
    "Gelu": ("gelu", ""),
    "LeakyRelu": ("relu", "LeakyRelu as relu"),
    "PRelu": ("relu", "PRelu as relu"),
    "Elu": ("relu", "Elu as relu"),
    "Tanh": ("sigmoid", "Tanh as sigmoid"),
    "HardSigmoid": ("hardswish", "HardSigmoid as hardswish"),
    "FastGelu": ("gelu", "FastGelu as gelu"),
    "BiasGelu": ("gelu", "BiasGelu as gelu"),
    "QuickGelu": ("sigmoid", "QuickGelu (x·sigmoid) as sigmoid"),
}
"""Activations by op: the layer activation that models them and the approximation made.
QuickGelu (``x * sigmoid(a * x)``, what ORT makes of SiLU/Swish) costs what Sigmoid does on
the CPU provider (within 10 % at 14x14 to 112x112, 32 to 480 channels), Gelu 1.7 times more."""

_ELEMENTWISE: dict[str, tuple[LayerKind, str]] = {
    "Add": (LayerKind.ADD, ""),
    "Sub": (LayerKind.ADD, "Sub as add"),
    "Mul": (LayerKind.MUL, ""),
    "Div": (LayerKind.MUL, "Div as mul"),
}
"""Binary element-wise ops by op: the layer kind that models them (same memory traffic)."""


EstimateError = NetworkError
"""A model the estimator cannot read, map or run (one sentence names the file, node, op):
the estimate stage's name for :class:`~prmodel.networks.NetworkError`."""


@dataclass(frozen=True)
class Kernel:
    """One kernel of a network as the runtime executes it.

    ``layer`` is the layer that models it (None where prmodel has no kind for it);
    ``fused_ops`` the ONNX ops it executes, e.g. ``("Conv", "Add", "Relu")``; ``free``
    marks metadata-only ops; ``compute_bound`` an unmapped op whose cost is arithmetic,
    not memory traffic. ``bytes_moved`` counts inputs, weights and outputs.
    """

    name: str
    op: str
    fused_ops: tuple[str, ...]
    layer: LayerConfig | None
    input_shapes: tuple[Shape | None, ...] = ()
    output_shapes: tuple[Shape | None, ...] = ()
    bytes_moved: int = 0
    weight_bytes: int = 0
    free: bool = False
    compute_bound: bool = False
    note: str = ""

    @property
    def status(self) -> str:
        """``layer`` (mapped to a layer kind), ``free`` or ``unmapped``."""
        if self.free:
            return "free"
        return "layer" if self.layer is not None else "unmapped"

    @property
    def description(self) -> str:
        """The layer's label, or the op and its largest output shape."""
        if self.layer is not None:
            return self.layer.label
        shape = next((s for s in self.output_shapes if s is not None), None)
        return f"{self.op} {'x'.join(map(str, shape))}" if shape else self.op


@dataclass(frozen=True, eq=False)
class NetworkKernels:
    """The kernels of one network on one target, in execution order."""

    network: Network
    kernels: tuple[Kernel, ...]
    runtime: str
    """How the kernels were found, e.g. ``onnxruntime optimizer (ort-cpu-avx2-3f9c-t1-all)``."""


ModelInput = str | Path | onnx.ModelProto | Network | NetworkKernels
"""What the estimate stage takes as a network: a file, a ModelProto, a loaded network or its
kernels (already mapped)."""
InputShapes = Mapping[str, Sequence[int]] | None
"""Static shapes of dynamic graph inputs, by name (see :func:`~prmodel.networks.load_network`)."""


def as_network(model: ModelInput, input_shapes: InputShapes = None) -> Network:
    """The loaded network of ``model`` (read and validated where it is a file or ModelProto).

    Raises:
        EstimateError: the model cannot be read (see :func:`~prmodel.networks.load_network`).
    """
    if isinstance(model, NetworkKernels):
        return model.network
    if isinstance(model, Network):
        return model
    return load_network(model, input_shapes=input_shapes)


def network_kernels(network: Network, target: Target, *, strict: bool = True) -> NetworkKernels:
    """The kernels ``target`` runs for ``network``, each mapped to a layer where possible.

    Args:
        network: From :func:`~prmodel.networks.load_network`.
        target: Any target; one whose runtime rewrites networks
            (:class:`~prmodel.targets.base.GraphOptimizer`) gives the graph it runs.
        strict: Refuse compute-heavy ops that cannot be mapped (else list them unmapped).

    Raises:
        EstimateError: the runtime cannot load the model, or (strict) an op that cannot be
            mapped.
    """
    if isinstance(target, GraphOptimizer):
        kernels = _optimized_kernels(network, target)
        runtime = f"{target.runtime_name} optimizer ({target.target_id})"
    else:
        kernels = _fused_kernels(network)
        runtime = "exported graph with conv/dense fusion"
    if strict:
        _refuse_compute_ops(kernels, network.source)
    return NetworkKernels(network=network, kernels=tuple(kernels), runtime=runtime)


def _refuse_compute_ops(kernels: Sequence[Kernel], source: str) -> None:
    for kernel in kernels:
        if kernel.compute_bound:
            raise EstimateError(
                f"node {kernel.name!r} ({kernel.op}) of {source} cannot be mapped to a layer "
                f"the estimator models ({kernel.note}); pass --allow-unmapped (strict=False) "
                "to estimate the rest and list it as unmodelled"
            )


def _optimized_kernels(network: Network, target: GraphOptimizer) -> list[Kernel]:
    view = GraphView.of(target.optimized_graph(network), network.shapes, network.dtypes)
    if any(n.domain == NCHWC_DOMAIN and n.op == "ReorderInput" for n in view.nodes):
        view.block = target.nchwc_block()
    view.propagate_shapes()
    return [_kernel(view, [node]) for node in view.nodes]


# -- the exported graph with a simple fusion (non-ORT targets) --------------------------------


def _fused_kernels(network: Network) -> list[Kernel]:
    view = GraphView.of(network.model, network.shapes, network.dtypes)
    groups: list[list[Node]] = []
    absorbed: set[str] = set()
    for node in view.nodes:
        if node.name in absorbed:
            continue
        group = _fusion_group(view, node, absorbed)
        absorbed.update(n.name for n in group[1:])
        groups.append(group)
    position = {node.name: i for i, node in enumerate(view.nodes)}
    groups.sort(key=lambda g: position[g[-1].name])  # a fused kernel runs at its last node
    return [_kernel(view, group) for group in groups]


def _fusion_group(view: GraphView, anchor: Node, absorbed: set[str]) -> list[Node]:
    """The anchor and the nodes fused behind it (conv: BN, residual add, activation).

    A residual Add whose two inputs both come from convs is fused into the first of them
    in graph order, like ONNX Runtime's NCHWc "Sum" fusion of ``Add(main, shortcut)``.
    """
    group = [anchor]

    def absorb(accepts: Callable[[Node], bool]) -> None:
        last = group[-1]
        consumers = view.consumers.get(last.outputs[0], [])
        alone = len(consumers) == 1 and last.outputs[0] not in view.graph_outputs
        if alone and consumers[0].name not in absorbed and accepts(consumers[0]):
            group.append(consumers[0])

    if anchor.op == "Conv":
        absorb(lambda n: n.op == "BatchNormalization")
        absorb(lambda n: n.op == "Add" and _is_residual(view, n, group[-1]))
        absorb(lambda n: _activation_of(view, n) is not None)
    elif anchor.op == "MatMul" and anchor.inputs[1] in view.weights:
        absorb(lambda n: n.op == "Add" and _has_weight_input(view, n))
        absorb(lambda n: _activation_of(view, n) is not None)
    elif anchor.op == "Gemm":
        absorb(lambda n: _activation_of(view, n) is not None)
    return group


def _is_residual(view: GraphView, add: Node, producer: Node) -> bool:
    others = [name for name in add.inputs if name != producer.outputs[0]]
    if len(others) != 1 or others[0] in view.weights:
        return False
    return view.shape(others[0]) == view.shape(producer.outputs[0])


def _has_weight_input(view: GraphView, node: Node) -> bool:
    return any(name in view.weights for name in node.inputs)


# -- mapping kernels to layers ----------------------------------------------------------------


@dataclass(frozen=True)
class _Mapping:
    layer: LayerConfig | None = None
    note: str = ""
    free: bool = False
    compute_bound: bool = False


def _kernel(view: GraphView, group: Sequence[Node]) -> Kernel:
    anchor, last = group[0], group[-1]
    mapping = _map_group(view, group)
    inputs = _group_inputs(group)
    weights = [n for n in inputs if n in view.weights]
    outputs = [n for n in last.outputs if n]
    return Kernel(
        name=anchor.name,
        op=anchor.qualified_op,
        fused_ops=_fused_ops(group),
        layer=mapping.layer,
        input_shapes=tuple(view.shape(n) for n in inputs if n not in view.weights),
        output_shapes=tuple(view.shape(n) for n in outputs),
        bytes_moved=sum(view.tensor_bytes(n) for n in (*inputs, *outputs)),
        weight_bytes=sum(view.tensor_bytes(n) for n in weights),
        free=mapping.free,
        compute_bound=mapping.compute_bound,
        note=mapping.note,
    )


def _group_inputs(group: Sequence[Node]) -> list[str]:
    produced = {name for node in group for name in node.outputs}
    seen: list[str] = []
    for node in group:
        for name in node.inputs:
            if name and name not in produced and name not in seen:
                seen.append(name)
    return seen


def _fused_ops(group: Sequence[Node]) -> tuple[str, ...]:
    if len(group) > 1:
        return tuple(n.op for n in group)
    node = group[0]
    ops = [node.op.removeprefix("Fused")]
    summed = (node.domain, node.op) in ((NCHWC_DOMAIN, "Conv"), (MS_DOMAIN, "FusedConv"))
    if summed and len(node.inputs) > 3 and node.inputs[3]:
        ops.append("Add")
    if node.attrs.get("activation"):
        ops.append(str(node.attrs["activation"]))
    return tuple(ops)


def _map_group(view: GraphView, group: Sequence[Node]) -> _Mapping:
    anchor = group[0]
    try:
        if len(group) > 1:
            return _map_fused_group(view, group)
        return _map_node(view, anchor)
    except InvalidLayerError as exc:
        return _Mapping(note=f"no layer: {exc}")


def _map_node(view: GraphView, node: Node) -> _Mapping:
    op = node.op
    if op in LAYOUT_OPS:
        return _Mapping(note="layout reorder" if "Memcpy" not in op else "device copy")
    if op in FREE_OPS:
        return _Mapping(free=True)
    if op in ("Conv", "FusedConv"):
        return _map_conv(view, node, _node_activation(view, node), _has_sum_input(node))
    if op in ("Gemm", "FusedGemm", "MatMul", "FusedMatMul"):
        return _map_dense(view, node, _node_activation(view, node))
    if op in ("MaxPool", "AveragePool"):
        return _map_pool(view, node)
    if op in ("GlobalAveragePool", "ReduceMean"):
        return _map_global_pool(view, node)
    if op in _ELEMENTWISE:
        kind, note = _ELEMENTWISE[op]
        return _map_elementwise(view, node, kind, note)
    activation = _activation_of(view, node)
    if activation is not None:
        return _map_elementwise(view, node, LayerKind(activation[0]), activation[1])
    if op in COMPUTE_OPS:
        return _Mapping(note=f"{op} has no layer kind", compute_bound=True)
    return _Mapping(note="no layer kind")


def _map_fused_group(view: GraphView, group: Sequence[Node]) -> _Mapping:
    anchor = group[0]
    activation: tuple[str, str] | None = None
    residual = False
    for node in group[1:]:
        if node.op == "Add" and anchor.op == "Conv":
            residual = True
        elif node.op != "Add" and node.op != "BatchNormalization":
            activation = _activation_of(view, node)
    if anchor.op == "Conv":
        return _map_conv(view, anchor, activation, residual)
    return _map_dense(view, anchor, activation)


def _has_sum_input(node: Node) -> bool:
    return node.op in ("Conv", "FusedConv") and len(node.inputs) > 3 and bool(node.inputs[3])


def _node_activation(view: GraphView, node: Node) -> tuple[str, str] | None:
    """The activation fused into an ORT conv or gemm kernel (its ``activation`` attribute)."""
    name = node.attrs.get("activation")
    if not name:
        return None
    if name == "Clip":
        params = tuple(node.attrs.get("activation_params") or ())
        return ("relu6", "" if params == (0.0, 6.0) else f"Clip{params} as relu6")
    return _ACTIVATIONS.get(str(name), ("relu", f"{name} as relu"))


def _activation_of(view: GraphView, node: Node) -> tuple[str, str] | None:
    """The layer activation that models a standalone activation node, if any."""
    if node.op == "Clip":
        low, high = _clip_bounds(view, node)
        return ("relu6", "" if (low, high) == (0.0, 6.0) else f"Clip({low}, {high}) as relu6")
    return _ACTIVATIONS.get(node.op)


def _clip_bounds(view: GraphView, node: Node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11 style
        return node.attrs.get("min"), node.attrs.get("max")
    bounds: list[float | None] = []
    for index in (1, 2):
        name = node.inputs[index] if len(node.inputs) > index else ""
        value = view.constants.get(name) if name else None
        bounds.append(float(value) if value is not None and value.size == 1 else None)
    return bounds[0], bounds[1]


def _map_conv(
    view: GraphView, node: Node, activation: tuple[str, str] | None, residual: bool
) -> _Mapping:
    x, w = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if x is None or w is None:
        return _Mapping(note="conv with unknown shapes", compute_bound=True)
    if len(x) == 3:  # Conv1d: a conv over a 1-pixel-high image
        x, w = (x[0], x[1], 1, x[2]), (w[0], w[1], 1, w[2])
        attrs = _attrs_2d(node.attrs)
    elif len(x) == 4:
        attrs = dict(node.attrs)
    else:
        return _Mapping(note=f"{len(x) - 2}-D convolution", compute_bound=True)
    groups = int(attrs.get("group", 1))
    win = window(x[2:], w[2:], attrs)
    pads = [_symmetric_pad(x[2 + i], win, i) for i in range(2)]
    act_name, act_note = activation or (None, "")
    layer = LayerConfig.create(
        LayerKind.CONV,
        batch=x[0],
        channels=w[1] * groups,
        height=x[2],
        width=x[3],
        out_channels=w[0],
        kernel_h=w[2],
        kernel_w=w[3],
        stride_h=win.strides[0],
        stride_w=win.strides[1],
        pad_h=pads[0][0],
        pad_w=pads[1][0],
        dilation_h=win.dilations[0],
        dilation_w=win.dilations[1],
        groups=groups,
        activation=act_name,
        residual=residual,
    )
    notes = [n for n in (act_note, pads[0][1], pads[1][1]) if n]
    if w[1] * groups != x[1]:
        notes.append(f"input channels {x[1]} as {w[1] * groups}")
    return _Mapping(layer=layer, note="; ".join(notes))


def _attrs_2d(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """1-D window attributes as 2-D ones over a height of 1."""
    result = dict(attrs)
    for key, unit in (("strides", 1), ("dilations", 1), ("kernel_shape", 1)):
        if attrs.get(key):
            result[key] = [unit, *attrs[key]]
    if attrs.get("pads"):
        begin, end = attrs["pads"]
        result["pads"] = [0, begin, 0, end]
    return result


def _symmetric_pad(size: int, win: Window, axis: int) -> tuple[int, str]:
    """The symmetric pad giving the same output size (layers have one pad per axis)."""
    begin, end = win.begins[axis], win.ends[axis]
    if begin == end:
        return begin, ""
    extent = win.dilations[axis] * (win.kernel[axis] - 1) + 1
    wanted = (size + begin + end - extent) // win.strides[axis]
    pad = (begin + end) // 2
    if (size + 2 * pad - extent) // win.strides[axis] != wanted:
        pad += 1
    return pad, f"pads {begin}/{end} as {pad}"


def _map_dense(view: GraphView, node: Node, activation: tuple[str, str] | None) -> _Mapping:
    a, b = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if a is None or b is None or len(a) < 1 or len(b) < 2:
        return _Mapping(note="matrix product with unknown shapes", compute_bound=True)
    trans_a, trans_b = bool(node.attrs.get("transA")), bool(node.attrs.get("transB"))
    if len(a) == 1:
        a = (1, *a)
    rows = a[-1] if trans_a else math.prod(a[:-1])
    depth = a[-2] if trans_a else a[-1]
    width = b[-2] if trans_b else b[-1]
    notes = []
    if node.inputs[1] not in view.weights:
        notes.append("both operands are activations")
    if len(b) > 2 and math.prod(b[:-2]) > 1:
        notes.append("batched matmul as dense")
    act_name, act_note = activation or (None, "")
    if act_note:
        notes.append(act_note)
    layer = LayerConfig.create(
        LayerKind.DENSE, batch=rows, channels=depth, out_channels=width, activation=act_name
    )
    return _Mapping(layer=layer, note="; ".join(notes))


def _map_pool(view: GraphView, node: Node) -> _Mapping:
    x = view.shape(node.inputs[0])
    kernel = tuple(node.attrs.get("kernel_shape") or ())
    if x is None or len(x) not in (3, 4) or len(kernel) != len(x) - 2:
        return _Mapping(note="pooling that is not 1-D or 2-D")
    attrs = dict(node.attrs)
    if len(x) == 3:
        x, kernel, attrs = (x[0], x[1], 1, x[2]), (1, *kernel), _attrs_2d(attrs)
    win = window(x[2:], kernel, attrs)
    pads = [_symmetric_pad(x[2 + i], win, i) for i in range(2)]
    notes = [n for n in (pads[0][1], pads[1][1]) if n]
    if win.ceil_mode:
        notes.append("ceil_mode as floor")
    if any(d != 1 for d in win.dilations):
        notes.append("dilation ignored")
    kind = LayerKind.MAXPOOL if node.op == "MaxPool" else LayerKind.AVGPOOL
    layer = LayerConfig.create(
        kind,
        batch=x[0],
        channels=x[1],
        height=x[2],
        width=x[3],
        kernel_h=kernel[0],
        kernel_w=kernel[1],
        stride_h=win.strides[0],
        stride_w=win.strides[1],
        pad_h=pads[0][0],
        pad_w=pads[1][0],
    )
    return _Mapping(layer=layer, note="; ".join(notes))


def _map_global_pool(view: GraphView, node: Node) -> _Mapping:
    x = view.shape(node.inputs[0])
    if x is None or len(x) != 4:
        return _Mapping(note="pooling over a tensor that is not NCHW")
    note = ""
    if node.op == "ReduceMean":
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1:
            value = view.constants.get(node.inputs[1])
            axes = value.tolist() if value is not None else None
        if sorted(int(a) % 4 for a in axes or ()) != [2, 3]:
            return _Mapping(note="no layer kind")
        note = "ReduceMean over H, W as globalavgpool"
    layer = LayerConfig.create(
        LayerKind.GLOBALAVGPOOL, batch=x[0], channels=x[1], height=x[2], width=x[3]
    )
    return _Mapping(layer=layer, note=note)


def _map_elementwise(view: GraphView, node: Node, kind: LayerKind, note: str) -> _Mapping:
    out = view.shape(node.outputs[0])
    if out is None:
        return _Mapping(note="element-wise op with unknown shape")
    notes = [note] if note else []
    operands = [view.shape(n) for n in node.inputs[:2] if n]
    if kind in (LayerKind.ADD, LayerKind.MUL) and any(s != out for s in operands):
        if sum(s is not None and math.prod(s) == math.prod(out) for s in operands) == 1:
            # One full-size operand (a per-channel scale, a bias): a unary op's traffic. On
            # the CPU provider it costs what a ReLU of the output does from 28x28 pixels up.
            kind, notes = LayerKind.RELU, [f"{node.op} of a broadcast operand as relu"]
        else:
            notes.append("broadcast operand as full size")
    batch, channels, height, width = as_nchw(out)
    layer = LayerConfig.create(kind, batch=batch, channels=channels, height=height, width=width)
    return _Mapping(layer=layer, note="; ".join(notes))


def as_nchw(shape: Shape) -> tuple[int, int, int, int]:
    """Any tensor shape as four NCHW sizes with the same element count."""
    dims = [max(int(d), 1) for d in shape] or [1]
    if len(dims) > 4:
        dims = [*dims[:3], math.prod(dims[3:])]
    dims += [1] * (4 - len(dims))
    return dims[0], dims[1], dims[2], dims[3]


__all__ = [
    "COMPUTE_OPS",
    "FREE_OPS",
    "LAYOUT_OPS",
    "EstimateError",
    "InputShapes",
    "Kernel",
    "ModelInput",
    "NetworkKernels",
    "as_nchw",
    "as_network",
    "network_kernels",
]
