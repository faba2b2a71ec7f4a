"""ONNX networks as the kernels a runtime executes: loading, shapes, fusion and layer mapping.

:func:`load_network` reads and validates a model (opset 11 or newer, static shapes or
explicit input shapes) and runs ONNX shape inference. :func:`network_kernels` then lists the
kernels the target will run, each mapped to a :class:`~prmodel.layers.LayerConfig` where
prmodel has a layer kind for it:

- **ONNX Runtime targets** (anything with ``session_options()`` and ``providers()``): ORT's
  own optimizer runs at the target's optimization level and writes the optimized graph
  (``SessionOptions.optimized_model_filepath``), so the kernels are ORT's fused ones:
  ``FusedConv``, ``com.microsoft.nchwc`` ``Conv`` with a fused activation and residual
  ("Sum") input, ``FusedGemm``, NCHWc pools, ``ReorderInput``/``ReorderOutput``, MatMul+Add
  as ``Gemm``, batch-norm folded into the conv.
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
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from prmodel.errors import PrmodelError
from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind

MIN_OPSET = 11
"""The oldest default-domain opset the estimator reads (Clip takes its bounds as inputs)."""

Shape = tuple[int, ...]

_NCHWC = "com.microsoft.nchwc"
_MS = "com.microsoft"
_STANDARD = ("", "ai.onnx")
_LARGE_INITIALIZER = 1024  # elements; larger weights are never needed by value

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


class EstimateError(PrmodelError, ValueError):
    """A model the estimator cannot read or map (one sentence names the file, node, op)."""


# -- networks ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Network:
    """A validated ONNX model with static input shapes and every inferred tensor shape.

    ``model`` is the model to hand to a runtime (input shapes fixed, every node named);
    ``shapes`` and ``dtypes`` hold each tensor's static shape and ONNX element type where
    shape inference found them.
    """

    name: str
    source: str
    model: onnx.ModelProto
    shapes: Mapping[str, Shape]
    dtypes: Mapping[str, int]
    input_shapes: Mapping[str, Shape]
    opset: int
    path: Path | None = None
    modified: bool = False

    def model_source(self) -> str | bytes:
        """What a runtime should load: the file itself where unchanged, else the bytes."""
        if self.path is not None and not self.modified:
            return str(self.path)
        return self.model.SerializeToString()


def load_network(
    model: str | Path | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Network:
    """Read, validate and shape-infer an ONNX model.

    Args:
        model: A path to an ``.onnx`` file or a ``ModelProto`` (not modified).
        input_shapes: Static shapes for graph inputs, by name; required for inputs with
            dynamic dimensions. The key ``""`` stands for the only input of the model.

    Raises:
        EstimateError: a missing, non-ONNX or truncated file, an opset older than 11, an
            invalid model, a dynamic input without a shape, or a bad input shape.
    """
    proto, source, path = _read_model(model)
    opset = _check_opset(proto, source)
    _check_model(proto, source)
    renamed = _name_nodes(proto.graph)
    fixed = _fix_input_shapes(proto, dict(input_shapes or {}), source)
    shapes, dtypes = _infer_shapes(proto, source)
    name = path.stem if path is not None else (proto.graph.name or "model")
    return Network(
        name=name,
        source=source,
        model=proto,
        shapes=shapes,
        dtypes=dtypes,
        input_shapes=fixed,
        opset=opset,
        path=path,
        modified=renamed or bool(input_shapes),
    )


def parse_input_shapes(specs: Iterable[str]) -> dict[str, Shape]:
    """Parse ``name=1x3x224x224`` (or a bare ``1x3x224x224`` for the only input).

    Raises:
        EstimateError: a dimension that is not a positive integer.
    """
    shapes: dict[str, Shape] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep:
            name, dims = "", spec
        try:
            shape = tuple(int(d) for d in re.split(r"[x,]", dims.strip().lower()) if d)
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise EstimateError(
                f"input shape {spec!r} is not of the form name=1x3x224x224 with positive sizes"
            )
        shapes[name.strip()] = shape
    return shapes


def _read_model(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str, Path | None]:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy, f"model {model.graph.name or '<ModelProto>'!r}", None
    path = Path(model)
    if not path.is_file():
        raise EstimateError(f"model file {path} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, external data raises OSError
        raise EstimateError(
            f"{path} is not a readable ONNX model (truncated or not ONNX: {_first_line(exc)})"
        ) from None
    if not proto.graph.node or not proto.opset_import:
        raise EstimateError(f"{path} is not an ONNX model (it has no graph nodes or opset)")
    return proto, str(path), path


def _check_opset(proto: onnx.ModelProto, source: str) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in _STANDARD]
    if not versions:
        raise EstimateError(f"{source} imports no default-domain (ai.onnx) opset")
    opset = max(versions)
    if opset < MIN_OPSET:
        raise EstimateError(
            f"{source} uses opset {opset}; the estimator needs opset {MIN_OPSET} or newer "
            f"(convert it with onnx.version_converter.convert_version)"
        )
    return opset


def _check_model(proto: onnx.ModelProto, source: str) -> None:
    try:
        onnx.checker.check_model(_light_model(proto))
    except Exception as exc:
        raise EstimateError(f"{source} is not a valid ONNX model: {_first_line(exc)}") from None


def _light_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without large weight data (they become typed inputs): cheap to check."""
    graph = proto.graph
    light = helper.make_graph(
        list(graph.node),
        graph.name or "graph",
        list(graph.input),
        list(graph.output),
        [t for t in graph.initializer if math.prod(t.dims) <= _LARGE_INITIALIZER],
        value_info=list(graph.value_info),
    )
    declared = {v.name for v in graph.input}
    for tensor in graph.initializer:
        if math.prod(tensor.dims) > _LARGE_INITIALIZER and tensor.name not in declared:
            light.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    result = helper.make_model(
        light, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )
    result.functions.extend(proto.functions)
    return result


