"""Single-layer ONNX models: any :class:`~prmodel.layers.LayerConfig` as a runnable graph.

Every model is fp32 with static shapes and seeded random weights stored as initializers,
and passes ``onnx.checker.check_model(full_check=True)``. Names are stable so that a target
can find the layer's nodes again after the runtime has rewritten the graph:

* graph inputs: ``x`` (the layer's input), ``x2`` (second operand of ``add``/``mul``),
  ``residual_in`` (source of the tensor a conv with ``residual=True`` adds to its output);
* graph output: ``y``;
* initializers: ``W`` and ``B`` (conv/dense weights and bias), ``clip_min``/``clip_max``
  (relu6), ``gelu_sqrt2``/``gelu_one``/``gelu_half`` (the erf form of GELU),
  ``helper_residual_W``;
* nodes: ``layer`` (the main op, also a standalone activation), ``layer_add`` (the fused
  residual add), ``layer_act`` (a fused activation). The erf form of GELU is five nodes:
  ``<base>_div``, ``<base>_erf``, ``<base>_add``, ``<base>_mul`` and the final Mul named
  ``<base>`` itself, where ``<base>`` is ``layer`` or ``layer_act``.

Nodes whose name starts with :data:`HELPER_PREFIX` are scaffolding, not part of the layer.
ONNX Runtime fuses Conv + Add (its NCHWc "Sum" fusion) only when the Add's second operand is
produced by another NCHWc node, as it is inside a network; a plain graph input is never
fused. So a residual conv gets a cheap producer for that operand: node ``helper_residual``,
a 1x1 conv from the one-channel input ``residual_in`` ``[batch, 1, out_h, out_w]`` to the
output's channels, writing ``helper_residual_out`` (ONNX Runtime renames the node
``helper_residual_out_nchwc`` when it blocks it, keeping the prefix). Targets exclude helper
kernels from the layer's time. The Sum fuses whenever ORT blocks the layer's own conv.

Activation forms (what PyTorch's exporter writes at the same opset):

* ``relu6`` is ``Clip`` with ``min``/``max`` inputs (0 and 6);
* ``hardswish`` is ``HardSwish`` (ONNX Runtime expands it to HardSigmoid + Mul itself);
* ``gelu`` is the ``Gelu`` op from opset 20, and below that the exact erf pattern
  ``Div(sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5)``, which ONNX Runtime fuses into one
  ``com.microsoft`` Gelu kernel from ORT_ENABLE_EXTENDED up (five kernels below that).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig, LayerKind

DEFAULT_OPSET = 17
MIN_OPSET = 14  # HardSwish and Clip-with-inputs need it
GELU_OP_OPSET = 20

INPUT_NAME = "x"
SECOND_INPUT_NAME = "x2"
RESIDUAL_INPUT_NAME = "residual_in"
OUTPUT_NAME = "y"
LAYER_NODE_NAME = "layer"
HELPER_PREFIX = "helper_"
"""Nodes named with this prefix are scaffolding around the layer, not part of its kernel."""

_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "hardswish": "HardSwish"}
_POOL_OPS = {LayerKind.MAXPOOL: "MaxPool", LayerKind.AVGPOOL: "AveragePool"}
_ELEMENTWISE_OPS = {LayerKind.ADD: "Add", LayerKind.MUL: "Mul"}


class OnnxBuildError(PrmodelError, ValueError):
    """A layer or opset that cannot be written as an ONNX model."""


class _GraphParts:
    """Nodes, inputs and initializers collected while one model is assembled."""

    def __init__(self, layer: LayerConfig, seed: int) -> None:
        self.layer = layer
        self.rng = np.random.default_rng([seed, int(layer.key[:8], 16)])
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs = [
            helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, layer.input_shape)
        ]

    def add_input(self, name: str, shape: tuple[int, ...]) -> None:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def add_node(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def add_weights(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        # He-style scaling keeps values far from denormals, which would slow CPU kernels.
        values = self.rng.standard_normal(shape) * math.sqrt(2.0 / max(fan_in, 1))
        return self.add_constant(name, values)

    def add_constant(self, name: str, values: np.ndarray | float) -> str:
        array = np.asarray(values, dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


def build_model(
    layer: LayerConfig, *, opset: int = DEFAULT_OPSET, seed: int = 0
) -> onnx.ModelProto:
    """A valid single-layer ONNX model of ``layer`` (node and tensor names: module docstring).

    Args:
        layer: the layer to build.
        opset: the default-domain opset to stamp (at least 14).
        seed: seed of the random weights; the layer's key is mixed in, so different layers
            get different weights and the same layer always gets the same ones.

    Returns:
        A checked ``onnx.ModelProto`` with input ``x`` (plus ``x2`` or ``residual_in``)
        and output ``y`` of shape ``layer.output_shape``.

    Raises:
        OnnxBuildError: an opset outside what the installed ``onnx`` package knows.
    """
    _check_opset(opset)
    parts = _GraphParts(layer, seed)
    _BUILDERS[layer.kind](parts, opset)
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, layer.output_shape)
    graph = helper.make_graph(
        parts.nodes, _graph_name(layer), parts.inputs, [output], parts.initializers
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="prmodel",
        ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True),
    )
    model.doc_string = layer.label
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(
    layer: LayerConfig, path: str | Path, *, opset: int = DEFAULT_OPSET, seed: int = 0
) -> Path:
    """Write :func:`build_model`'s model of ``layer`` to ``path`` (parents created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_model(layer, opset=opset, seed=seed), target)
    return target


