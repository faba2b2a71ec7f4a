"""A small graph builder: NCHW float32 ONNX networks with seeded random weights.

:class:`GraphBuilder` writes the ops that PyTorch's ONNX exporter writes for a network in eval
mode (opset 17): Conv with bias (batch-norm folded in), Relu, Clip (ReLU6), HardSwish,
HardSigmoid, Sigmoid + Mul (SiLU), the Div/Erf/Add/Mul form of GELU, LayerNormalization,
pooling, Concat, Slice, Reshape, Transpose, Gemm and MatMul + Add. Every architecture of the
zoo is written with it, so ONNX Runtime runs the same kernels as on an exported network.

Weights are drawn from one seeded generator in the order the layers are built: the same
arguments give the same bytes. With ``weights=False`` the builder writes a *skeleton*: every
initializer of :data:`SKELETON_MIN_ELEMENTS` elements or more keeps its shape but no data (it
is marked as external data that does not exist). A skeleton is tiny and quick to build; it can
be shape-inferred and mapped to kernels (MACs, parameters), not run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from prmodel.errors import PrmodelError

OPSET = 17
IR_VERSION = 8
"""IR version 8 is the oldest that carries opset 17: every ONNX Runtime >= 1.13 loads it."""

SKELETON_MIN_ELEMENTS = 1025
"""Initializers at least this large carry no data in a skeleton (smaller ones are real, so
the graph still checks: :func:`prmodel.networks.load_network` reads tensors up to 1,024
elements by value)."""

SKELETON_LOCATION = "prmodel-zoo-skeleton-has-no-weights"
"""The external-data location of a skeleton's weights (no such file exists)."""

_CHUNK = 1 << 20  # weights drawn at a time (float64 draws, 8 MiB)

ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu")
"""The activations :meth:`GraphBuilder.activation` writes."""


class ZooError(PrmodelError):
    """A reference network that cannot be built or exported (one sentence says why)."""