def _name_nodes(graph: onnx.GraphProto) -> bool:
    """Give every node a unique name (tables and profiles refer to nodes by name)."""
    seen: set[str] = set()
    changed = False
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            changed = True
        seen.add(node.name)
    return changed


def _graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    weights = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in weights]


def _fix_input_shapes(
    proto: onnx.ModelProto, given: dict[str, Sequence[int]], source: str
) -> dict[str, Shape]:
    inputs = _graph_inputs(proto)
    names = [v.name for v in inputs]
    if "" in given:
        if len(inputs) != 1:
            raise EstimateError(
                f"{source} has {len(inputs)} inputs ({', '.join(names)}); "
                "name the input in the shape, e.g. --input-shape name=1x3x224x224"
            )
        given[names[0]] = given.pop("")
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise EstimateError(
            f"{source} has no input named {unknown[0]!r} (inputs: {', '.join(names)})"
        )
    fixed: dict[str, Shape] = {}
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if value.name in given:
            fixed[value.name] = _set_dims(value, tuple(given[value.name]), source)
            continue
        declared = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
        if not value.type.tensor_type.HasField("shape") or any(
            not isinstance(d, int) or d < 1 for d in declared
        ):
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in declared)
            raise EstimateError(
                f"input {value.name!r} of {source} has a dynamic shape "
                f"({', '.join(map(str, declared)) or 'unknown rank'}); give it with "
                f"--input-shape {value.name}={example or '1x3x224x224'}"
            )
        fixed[value.name] = tuple(int(d) for d in declared)
    return fixed


def _set_dims(value: onnx.ValueInfoProto, shape: Shape, source: str) -> Shape:
    tensor_type = value.type.tensor_type
    if tensor_type.HasField("shape") and len(tensor_type.shape.dim) != len(shape):
        raise EstimateError(
            f"input shape {'x'.join(map(str, shape))} has {len(shape)} dimensions but input "
            f"{value.name!r} of {source} has {len(tensor_type.shape.dim)}"
        )
    for dim, size in zip(tensor_type.shape.dim, shape, strict=True):
        if dim.HasField("dim_value") and dim.dim_value not in (0, size):
            raise EstimateError(
                f"input {value.name!r} of {source} has the fixed shape "
                f"{_format_dims(tensor_type.shape)}, which --input-shape cannot change"
            )
    tensor_type.ClearField("shape")
    for size in shape:
        tensor_type.shape.dim.add().dim_value = size
    return shape


def _format_dims(shape: onnx.TensorShapeProto) -> str:
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else d.dim_param for d in shape.dim)


