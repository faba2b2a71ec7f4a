"""Reference networks: tiny torch-free ONNX test networks and a torchvision exporter.

The ``tiny_*`` builders make small, fully static networks with :mod:`onnx.helper` and seeded
random weights, in the shapes that real exported networks take (conv + batch-norm +
activation, residual adds, depthwise-separable blocks, pooling, Gemm and MatMul+Add heads).
They need nothing but onnx and numpy, pass ``onnx.checker`` and run in ONNX Runtime, so the
estimator and the graph mapper can be tested anywhere.

:func:`export_network` and :func:`export_all` write torchvision's reference architectures
as ONNX files with random weights (nothing is downloaded). They need the optional ``zoo``
extra (torch and torchvision), imported only when called.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from prmodel.errors import PrmodelError

OPSET = 17
IR_VERSION = 8
"""IR version 8 is the oldest that carries opset 17: every ONNX Runtime >= 1.13 loads it."""

ZOO_INSTALL_HINT = "pip install torch==2.14.1 torchvision==0.29.1"

REFERENCE_NETWORKS: tuple[str, ...] = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "vgg11",
    "vgg16",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "densenet121",
    "googlenet",
    "regnet_y_400mf",
    "mnasnet1_0",
    "convnext_tiny",
)
"""torchvision model names that :func:`export_network` knows (all at 1x3xSxS)."""


class ZooError(PrmodelError):
    """A reference network that cannot be built or exported (one sentence says why)."""


# -- tiny torch-free networks ---------------------------------------------------------------


class _GraphBuilder:
    """Accumulates nodes and seeded random initializers of one NCHW float32 graph."""

    def __init__(self, *, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._rng = np.random.default_rng(seed)
        self._counts: dict[str, int] = {}

    def _name(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}{self._counts[prefix]}"

    def _constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def _node(self, op: str, inputs: Sequence[str], prefix: str, **attrs: Any) -> str:
        name = self._name(prefix)
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return name

    def conv(
        self,
        x: str,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> str:
        """A square convolution with 'same'-style padding ``kernel // 2``."""
        name = self._name("conv")
        fan_in = in_channels // groups * kernel * kernel
        shape = (out_channels, in_channels // groups, kernel, kernel)
        weight = self._rng.normal(0, np.sqrt(2 / fan_in), shape)
        inputs = [x, self._constant(f"{name}.weight", weight)]
        if bias:
            inputs.append(self._constant(f"{name}.bias", self._rng.normal(0, 0.1, out_channels)))
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [name],
                name=name,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
                group=groups,
            )
        )
        return name

    def batchnorm(self, x: str, channels: int) -> str:
        name = self._name("bn")
        params = [
            self._constant(f"{name}.scale", self._rng.uniform(0.5, 1.5, channels)),
            self._constant(f"{name}.bias", self._rng.normal(0, 0.1, channels)),
            self._constant(f"{name}.mean", self._rng.normal(0, 0.1, channels)),
            self._constant(f"{name}.var", self._rng.uniform(0.5, 1.5, channels)),
        ]
        self.nodes.append(
            helper.make_node("BatchNormalization", [x, *params], [name], name=name, epsilon=1e-5)
        )
        return name

    def activation(self, x: str, kind: str) -> str:
        """``relu``, ``relu6`` (Clip 0..6, as exporters write it) or ``hardswish``."""
        if kind == "relu":
            return self._node("Relu", [x], "relu")
        if kind == "relu6":
            low = self._constant(self._name("clip_min"), np.array(0.0))
            high = self._constant(self._name("clip_max"), np.array(6.0))
            return self._node("Clip", [x, low, high], "relu6_")
        if kind == "hardswish":
            return self._node("HardSwish", [x], "hardswish")
        raise ValueError(f"unknown activation {kind!r}")

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

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], "add")

    def maxpool(self, x: str, *, kernel: int, stride: int, pad: int) -> str:
        return self._node(
            "MaxPool",
            [x],
            "maxpool",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def avgpool(self, x: str, *, kernel: int, stride: int) -> str:
        return self._node(
            "AveragePool", [x], "avgpool", kernel_shape=[kernel, kernel], strides=[stride, stride]
        )

    def global_avgpool_flatten(self, x: str) -> str:
        pooled = self._node("GlobalAveragePool", [x], "gap")
        return self._node("Flatten", [pooled], "flatten", axis=1)

    def flatten(self, x: str) -> str:
        return self._node("Flatten", [x], "flatten", axis=1)

    def gemm(self, x: str, in_features: int, out_features: int) -> str:
        """A dense layer as exporters write ``nn.Linear``: Gemm with a transposed weight."""
        name = self._name("fc")
        weight = self._rng.normal(0, np.sqrt(1 / in_features), (out_features, in_features))
        bias = self._rng.normal(0, 0.1, out_features)
        inputs = [x, self._constant(f"{name}.weight", weight), self._constant(f"{name}.bias", bias)]
        self.nodes.append(helper.make_node("Gemm", inputs, [name], name=name, transB=1))
        return name

    def matmul_add(self, x: str, in_features: int, out_features: int) -> str:
        """A dense layer as MatMul + Add (the other form exporters and converters write)."""
        name = self._name("dense")
        weight = self._rng.normal(0, np.sqrt(1 / in_features), (in_features, out_features))
        bias = self._rng.normal(0, 0.1, out_features)
        product = self._node("MatMul", [x, self._constant(f"{name}.weight", weight)], "matmul")
        return self._node("Add", [product, self._constant(f"{name}.bias", bias)], "bias_add")

    def softmax(self, x: str) -> str:
        return self._node("Softmax", [x], "softmax", axis=-1)

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
        onnx.checker.check_model(model, full_check=True)
        return model


def _input_shape(batch: int, channels: int, size: int, dynamic_batch: bool) -> list[int | str]:
    if batch < 1 or size < 8:
        raise ZooError(f"tiny networks need batch >= 1 and size >= 8, got {batch} and {size}")
    return ["batch" if dynamic_batch else batch, channels, size, size]


def tiny_resnet(
    *,
    batch: int = 1,
    size: int = 32,
    width: int = 16,
    classes: int = 10,
    seed: int = 0,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """A two-block ResNet: conv+BN+ReLU stem, max-pool, basic blocks with residual adds.

    The second block downsamples with a stride-2 conv and a 1x1 projection shortcut; the head
    is global average pooling, Flatten and a Gemm. ``width`` is the stem's channel count.

    Args:
        batch: Batch size of the static input.
        size: Input height and width (the input is ``batch x 3 x size x size``).
        width: Channels of the first stage (the second stage has twice as many).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        dynamic_batch: Name the batch axis ``batch`` instead of fixing it.

    Returns:
        A checked opset-17 ``ModelProto`` with input ``input`` and output ``output``.
    """
    shape = _input_shape(batch, 3, size, dynamic_batch)
    g = _GraphBuilder(seed=seed)
    x = g.conv_bn("input", 3, width, kernel=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=1)
    x = _basic_block(g, x, width, width, stride=1)
    x = _basic_block(g, x, width, 2 * width, stride=2)
    x = g.global_avgpool_flatten(x)
    x = g.gemm(x, 2 * width, classes)
    return g.model("tiny_resnet", shape, x, [shape[0], classes])


def _basic_block(g: _GraphBuilder, x: str, in_ch: int, out_ch: int, *, stride: int) -> str:
    y = g.conv_bn(x, in_ch, out_ch, kernel=3, stride=stride)
    y = g.conv_bn(y, out_ch, out_ch, kernel=3, act=None)
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = g.conv_bn(x, in_ch, out_ch, kernel=1, stride=stride, act=None)
    return g.activation(g.add(y, shortcut), "relu")


def tiny_mobilenet(
    *,
    batch: int = 1,
    size: int = 32,
    width: int = 16,
    classes: int = 10,
    seed: int = 0,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """A MobileNet-style network: depthwise-separable and inverted-residual blocks.

    Stem conv (stride 2) + BN + ReLU6 (written as Clip 0..6), a depthwise-separable block
    (3x3 depthwise + BN + ReLU6, 1x1 pointwise + BN), an inverted residual block (1x1 expand,
    3x3 depthwise, 1x1 project, residual Add), a 1x1 conv with HardSwish, then global average
    pooling, Flatten and a Gemm.

    Args:
        batch: Batch size of the static input.
        size: Input height and width (the input is ``batch x 3 x size x size``).
        width: Channels after the stem.
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        dynamic_batch: Name the batch axis ``batch`` instead of fixing it.

    Returns:
        A checked opset-17 ``ModelProto`` with input ``input`` and output ``output``.
    """
    shape = _input_shape(batch, 3, size, dynamic_batch)
    g = _GraphBuilder(seed=seed)
    mid, expanded, last = width + width // 2, 6 * (width + width // 2), 3 * width
    x = g.conv_bn("input", 3, width, kernel=3, stride=2, act="relu6")
    x = g.conv_bn(x, width, width, kernel=3, groups=width, act="relu6")
    x = g.conv_bn(x, width, mid, kernel=1, act=None)
    y = g.conv_bn(x, mid, expanded, kernel=1, act="relu6")
    y = g.conv_bn(y, expanded, expanded, kernel=3, groups=expanded, act="relu6")
    y = g.conv_bn(y, expanded, mid, kernel=1, act=None)
    x = g.add(x, y)
    x = g.conv_bn(x, mid, last, kernel=1, act="hardswish")
    x = g.global_avgpool_flatten(x)
    x = g.gemm(x, last, classes)
    return g.model("tiny_mobilenet", shape, x, [shape[0], classes])


def tiny_vgg(
    *,
    batch: int = 1,
    size: int = 32,
    width: int = 8,
    classes: int = 10,
    seed: int = 0,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """A plain VGG-style network without batch-norm, with a MatMul+Add head and Softmax.

    Two stages of conv (with bias) + ReLU and max-pooling, an average pool, Flatten, a
    MatMul+Add dense layer with ReLU, a second MatMul+Add and a Softmax: the forms that an
    estimator must map to dense layers (MatMul+Add) or report as unmodelled (Softmax).

    Args:
        batch: Batch size of the static input.
        size: Input height and width; a multiple of 8 (three halvings).
        width: Channels of the first stage (the second stage has twice as many).
        classes: Output width of the final dense layer.
        seed: Seed of the random weights.
        dynamic_batch: Name the batch axis ``batch`` instead of fixing it.

    Returns:
        A checked opset-17 ``ModelProto`` with input ``input`` and output ``output``.
    """
    shape = _input_shape(batch, 3, size, dynamic_batch)
    if size % 8:
        raise ZooError(f"tiny_vgg needs an input size divisible by 8, got {size}")
    g = _GraphBuilder(seed=seed)
    x = g.activation(g.conv("input", 3, width, kernel=3, bias=True), "relu")
    x = g.maxpool(x, kernel=2, stride=2, pad=0)
    x = g.activation(g.conv(x, width, 2 * width, kernel=3, bias=True), "relu")
    x = g.maxpool(x, kernel=2, stride=2, pad=0)
    x = g.avgpool(x, kernel=2, stride=2)
    features = 2 * width * (size // 8) ** 2
    x = g.flatten(x)
    x = g.activation(g.matmul_add(x, features, 4 * width), "relu")
    x = g.matmul_add(x, 4 * width, classes)
    x = g.softmax(x)
    return g.model("tiny_vgg", shape, x, [shape[0], classes])


TINY_NETWORKS: dict[str, Callable[..., onnx.ModelProto]] = {
    "tiny_resnet": tiny_resnet,
    "tiny_mobilenet": tiny_mobilenet,
    "tiny_vgg": tiny_vgg,
}
"""The torch-free test networks by name; each takes the keyword options of :func:`tiny_resnet`."""


# -- torchvision reference networks ---------------------------------------------------------


@dataclass(frozen=True)
class ExportedNetwork:
    """The outcome of exporting one reference network (``error`` set where it failed)."""

    name: str
    path: Path
    size_bytes: int = 0
    nodes: int = 0
    parameters: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _import_torchvision() -> tuple[ModuleType, ModuleType]:
    try:  # optional heavy dependencies: pip install 'prmodel[zoo]'
        import torch
        import torchvision.models
    except ImportError:
        raise ZooError(
            f"exporting reference networks needs torch and torchvision; "
            f"install the zoo extra: {ZOO_INSTALL_HINT}"
        ) from None
    return torch, torchvision.models


def export_network(
    name: str,
    path: str | Path,
    *,
    input_size: int = 224,
    seed: int = 0,
    dynamo: bool = False,
) -> ExportedNetwork:
    """Write torchvision's ``name`` with random weights as an ONNX file (opset 17).

    Weights are seeded random (``weights=None``): nothing is downloaded, and latency does not
    depend on weight values. Constant folding is on, so batch-norm is folded into the convs
    as in any deployed export. The classic TorchScript exporter is used unless ``dynamo``.

    Args:
        name: One of :data:`REFERENCE_NETWORKS`.
        path: The ``.onnx`` file to write (parent folders are created).
        input_size: Height and width of the static ``1 x 3 x S x S`` input.
        seed: Seed of the random weights.
        dynamo: Use torch's ``torch.export``-based exporter instead of TorchScript.

    Returns:
        What was written: file size, node count, parameter count and op histogram.

    Raises:
        ZooError: unknown name, torch/torchvision missing, or the export failed.
    """
    if name not in REFERENCE_NETWORKS:
        raise ZooError(
            f"unknown reference network {name!r} (known: {', '.join(REFERENCE_NETWORKS)})"
        )
    torch, models = _import_torchvision()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        _export(torch, models, name, target, input_size=input_size, seed=seed, dynamo=dynamo)
        model = onnx.load(target)
        onnx.checker.check_model(model)
    except Exception as exc:  # torch raises many unrelated types; keep the message
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"exporting {name} to {target} failed: {message}") from exc
    return _describe(name, target, model, seconds=time.perf_counter() - started)


def _export(
    torch: ModuleType,
    models: ModuleType,
    name: str,
    target: Path,
    *,
    input_size: int,
    seed: int,
    dynamo: bool,
) -> None:
    torch.manual_seed(seed)
    options: dict[str, object] = {"weights": None}
    if name == "googlenet":
        # The auxiliary classifiers only run in training; without them the graph is the
        # inference network, and torchvision skips its slow scipy-based initialisation.
        options.update(aux_logits=False, init_weights=False)
    network = getattr(models, name)(**options).eval()
    example = torch.randn(1, 3, input_size, input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            network,
            (example,),
            str(target),
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["output"],
            dynamo=dynamo,
            **({"external_data": False} if dynamo else {}),
        )


def _describe(name: str, path: Path, model: onnx.ModelProto, *, seconds: float) -> ExportedNetwork:
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return ExportedNetwork(
        name=name,
        path=path,
        size_bytes=path.stat().st_size,
        nodes=len(model.graph.node),
        parameters=parameters,
        op_counts=dict(sorted(ops.items())),
        seconds=round(seconds, 3),
    )


def export_all(
    folder: str | Path,
    *,
    names: Iterable[str] | None = None,
    input_size: int = 224,
    seed: int = 0,
    dynamo: bool = False,
) -> list[ExportedNetwork]:
    """Export several reference networks into ``folder`` as ``<name>.onnx``.

    A network whose export fails is reported (``error`` set) and the others still run.

    Args:
        folder: Output folder (created if missing).
        names: Which networks; all of :data:`REFERENCE_NETWORKS` when None.
        input_size: Height and width of the static input.
        seed: Seed of the random weights.
        dynamo: Use torch's ``torch.export``-based exporter instead of TorchScript.

    Raises:
        ZooError: torch/torchvision missing, or an unknown name (checked before exporting).
    """
    chosen = list(REFERENCE_NETWORKS if names is None else names)
    unknown = [n for n in chosen if n not in REFERENCE_NETWORKS]
    if unknown:
        raise ZooError(
            f"unknown reference network {unknown[0]!r} (known: {', '.join(REFERENCE_NETWORKS)})"
        )
    _import_torchvision()
    results = []
    for name in chosen:
        path = Path(folder) / f"{name}.onnx"
        try:
            result = export_network(name, path, input_size=input_size, seed=seed, dynamo=dynamo)
        except ZooError as exc:
            result = ExportedNetwork(name=name, path=path, error=str(exc))
        results.append(result)
    return results