class GraphBuilder:
    """Accumulates the nodes and seeded random initializers of one NCHW float32 graph.

    Args:
        seed: Seed of the random weights.
        weights: Draw real weights; False writes a skeleton (see the module docstring).
    """

    def __init__(self, *, seed: int, weights: bool = True) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.weights = weights
        self._rng = np.random.default_rng(seed)
        self._counts: dict[str, int] = {}

    # -- names, constants and weights ---------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}{self._counts[prefix]}"

    def constant(self, name: str, array: np.ndarray) -> str:
        """An initializer with exactly these values (float arrays are stored as float32)."""
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def random(self, name: str, shape: Sequence[int], *, std: float, mean: float = 0.0) -> str:
        """A float32 initializer drawn from N(mean, std²); shape only in a skeleton."""
        count = math.prod(shape)
        if not self.weights and count >= SKELETON_MIN_ELEMENTS:
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            tensor.data_location = TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", SKELETON_LOCATION
            self.initializers.append(tensor)
            return name
        # float64 draws cast to float32, in chunks (the same stream as one draw) so a large
        # layer never holds a float64 copy of its weights
        values = np.empty(count, dtype=np.float32)
        for start in range(0, count, _CHUNK):
            part = min(_CHUNK, count - start)
            values[start : start + part] = self._rng.normal(mean, std, part)
        self.initializers.append(numpy_helper.from_array(values.reshape(shape), name))
        return name

    def _node(self, op: str, inputs: Sequence[str], prefix: str, **attrs: Any) -> str:
        name = self._name(prefix)
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return name

    # -- convolution and normalisation --------------------------------------------------------

    def conv(
        self,
        x: str,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        pad: int | None = None,
        bias: bool = False,
    ) -> str:
        """A square convolution; ``pad`` defaults to ``kernel // 2`` ('same' at stride 1)."""
        name = self._name("conv")
        fan_in = in_channels // groups * kernel * kernel
        shape = (out_channels, in_channels // groups, kernel, kernel)
        inputs = [x, self.random(f"{name}.weight", shape, std=math.sqrt(2 / fan_in))]
        if bias:
            inputs.append(self.random(f"{name}.bias", (out_channels,), std=0.1))
        pad = kernel // 2 if pad is None else pad
        self.nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [name],
                name=name,
                group=groups,
                kernel_shape=[kernel, kernel],
                pads=[pad, pad, pad, pad],
                strides=[stride, stride],
            )
        )
        return name

    def conv_act(
        self,
        x: str,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        pad: int | None = None,
        act: str | None = "relu",
    ) -> str:
        """Conv + batch-norm (+ activation) as an eval-mode export writes it: the batch-norm
        folded into the conv's weights and bias, so one Conv with bias (+ the activation)."""
        y = self.conv(
            x,
            in_channels,
            out_channels,
            kernel=kernel,
            stride=stride,
            groups=groups,
            pad=pad,
            bias=True,
        )
        return self.activation(y, act) if act else y

    def batchnorm(self, x: str, channels: int, *, epsilon: float = 1e-5) -> str:
        """A BatchNormalization that stays in the graph (one that no conv precedes)."""
        name = self._name("bn")
        scale = self._rng.uniform(0.5, 1.5, channels)
        bias = self._rng.normal(0, 0.1, channels)
        mean = self._rng.normal(0, 0.1, channels)
        var = self._rng.uniform(0.5, 1.5, channels)
        params = [
            self.constant(f"{name}.{part}", values)
            for part, values in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var))
        ]
        self.nodes.append(
            helper.make_node("BatchNormalization", [x, *params], [name], name=name, epsilon=epsilon)
        )
        return name

    def conv_bn(
        self,
        x: str,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
    ) -> str:
        """Conv (no bias) + BatchNormalization (+ activation): the unfused training form."""
        y = self.conv(x, in_channels, out_channels, kernel=kernel, stride=stride, groups=groups)
        y = self.batchnorm(y, out_channels)
        return self.activation(y, act) if act else y

    def layernorm(self, x: str, channels: int, *, epsilon: float = 1e-6) -> str:
        """LayerNormalization over the last axis (opset 17's own op, as exporters write it)."""
        name = self._name("ln")
        scale = self.constant(f"{name}.scale", self._rng.uniform(0.5, 1.5, channels))
        bias = self.constant(f"{name}.bias", self._rng.normal(0, 0.1, channels))
        self.nodes.append(
            helper.make_node(
                "LayerNormalization",
                [x, scale, bias],
                [name],
                name=name,
                axis=-1,
                epsilon=epsilon,
            )
        )
        return name

    # -- activations ------------------------------------------------------------------------

    def activation(self, x: str, kind: str) -> str:
        """One of :data:`ACTIVATIONS`, in the ops an exporter writes for it.

        ``relu6`` is Clip 0..6; ``silu`` is ``x * Sigmoid(x)``; ``gelu`` is the exact form
        ``x * (erf(x / sqrt 2) + 1) * 0.5`` (Div, Erf, Add, Mul, Mul), which ONNX Runtime
        fuses into one Gelu kernel.
        """
        if kind == "relu":
            return self._node("Relu", [x], "relu")
        if kind == "relu6":
            low = self.constant(self._name("clip_min"), np.array(0.0))
            high = self.constant(self._name("clip_max"), np.array(6.0))
            return self._node("Clip", [x, low, high], "relu6_")
        if kind == "hardswish":
            return self._node("HardSwish", [x], "hardswish")
        if kind == "hardsigmoid":
            # torch's hardsigmoid is relu6(x + 3) / 6: ONNX HardSigmoid with alpha 1/6
            return self._node("HardSigmoid", [x], "hardsigmoid", alpha=1 / 6, beta=0.5)
        if kind == "sigmoid":
            return self._node("Sigmoid", [x], "sigmoid")
        if kind == "silu":
            return self.mul(x, self._node("Sigmoid", [x], "sigmoid"))
        if kind == "gelu":
            root2 = self.constant(self._name("gelu_sqrt2"), np.array(math.sqrt(2.0)))
            one = self.constant(self._name("gelu_one"), np.array(1.0))
            half = self.constant(self._name("gelu_half"), np.array(0.5))
            erf = self._node("Erf", [self._node("Div", [x, root2], "div")], "erf")
            return self.mul(self.mul(x, self.add(erf, one)), half)
        raise ValueError(f"unknown activation {kind!r} (known: {', '.join(ACTIVATIONS)})")

    # -- element-wise and tensor ops ----------------------------------------------------------

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], "add")

    def mul(self, a: str, b: str) -> str:
        return self._node("Mul", [a, b], "mul")

    def concat(self, xs: Sequence[str], *, axis: int = 1) -> str:
        """Concat along ``axis`` (a single input is kept: exporters write it too)."""
        return self._node("Concat", list(xs), "concat", axis=axis)

    def slice(self, x: str, *, axis: int, start: int, end: int) -> str:
        """``x[start:end]`` along ``axis`` with constant bounds."""
        name = self._name("slice")
        bounds = [
            self.constant(f"{name}.{part}", np.array([value], dtype=np.int64))
            for part, value in (("starts", start), ("ends", end), ("axes", axis))
        ]
        self.nodes.append(helper.make_node("Slice", [x, *bounds], [name], name=name))
        return name

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        """Reshape to a constant shape (0 copies the input's dimension, -1 infers one)."""
        name = self._name("reshape")
        target = self.constant(f"{name}.shape", np.array(list(shape), dtype=np.int64))
        self.nodes.append(helper.make_node("Reshape", [x, target], [name], name=name))
        return name

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        return self._node("Transpose", [x], "transpose", perm=list(perm))

    def flatten(self, x: str) -> str:
        return self._node("Flatten", [x], "flatten", axis=1)

    def softmax(self, x: str) -> str:
        return self._node("Softmax", [x], "softmax", axis=-1)

    # -- pooling ----------------------------------------------------------------------------

    def maxpool(self, x: str, *, kernel: int, stride: int, pad: int, ceil: bool = False) -> str:
        extra = {"ceil_mode": 1} if ceil else {}
        return self._node(
            "MaxPool",
            [x],
            "maxpool",
            kernel_shape=[kernel, kernel],
            pads=[pad, pad, pad, pad],
            strides=[stride, stride],
            **extra,
        )

    def avgpool(self, x: str, *, kernel: int, stride: int, pad: int = 0) -> str:
        extra = {"pads": [pad, pad, pad, pad]} if pad else {}
        return self._node(
            "AveragePool",
            [x],
            "avgpool",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            **extra,
        )

    def global_avgpool(self, x: str) -> str:
        return self._node("GlobalAveragePool", [x], "gap")

    def global_avgpool_flatten(self, x: str) -> str:
        return self.flatten(self.global_avgpool(x))

    def spatial_mean(self, x: str) -> str:
        """``x.mean([2, 3])``: ReduceMean over height and width, keepdims 0 (opset 17)."""
        return self._node("ReduceMean", [x], "mean", axes=[2, 3], keepdims=0)

    # -- blocks -----------------------------------------------------------------------------

    def squeeze_excite(
        self, x: str, channels: int, squeeze: int, *, act: str = "relu", gate: str = "sigmoid"
    ) -> str:
        """Squeeze-and-excitation: GlobalAveragePool, 1x1 conv, ``act``, 1x1 conv, ``gate``,
        and the channel-wise Mul(scale, x), as torchvision's ``SqueezeExcitation`` exports."""
        pooled = self.global_avgpool(x)
        s = self.activation(self.conv(pooled, channels, squeeze, kernel=1, bias=True), act)
        scale = self.activation(self.conv(s, squeeze, channels, kernel=1, bias=True), gate)
        return self.mul(scale, x)

    # -- dense layers -----------------------------------------------------------------------

    def gemm(self, x: str, in_features: int, out_features: int) -> str:
        """A dense layer as exporters write ``nn.Linear`` on 2-D input: Gemm, transposed B."""
        name = self._name("fc")
        weight = self.random(
            f"{name}.weight", (out_features, in_features), std=math.sqrt(1 / in_features)
        )
        bias = self.random(f"{name}.bias", (out_features,), std=0.1)
        self.nodes.append(helper.make_node("Gemm", [x, weight, bias], [name], name=name, transB=1))
        return name

    def matmul_add(self, x: str, in_features: int, out_features: int) -> str:
        """A dense layer as MatMul + Add (``nn.Linear`` on input of more than 2 dimensions)."""
        name = self._name("dense")
        weight = self.random(
            f"{name}.weight", (in_features, out_features), std=math.sqrt(1 / in_features)
        )
        bias = self.random(f"{name}.bias", (out_features,), std=0.1)
        product = self._node("MatMul", [x, weight], "matmul")
        return self._node("Add", [product, bias], "bias_add")

    # -- the model --------------------------------------------------------------------------

    def model(
        self,
        name: str,
        input_shape: Sequence[int | str],
        output: str,
        output_shape: Sequence[int | str],
    ) -> onnx.ModelProto:
        """The finished, checked model; a str in a shape makes that axis dynamic.

        ``output`` must be the last node's output; it is renamed ``output`` so every
        network has the same public input and output names.
        """
        last = self.nodes[-1]
        if last.output[0] != output:
            raise ValueError(f"{output!r} is not the output of the last node {last.name!r}")
        last.output[0] = "output"
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_shape))],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="prmodel.zoo",
            ir_version=IR_VERSION,
        )
        check_structure(model)
        return model