def _infer_shapes(proto: onnx.ModelProto, source: str) -> tuple[dict[str, Shape], dict[str, int]]:
    light = _light_model(proto)
    del light.graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise EstimateError(f"shape inference failed on {source}: {_first_line(exc)}") from None
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, int] = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        _record_value(value, shapes, dtypes)
    for tensor in proto.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
        dtypes[tensor.name] = tensor.data_type
    return shapes, dtypes


def _record_value(
    value: onnx.ValueInfoProto, shapes: dict[str, Shape], dtypes: dict[str, int]
) -> None:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return
    dtypes[value.name] = tensor_type.elem_type
    if not tensor_type.HasField("shape"):
        return
    dims = tensor_type.shape.dim
    if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
        shapes[value.name] = tuple(d.dim_value for d in dims)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip().rstrip(".")


# -- kernels ----------------------------------------------------------------------------------


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
    """How the kernels were found, e.g. ``onnxruntime optimizer (ort-cpu-t1-all)``."""


def network_kernels(network: Network, target: Any, *, strict: bool = True) -> NetworkKernels:
    """The kernels ``target`` runs for ``network``, each mapped to a layer where possible.

    Args:
        network: From :func:`load_network`.
        target: Any target; ONNX Runtime targets use ORT's optimized graph.
        strict: Refuse compute-heavy ops that cannot be mapped (else list them unmapped).

    Raises:
        EstimateError: ORT cannot load the model, or (strict) an op that cannot be mapped.
    """
    if is_onnxruntime_target(target):
        optimized = optimized_graph(network, target)
        kernels = _optimized_kernels(network, optimized, target)
        runtime = f"onnxruntime optimizer ({target.target_id})"
    else:
        kernels = _fused_kernels(network)
        runtime = "exported graph with conv/dense fusion"
    if strict:
        _refuse_compute_ops(kernels, network.source)
    return NetworkKernels(network=network, kernels=tuple(kernels), runtime=runtime)


def is_onnxruntime_target(target: Any) -> bool:
    """Whether ``target`` runs ONNX Runtime sessions (has session_options and providers)."""
    return callable(getattr(target, "session_options", None)) and callable(
        getattr(target, "providers", None)
    )


def _refuse_compute_ops(kernels: Sequence[Kernel], source: str) -> None:
    for kernel in kernels:
        if kernel.compute_bound:
            raise EstimateError(
                f"node {kernel.name!r} ({kernel.op}) of {source} cannot be mapped to a layer "
                f"the estimator models ({kernel.note}); pass --allow-unmapped (strict=False) "
                "to estimate the rest and list it as unmodelled"
            )


# -- ONNX Runtime's optimized graph -----------------------------------------------------------