def make_inputs(layer: LayerConfig, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random fp32 arrays for every graph input of ``layer``'s model, by name."""
    rng = np.random.default_rng([seed, int(layer.key[8:16], 16)])
    shapes = {INPUT_NAME: layer.input_shape}
    if layer.kind in _ELEMENTWISE_OPS:
        shapes[SECOND_INPUT_NAME] = layer.input_shape
    if layer.residual:
        shapes[RESIDUAL_INPUT_NAME] = residual_input_shape(layer)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def is_helper_node(name: str) -> bool:
    """True where a node (also after the runtime renamed it) is scaffolding, not the layer."""
    return name.startswith(HELPER_PREFIX)


# -- per-kind builders ------------------------------------------------------------------------
def _build_conv(parts: _GraphParts, opset: int) -> None:
    layer = parts.layer
    per_group = layer.channels // layer.groups
    weights = parts.add_weights(
        "W",
        (layer.out_channels, per_group, layer.kernel_h, layer.kernel_w),
        per_group * layer.kernel_h * layer.kernel_w,
    )
    bias = parts.add_constant("B", np.zeros(layer.out_channels) + 0.01)
    fused = layer.residual or layer.activation is not None
    out = parts.add_node(
        "Conv",
        [INPUT_NAME, weights, bias],
        "conv_out" if fused else OUTPUT_NAME,
        LAYER_NODE_NAME,
        kernel_shape=[layer.kernel_h, layer.kernel_w],
        strides=[layer.stride_h, layer.stride_w],
        pads=[layer.pad_h, layer.pad_w, layer.pad_h, layer.pad_w],
        dilations=[layer.dilation_h, layer.dilation_w],
        group=layer.groups,
    )
    if layer.residual:
        # Add's first operand must stay the layer's conv: ORT fuses the Sum into that input.
        residual = _residual_producer(parts)
        add_out = "add_out" if layer.activation else OUTPUT_NAME
        out = parts.add_node("Add", [out, residual], add_out, f"{LAYER_NODE_NAME}_add")
    _build_activation(parts, out, opset)


def _residual_producer(parts: _GraphParts) -> str:
    # A 1x1 conv from one channel: as cheap as a depthwise conv, yet ORT blocks it (NCHWc)
    # for every channel count and reads its input as is, so the Sum fuses for every layer
    # whose own conv is blocked, with no extra reorder of the residual.
    layer = parts.layer
    parts.add_input(RESIDUAL_INPUT_NAME, residual_input_shape(layer))
    weights = parts.add_constant(
        f"{HELPER_PREFIX}residual_W", np.ones((layer.out_channels, 1, 1, 1))
    )
    return parts.add_node(
        "Conv",
        [RESIDUAL_INPUT_NAME, weights],
        f"{HELPER_PREFIX}residual_out",
        f"{HELPER_PREFIX}residual",
        kernel_shape=[1, 1],
    )


def residual_input_shape(layer: LayerConfig) -> tuple[int, ...]:
    """Shape of the ``residual_in`` graph input: one channel of the output's size."""
    return (layer.batch, 1, layer.output_height, layer.output_width)


def _build_dense(parts: _GraphParts, opset: int) -> None:
    layer = parts.layer
    weights = parts.add_weights("W", (layer.out_channels, layer.channels), layer.channels)
    bias = parts.add_constant("B", np.zeros(layer.out_channels) + 0.01)
    out = parts.add_node(
        "Gemm",
        [INPUT_NAME, weights, bias],
        "gemm_out" if layer.activation else OUTPUT_NAME,
        LAYER_NODE_NAME,
        transB=1,
    )
    _build_activation(parts, out, opset)


def _build_pool(parts: _GraphParts, opset: int) -> None:
    layer = parts.layer
    attrs: dict[str, Any] = {
        "kernel_shape": [layer.kernel_h, layer.kernel_w],
        "strides": [layer.stride_h, layer.stride_w],
        "pads": [layer.pad_h, layer.pad_w, layer.pad_h, layer.pad_w],
    }
    if layer.kind is LayerKind.AVGPOOL:
        attrs["count_include_pad"] = 0  # what torchvision's AvgPool2d exports by default
    parts.add_node(_POOL_OPS[layer.kind], [INPUT_NAME], OUTPUT_NAME, LAYER_NODE_NAME, **attrs)


def _build_global_pool(parts: _GraphParts, opset: int) -> None:
    parts.add_node("GlobalAveragePool", [INPUT_NAME], OUTPUT_NAME, LAYER_NODE_NAME)


def _build_elementwise(parts: _GraphParts, opset: int) -> None:
    parts.add_input(SECOND_INPUT_NAME, parts.layer.input_shape)
    op = _ELEMENTWISE_OPS[parts.layer.kind]
    parts.add_node(op, [INPUT_NAME, SECOND_INPUT_NAME], OUTPUT_NAME, LAYER_NODE_NAME)


def _build_standalone_activation(parts: _GraphParts, opset: int) -> None:
    _add_activation(parts, parts.layer.kind.value, INPUT_NAME, LAYER_NODE_NAME, opset)


def _build_activation(parts: _GraphParts, source: str, opset: int) -> None:
    """The activation fused behind conv/dense (``source`` is already the output without)."""
    activation = parts.layer.activation
    if activation is None:
        return
    _add_activation(parts, activation, source, f"{LAYER_NODE_NAME}_act", opset)


def _add_activation(
    parts: _GraphParts, activation: str, source: str, name: str, opset: int
) -> None:
    if activation in _ACTIVATION_OPS:
        parts.add_node(_ACTIVATION_OPS[activation], [source], OUTPUT_NAME, name)
    elif activation == "relu6":
        low = parts.add_constant("clip_min", 0.0)
        high = parts.add_constant("clip_max", 6.0)
        parts.add_node("Clip", [source, low, high], OUTPUT_NAME, name)
    elif activation == "gelu" and opset >= GELU_OP_OPSET:
        parts.add_node("Gelu", [source], OUTPUT_NAME, name)
    elif activation == "gelu":
        _add_erf_gelu(parts, source, name)
    else:  # LayerConfig validates activations, so this is a programming error
        raise AssertionError(f"no ONNX form for activation {activation!r}")


def _add_erf_gelu(parts: _GraphParts, source: str, name: str) -> None:
    sqrt2 = parts.add_constant("gelu_sqrt2", math.sqrt(2.0))
    one = parts.add_constant("gelu_one", 1.0)
    half = parts.add_constant("gelu_half", 0.5)
    scaled = parts.add_node("Div", [source, sqrt2], "gelu_div_out", f"{name}_div")
    erf = parts.add_node("Erf", [scaled], "gelu_erf_out", f"{name}_erf")
    shifted = parts.add_node("Add", [erf, one], "gelu_add_out", f"{name}_add")
    product = parts.add_node("Mul", [source, shifted], "gelu_mul_out", f"{name}_mul")
    parts.add_node("Mul", [product, half], OUTPUT_NAME, name)


_BUILDERS = {
    LayerKind.CONV: _build_conv,
    LayerKind.DENSE: _build_dense,
    LayerKind.MAXPOOL: _build_pool,
    LayerKind.AVGPOOL: _build_pool,
    LayerKind.GLOBALAVGPOOL: _build_global_pool,
    LayerKind.ADD: _build_elementwise,
    LayerKind.MUL: _build_elementwise,
    **{
        LayerKind(kind): _build_standalone_activation
        for kind in ("relu", "relu6", "sigmoid", "hardswish", "gelu")
    },
}


def _check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxBuildError(
            f"opset {opset} is outside the range prmodel can build ({MIN_OPSET} to {newest})"
        )


def _graph_name(layer: LayerConfig) -> str:
    return f"prmodel_{layer.kind.value}_{layer.key}"


__all__ = [
    "DEFAULT_OPSET",
    "HELPER_PREFIX",
    "INPUT_NAME",
    "LAYER_NODE_NAME",
    "OUTPUT_NAME",
    "RESIDUAL_INPUT_NAME",
    "SECOND_INPUT_NAME",
    "OnnxBuildError",
    "build_model",
    "is_helper_node",
    "make_inputs",
    "residual_input_shape",
    "save_model",
]