def check_structure(model: onnx.ModelProto) -> None:
    """``onnx.checker`` with shape inference on the model's graph, weights aside.

    Initializers of :data:`SKELETON_MIN_ELEMENTS` or more become typed graph inputs for the
    check, so a skeleton is checked too and a large model is not copied (VGG-16: 553 MB).

    Raises:
        onnx.checker.ValidationError: the graph is not valid ONNX.
    """
    graph = model.graph
    large = [t for t in graph.initializer if math.prod(t.dims) >= SKELETON_MIN_ELEMENTS]
    names = {t.name for t in large}
    light = helper.make_graph(
        list(graph.node),
        graph.name,
        [
            *graph.input,
            *(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in large),
        ],
        list(graph.output),
        [t for t in graph.initializer if t.name not in names],
    )
    checked = helper.make_model(
        light, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    onnx.checker.check_model(checked, full_check=True)


def conv_output_size(size: int, *, kernel: int, stride: int, pad: int, ceil: bool = False) -> int:
    """Height (or width) after a conv or pool on ``size`` (ONNX's floor or ceil rule)."""
    span = size + 2 * pad - kernel
    steps = -(-span // stride) if ceil else span // stride
    out = steps + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def input_shape(batch: int, size: int, *, minimum: int, channels: int = 3) -> list[int | str]:
    """The static NCHW input shape, or :class:`ZooError` for a batch or size out of range."""
    if batch < 1:
        raise ZooError(f"the batch size must be at least 1, got {batch}")
    if size < minimum:
        raise ZooError(f"this network needs an input size of at least {minimum}, got {size}")
    return [batch, channels, size, size]


def check_width(width: float) -> None:
    """Refuse a width multiplier outside 0.1-4 (every architecture's ``width`` option).

    Raises:
        ZooError: ``width`` is out of range.
    """
    if not 0.1 <= width <= 4.0:
        raise ZooError(f"the width multiplier must be between 0.1 and 4, got {width}")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``value`` rounded to a multiple of ``divisor``, never more than 10 % below it.

    The channel rounding of torchvision's MobileNets and EfficientNets (``_make_divisible``).
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