def optimized_graph(network: Network, target: Any) -> onnx.ModelProto:
    """The graph ORT runs for ``network`` on ``target`` (weights stay out of memory).

    Raises:
        EstimateError: ONNX Runtime cannot load or optimize the model.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="prmodel-ort-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        options = target.session_options(profile=False)
        options.optimized_model_filepath = str(path)
        options.log_severity_level = 3  # ORT warns that NCHWc graphs are machine specific
        # Weights go to a side file that is never read back: only their shapes matter here.
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "weights.bin"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "4096"
        )
        # Pre-packing weights for the kernels comes after optimization: not needed here,
        # and it doubles session creation time for weight-heavy networks (VGG).
        options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            ort.InferenceSession(network.model_source(), options, providers=target.providers())
        except Exception as exc:
            raise EstimateError(
                f"ONNX Runtime cannot load {network.source}: {_first_line(exc)}"
            ) from None
        return onnx.load(str(path), load_external_data=False)


_BLOCK_SIZES: dict[str, int] = {}


def nchwc_block_size(target: Any) -> int:
    """The NCHWc channel block of ``target`` (16 with AVX-512, 8 with AVX2), probed once.

    A 1-to-1 channel 1x1 conv is optimized; ORT pads its weight to one block.
    """
    key = str(getattr(target, "target_id", id(target)))
    if key not in _BLOCK_SIZES:
        from onnx import TensorProto

        weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="probe")],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
            [weight],
        )
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        probe.ir_version = 8
        network = load_network(probe)
        optimized = optimized_graph(network, target)
        dims = {t.name: tuple(t.dims) for t in optimized.graph.initializer}
        blocks = [
            dims[n.input[1]][0]
            for n in optimized.graph.node
            if n.domain == _NCHWC and n.op_type == "Conv" and n.input[1] in dims
        ]
        _BLOCK_SIZES[key] = blocks[0] if blocks else 1
    return _BLOCK_SIZES[key]


def _optimized_kernels(network: Network, optimized: onnx.ModelProto, target: Any) -> list[Kernel]:
    view = _GraphView.of(optimized, network.shapes, network.dtypes)
    if any(n.domain == _NCHWC and n.op == "ReorderInput" for n in view.nodes):
        view.block = nchwc_block_size(target)
    view.propagate_shapes()
    return [_kernel(view, [node]) for node in view.nodes]


# -- the exported graph with a simple fusion (non-ORT targets) --------------------------------


def _fused_kernels(network: Network) -> list[Kernel]:
    view = _GraphView.of(network.model, network.shapes, network.dtypes)
    groups: list[list[_Node]] = []
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


def _fusion_group(view: _GraphView, anchor: _Node, absorbed: set[str]) -> list[_Node]:
    """The anchor and the nodes fused behind it (conv: BN, residual add, activation).

    A residual Add whose two inputs both come from convs is fused into the first of them
    in graph order, like ONNX Runtime's NCHWc "Sum" fusion of ``Add(main, shortcut)``.
    """
    group = [anchor]

    def absorb(accepts: Callable[[_Node], bool]) -> None:
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


def _is_residual(view: _GraphView, add: _Node, producer: _Node) -> bool:
    others = [name for name in add.inputs if name != producer.outputs[0]]
    if len(others) != 1 or others[0] in view.weights:
        return False
    return view.shape(others[0]) == view.shape(producer.outputs[0])


def _has_weight_input(view: _GraphView, node: _Node) -> bool:
    return any(name in view.weights for name in node.inputs)


# -- the graph view: nodes, shapes, constants -------------------------------------------------


@dataclass(frozen=True)
class _Node:
    name: str
    op: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]

    @property
    def qualified_op(self) -> str:
        if self.domain in (*_STANDARD, _MS):
            return self.op
        return f"{self.domain.rpartition('.')[2]}.{self.op}"


@dataclass
class _GraphView:
    """Nodes of one graph plus every known tensor shape, dtype and small constant."""

    nodes: list[_Node]
    shapes: dict[str, Shape]
    dtypes: dict[str, int]
    weights: dict[str, Shape]
    constants: dict[str, np.ndarray]
    graph_outputs: set[str]
    opset: int
    block: int = 1
    consumers: dict[str, list[_Node]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, model: onnx.ModelProto, shapes: Mapping[str, Shape], dtypes: Mapping[str, int]
    ) -> _GraphView:
        graph = model.graph
        nodes = [_node(n, i) for i, n in enumerate(graph.node)]
        view = cls(
            nodes=nodes,
            shapes=dict(shapes),
            dtypes=dict(dtypes),
            weights={t.name: tuple(t.dims) for t in graph.initializer},
            constants=_small_constants(graph),
            graph_outputs={v.name for v in graph.output},
            opset=max((o.version for o in model.opset_import if o.domain in _STANDARD), default=17),
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


def _node(node: onnx.NodeProto, index: int) -> _Node:
    attrs = {a.name: _attribute(a) for a in node.attribute}
    return _Node(
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


def _output_shapes(view: _GraphView, node: _Node) -> list[Shape | None]:
    rule = _SHAPE_RULES.get((node.domain, node.op))
    if rule is not None:
        return [rule(view, node)]
    if node.domain in _STANDARD:
        return _standard_output_shapes(view, node)
    if node.domain == _MS and node.op in _SAME_SHAPE_MS_OPS and node.inputs:
        return [view.shape(node.inputs[0])]
    return [None] * len(node.outputs)


_SAME_SHAPE_MS_OPS = frozenset(
    {"Gelu", "FastGelu", "BiasGelu", "QuickGelu", "SkipLayerNormalization", "BiasAdd"}
)


def _standard_output_shapes(
    view: _GraphView, node: _Node, op: str | None = None
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


def _conv_shape(view: _GraphView, node: _Node) -> Shape | None:
    x, w = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if x is None or w is None:
        return None
    spatial = _window_outputs(x[2:], w[2:], node.attrs)
    return (x[0], w[0], *spatial) if spatial is not None else None


def _pool_shape(view: _GraphView, node: _Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    kernel = tuple(node.attrs.get("kernel_shape", ()))
    if x is None or not kernel:
        return None
    spatial = _window_outputs(x[2:], kernel, node.attrs)
    return (x[0], x[1], *spatial) if spatial is not None else None


def _global_pool_shape(view: _GraphView, node: _Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    return (x[0], x[1], *([1] * (len(x) - 2))) if x is not None else None


def _reorder_input_shape(view: _GraphView, node: _Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    if x is None or len(x) != 4:
        return None
    n, c, h, w = (x[0], x[3], x[1], x[2]) if node.attrs.get("channels_last") else x
    return (n, math.ceil(c / view.block) * view.block, h, w)


def _reorder_output_shape(view: _GraphView, node: _Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    channels = int(node.attrs.get("channels", 0))
    if x is None or len(x) != 4 or channels < 1:
        return None
    if node.attrs.get("channels_last"):
        return (x[0], x[2], x[3], channels)
    return (x[0], channels, x[2], x[3])


def _upsample_shape(view: _GraphView, node: _Node) -> Shape | None:
    x = view.shape(node.inputs[0])
    scales = node.attrs.get("scales") or ()
    if x is None or len(scales) != len(x):
        return None
    return tuple(int(d * s) for d, s in zip(x, scales, strict=True))


def _fused_gemm_shape(view: _GraphView, node: _Node) -> Shape | None:
    return _standard_output_shapes(view, node, "Gemm")[0]


def _fused_matmul_shape(view: _GraphView, node: _Node) -> Shape | None:
    a, b = view.shape(node.inputs[0]), view.shape(node.inputs[1])
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    m = a[-1] if node.attrs.get("transA") else a[-2]
    n = b[-2] if node.attrs.get("transB") else b[-1]
    batch = a[:-2] if len(a) >= len(b) else b[:-2]
    return (*batch, m, n)


_SHAPE_RULES: dict[tuple[str, str], Callable[[_GraphView, _Node], Shape | None]] = {
    (_NCHWC, "Conv"): _conv_shape,
    (_MS, "FusedConv"): _conv_shape,
    (_NCHWC, "MaxPool"): _pool_shape,
    (_NCHWC, "AveragePool"): _pool_shape,
    (_NCHWC, "GlobalMaxPool"): _global_pool_shape,
    (_NCHWC, "GlobalAveragePool"): _global_pool_shape,
    (_NCHWC, "ReorderInput"): _reorder_input_shape,
    (_NCHWC, "ReorderOutput"): _reorder_output_shape,
    (_NCHWC, "Upsample"): _upsample_shape,
    (_MS, "FusedGemm"): _fused_gemm_shape,
    (_MS, "FusedMatMul"): _fused_matmul_shape,
}


@dataclass(frozen=True)
class _Window:
    """Per spatial axis: kernel, stride, begin pad, end pad, dilation."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool


