"""Tiny torch-free test networks: small, fully static, built in milliseconds.

The ``tiny_*`` builders make small networks in the shapes that real exported networks take
(conv + batch-norm + activation, residual adds, depthwise-separable blocks, pooling, Gemm and
MatMul+Add heads). They keep batch-norm unfolded (the training form) so the estimator's own
fusion is exercised too. They need nothing but onnx and numpy, pass ``onnx.checker`` and run
in ONNX Runtime, so the estimator and the graph mapper can be tested anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from prmodel.zoo.builder import GraphBuilder, ZooError


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
    g = GraphBuilder(seed=seed)
    x = g.conv_bn("input", 3, width, kernel=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=1)
    x = _basic_block(g, x, width, width, stride=1)
    x = _basic_block(g, x, width, 2 * width, stride=2)
    x = g.global_avgpool_flatten(x)
    x = g.gemm(x, 2 * width, classes)
    return g.model("tiny_resnet", shape, x, [shape[0], classes])


def _basic_block(g: GraphBuilder, x: str, in_ch: int, out_ch: int, *, stride: int) -> str:
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
    g = GraphBuilder(seed=seed)
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
    g = GraphBuilder(seed=seed)
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