def _window(spatial: Sequence[int], kernel: Sequence[int], attrs: Mapping[str, Any]) -> _Window:
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
    return _Window(
        kernel=tuple(kernel),
        strides=strides,
        begins=tuple(pads[:rank]),
        ends=tuple(pads[rank:]),
        dilations=dilations,
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
    )


def _window_outputs(
    spatial: Sequence[int], kernel: Sequence[int], attrs: Mapping[str, Any]
) -> Shape | None:
    if len(spatial) != len(kernel):
        return None
    win = _window(spatial, kernel, attrs)
    outputs = []
    for i, size in enumerate(spatial):
        span = size + win.begins[i] + win.ends[i] - win.dilations[i] * (win.kernel[i] - 1) - 1
        steps = math.ceil(span / win.strides[i]) if win.ceil_mode else span // win.strides[i]
        outputs.append(steps + 1)
    return tuple(outputs)


# -- mapping kernels to layers ----------------------------------------------------------------


@dataclass(frozen=True)
class _Mapping:
    layer: LayerConfig | None = None
    note: str = ""
    free: bool = False
    compute_bound: bool = False


def _kernel(view: _GraphView, group: Sequence[_Node]) -> Kernel:
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


def _group_inputs(group: Sequence[_Node]) -> list[str]:
    produced = {name for node in group for name in node.outputs}
    seen: list[str] = []
    for node in group:
        for name in node.inputs:
            if name and name not in produced and name not in seen:
                seen.append(name)
    return seen


def _fused_ops(group: Sequence[_Node]) -> tuple[str, ...]:
    if len(group) > 1:
        return tuple(n.op for n in group)
    node = group[0]
    ops = [node.op.removeprefix("Fused")]
    if node.domain == _NCHWC and node.op == "Conv" and len(node.inputs) > 3 and node.inputs[3]:
        ops.append("Add")
    if node.domain == _MS and node.op == "FusedConv" and len(node.inputs) > 3 and node.inputs[3]:
        ops.append("Add")
    if node.attrs.get("activation"):
        ops.append(str(node.attrs["activation"]))
    return tuple(ops)


def _map_group(view: _GraphView, group: Sequence[_Node]) -> _Mapping:
    anchor = group[0]
    try:
        if len(group) > 1:
            return _map_fused_group(view, group)
        return _map_node(view, anchor)
    except InvalidLayerError as exc:
        return _Mapping(note=f"no layer: {exc}")


def _map_node(view: _GraphView, node: _Node) -> _Mapping:
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


def _map_fused_group(view: _GraphView, group: Sequence[_Node]) -> _Mapping:
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


def _has_sum_input(node: _Node) -> bool:
    return node.op in ("Conv", "FusedConv") and len(node.inputs) > 3 and bool(node.inputs[3])


def _node_activation(view: _GraphView, node: _Node) -> tuple[str, str] | None:
    """The activation fused into an ORT conv or gemm kernel (its ``activation`` attribute)."""
    name = node.attrs.get("activation")
    if not name:
        return None
    if name == "Clip":
        params = tuple(node.attrs.get("activation_params") or ())
        return ("relu6", "" if params == (0.0, 6.0) else f"Clip{params} as relu6")
    return _ACTIVATIONS.get(str(name), ("relu", f"{name} as relu"))


def _activation_of(view: _GraphView, node: _Node) -> tuple[str, str] | None:
    """The layer activation that models a standalone activation node, if any."""
    if node.op == "Clip":
        low, high = _clip_bounds(view, node)
        return ("relu6", "" if (low, high) == (0.0, 6.0) else f"Clip({low}, {high}) as relu6")
    return _ACTIVATIONS.get(node.op)


def _clip_bounds(view: _GraphView, node: _Node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11 style
        return node.attrs.get("min"), node.attrs.get("max")
    bounds: list[float | None] = []
    for index in (1, 2):
        name = node.inputs[index] if len(node.inputs) > index else ""
        value = view.constants.get(name) if name else None
        bounds.append(float(value) if value is not None and value.size == 1 else None)
    return bounds[0], bounds[1]


def _map_conv(
    view: _GraphView, node: _Node, activation: tuple[str, str] | None, residual: bool
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
    win = _window(x[2:], w[2:], attrs)
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


def _symmetric_pad(size: int, win: _Window, axis: int) -> tuple[int, str]:
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


def _map_dense(view: _GraphView, node: _Node, activation: tuple[str, str] | None) -> _Mapping:
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


def _map_pool(view: _GraphView, node: _Node) -> _Mapping:
    x = view.shape(node.inputs[0])
    kernel = tuple(node.attrs.get("kernel_shape") or ())
    if x is None or len(x) not in (3, 4) or len(kernel) != len(x) - 2:
        return _Mapping(note="pooling that is not 1-D or 2-D")
    attrs = dict(node.attrs)
    if len(x) == 3:
        x, kernel, attrs = (x[0], x[1], 1, x[2]), (1, *kernel), _attrs_2d(attrs)
    win = _window(x[2:], kernel, attrs)
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


def _map_global_pool(view: _GraphView, node: _Node) -> _Mapping:
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


def _map_elementwise(view: _GraphView, node: _Node, kind: LayerKind, note: str) -> _Mapping:
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
    "MIN_OPSET",
    "EstimateError",
    "Kernel",
    "Network",
    "NetworkKernels",
    "as_nchw",
    "is_onnxruntime_target",
    "load_network",
    "nchwc_block_size",
    "network_kernels",
    "optimized_graph",
    "parse_input_shapes",
]
