"""Classic CNN architectures, torch-free: ResNet, VGG, SqueezeNet, DenseNet and GoogLeNet.

Each builder writes the graph that torchvision's model gives through PyTorch's ONNX exporter
in eval mode (opset 17, batch-norm folded into the convs where a conv precedes it), with
seeded random weights. At the defaults (224 px, batch 1, width 1) the layers, MACs and
parameter counts are torchvision's; the options make variants of the same family. Every
builder returns a checked ``ModelProto`` with input ``input`` (``batch x 3 x size x size``)
and output ``output`` (``batch x classes``); ``weights=False`` gives a skeleton
(:mod:`prmodel.zoo.builder`).
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from prmodel.zoo.builder import (
    GraphBuilder,
    ZooError,
    check_width,
    input_shape,
    make_divisible,
)

RESNET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""ResNet depth -> block type and blocks per stage (He et al. 2016, torchvision)."""

VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M"),
}
"""VGG depth -> conv widths, ``"M"`` for a 2x2 max-pool (Simonyan & Zisserman, configs A-E)."""

DENSENET_DEPTHS: dict[int, tuple[int, tuple[int, ...], int]] = {
    121: (32, (6, 12, 24, 16), 64),
    161: (48, (6, 12, 36, 24), 96),
    169: (32, (6, 12, 32, 32), 64),
    201: (32, (6, 12, 48, 32), 64),
}
"""DenseNet depth -> growth rate, layers per dense block, stem width (torchvision)."""

_SQUEEZENET_FIRES: tuple[tuple[int, int, int], ...] = (
    # (squeeze, expand 1x1, expand 3x3) of each fire module, the same in both versions
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)
_SQUEEZENET_POOLS = {"1_0": (3, 7), "1_1": (2, 4)}
"""Version -> the fire modules a ceil-mode 3x3 max-pool precedes."""

_GOOGLENET_INCEPTIONS: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    # (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (a 3x3 in torchvision), pool projection)
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "M3",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "M2",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


def _scaled(channels: int, width: float) -> int:
    return channels if width == 1.0 else make_divisible(channels * width, 8)


# -- ResNet -------------------------------------------------------------------------------------


def resnet(
    depth: int = 18,
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """ResNet-18/34 (basic blocks) or ResNet-50/101/152 (bottleneck blocks).

    A 7x7 stride-2 stem and a max-pool, four stages of residual blocks (the first block of
    stages 2-4 downsamples, with a 1x1 projection shortcut), global average pooling, Gemm.

    Args:
        depth: One of :data:`RESNET_DEPTHS` (18, 34, 50, 101, 152).
        width: Multiplies every stage's channels (rounded to multiples of 8).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``resnet<depth>``.
    """
    if depth not in RESNET_DEPTHS:
        raise ZooError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    check_width(width)
    shape = input_shape(batch, size, minimum=32)
    block, counts = RESNET_DEPTHS[depth]
    expansion = 4 if block == "bottleneck" else 1
    g = GraphBuilder(seed=seed, weights=weights)
    channels = _scaled(64, width)
    x = g.conv_act("input", 3, channels, kernel=7, stride=2, pad=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=1)
    for stage, count in enumerate(counts):
        planes = _scaled(64 * 2**stage, width)
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            if block == "basic":
                x = _basic_block(g, x, channels, planes, stride=stride)
            else:
                x = _bottleneck_block(g, x, channels, planes, stride=stride)
            channels = planes * expansion
    x = g.global_avgpool_flatten(x)
    x = g.gemm(x, channels, classes)
    return g.model(f"resnet{depth}", shape, x, [batch, classes])


def _basic_block(g: GraphBuilder, x: str, in_ch: int, out_ch: int, *, stride: int) -> str:
    y = g.conv_act(x, in_ch, out_ch, kernel=3, stride=stride)
    y = g.conv_act(y, out_ch, out_ch, kernel=3, act=None)
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = g.conv_act(x, in_ch, out_ch, kernel=1, stride=stride, act=None)
    return g.activation(g.add(y, shortcut), "relu")


def _bottleneck_block(g: GraphBuilder, x: str, in_ch: int, planes: int, *, stride: int) -> str:
    out_ch = 4 * planes
    y = g.conv_act(x, in_ch, planes, kernel=1)
    y = g.conv_act(y, planes, planes, kernel=3, stride=stride)
    y = g.conv_act(y, planes, out_ch, kernel=1, act=None)
    shortcut = x
    if stride != 1 or in_ch != out_ch:
        shortcut = g.conv_act(x, in_ch, out_ch, kernel=1, stride=stride, act=None)
    return g.activation(g.add(y, shortcut), "relu")


# -- VGG ----------------------------------------------------------------------------------------


def vgg(
    depth: int = 16,
    *,
    width: float = 1.0,
    hidden: int = 4096,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """VGG-11/13/16/19 without batch-norm: 3x3 convs with bias + ReLU, five 2x2 max-pools,
    and three Gemm layers (``hidden``, ``hidden``, ``classes``) with ReLU.

    torchvision pools the last feature map to 7x7 before the classifier. Where the map is a
    multiple of 7 (224 px: 7x7) that is an AveragePool, as exported; at other sizes the
    classifier reads the map as it is (``512 x f x f`` features; ONNX has no adaptive pool).

    Args:
        depth: One of :data:`VGG_CONFIGS` (11, 13, 16, 19).
        width: Multiplies every conv's channels.
        hidden: Width of the two hidden Gemm layers.
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``vgg<depth>``.
    """
    if depth not in VGG_CONFIGS:
        raise ZooError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {depth}")
    check_width(width)
    if hidden < 1:
        raise ZooError(f"the VGG classifier needs at least one hidden unit, got {hidden}")
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    x, channels, spatial = "input", 3, size
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            x = g.maxpool(x, kernel=2, stride=2, pad=0)
            spatial //= 2
            continue
        out = _scaled(int(item), width)
        x = g.activation(g.conv(x, channels, out, kernel=3, bias=True), "relu")
        channels = out
    if spatial % 7 == 0:
        x = g.avgpool(x, kernel=spatial // 7, stride=spatial // 7)
        spatial = 7
    x = g.flatten(x)
    x = g.activation(g.gemm(x, channels * spatial * spatial, hidden), "relu")
    x = g.activation(g.gemm(x, hidden, hidden), "relu")
    x = g.gemm(x, hidden, classes)
    return g.model(f"vgg{depth}", shape, x, [batch, classes])


# -- SqueezeNet ---------------------------------------------------------------------------------


def squeezenet(
    version: str = "1_1",
    *,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """SqueezeNet 1.0 or 1.1: fire modules (1x1 squeeze, 1x1 and 3x3 expand, Concat).

    Convs carry a bias and no batch-norm; max-pools use ceil mode; the classifier is a 1x1
    conv to ``classes`` channels, ReLU, global average pooling and Flatten (no Gemm).

    Args:
        version: ``"1_0"`` (7x7 stem, 96 channels) or ``"1_1"`` (3x3 stem, 64 channels).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output channels of the final conv.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``squeezenet<version>``.
    """
    if version not in _SQUEEZENET_POOLS:
        raise ZooError(f"SqueezeNet version must be '1_0' or '1_1', got {version!r}")
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    stem = (96, 7) if version == "1_0" else (64, 3)
    x = g.activation(
        g.conv("input", 3, stem[0], kernel=stem[1], stride=2, pad=0, bias=True), "relu"
    )
    x = g.maxpool(x, kernel=3, stride=2, pad=0, ceil=True)
    channels = stem[0]
    for index, (squeeze, e1, e3) in enumerate(_SQUEEZENET_FIRES):
        if index in _SQUEEZENET_POOLS[version]:
            x = g.maxpool(x, kernel=3, stride=2, pad=0, ceil=True)
        s = g.activation(g.conv(x, channels, squeeze, kernel=1, bias=True), "relu")
        a = g.activation(g.conv(s, squeeze, e1, kernel=1, bias=True), "relu")
        b = g.activation(g.conv(s, squeeze, e3, kernel=3, bias=True), "relu")
        x, channels = g.concat([a, b]), e1 + e3
    x = g.activation(g.conv(x, channels, classes, kernel=1, bias=True), "relu")
    x = g.global_avgpool_flatten(x)
    return g.model(f"squeezenet{version}", shape, x, [batch, classes])


# -- DenseNet -----------------------------------------------------------------------------------


def densenet(
    depth: int = 121,
    *,
    growth: int | None = None,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """DenseNet-121/161/169/201: dense blocks that concatenate every layer's output.

    Each dense layer is Concat of the features so far, BatchNormalization + ReLU (they stay:
    no conv precedes them), a 1x1 conv (the next batch-norm folded in) + ReLU, and a 3x3 conv
    without bias. Transitions are batch-norm, ReLU, 1x1 conv and a 2x2 average pool.

    Args:
        depth: One of :data:`DENSENET_DEPTHS` (121, 161, 169, 201).
        growth: Channels each dense layer adds (default: the depth's, 32 or 48).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``densenet<depth>``.
    """
    if depth not in DENSENET_DEPTHS:
        raise ZooError(f"DenseNet depth must be one of {sorted(DENSENET_DEPTHS)}, got {depth}")
    default_growth, blocks, stem = DENSENET_DEPTHS[depth]
    growth = default_growth if growth is None else growth
    if not 4 <= growth <= 256:
        raise ZooError(f"the DenseNet growth rate must be between 4 and 256, got {growth}")
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    x = g.conv_act("input", 3, stem, kernel=7, stride=2, pad=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=1)
    channels = stem
    for index, layers in enumerate(blocks):
        features = [x]
        for layer in range(layers):
            width_in = channels + layer * growth
            y = g.activation(g.batchnorm(g.concat(features), width_in), "relu")
            y = g.conv_act(y, width_in, 4 * growth, kernel=1)
            features.append(g.conv(y, 4 * growth, growth, kernel=3))
        x, channels = g.concat(features), channels + layers * growth
        if index < len(blocks) - 1:
            y = g.activation(g.batchnorm(x, channels), "relu")
            x = g.avgpool(g.conv(y, channels, channels // 2, kernel=1), kernel=2, stride=2)
            channels //= 2
    x = g.activation(g.batchnorm(x, channels), "relu")
    x = g.gemm(g.global_avgpool_flatten(x), channels, classes)
    return g.model(f"densenet{depth}", shape, x, [batch, classes])


# -- GoogLeNet ----------------------------------------------------------------------------------


def googlenet(
    *,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """GoogLeNet (Inception v1) as torchvision runs it in inference (no auxiliary heads).

    A 7x7 stem, 1x1 and 3x3 convs, nine inception modules of four branches (1x1; 1x1 then
    3x3; 1x1 then 3x3; 3x3 max-pool then 1x1) joined by Concat, ceil-mode max-pools between
    the stages, global average pooling and a Gemm.

    Args:
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``googlenet``.
    """
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    x = g.conv_act("input", 3, 64, kernel=7, stride=2, pad=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=0, ceil=True)
    x = g.conv_act(x, 64, 64, kernel=1)
    x = g.conv_act(x, 64, 192, kernel=3)
    x = g.maxpool(x, kernel=3, stride=2, pad=0, ceil=True)
    channels = 192
    for item in _GOOGLENET_INCEPTIONS:
        if isinstance(item, str):
            kernel = int(item[1])
            x = g.maxpool(x, kernel=kernel, stride=2, pad=0, ceil=True)
            continue
        x, channels = _inception(g, x, channels, item)
    x = g.gemm(g.global_avgpool_flatten(x), channels, classes)
    return g.model("googlenet", shape, x, [batch, classes])


def _inception(g: GraphBuilder, x: str, channels: int, widths: Sequence[int]) -> tuple[str, int]:
    c1, r3, c3, r5, c5, proj = widths
    b1 = g.conv_act(x, channels, c1, kernel=1)
    b2 = g.conv_act(g.conv_act(x, channels, r3, kernel=1), r3, c3, kernel=3)
    b3 = g.conv_act(g.conv_act(x, channels, r5, kernel=1), r5, c5, kernel=3)
    pooled = g.maxpool(x, kernel=3, stride=1, pad=1, ceil=True)
    b4 = g.conv_act(pooled, channels, proj, kernel=1)
    return g.concat([b1, b2, b3, b4]), c1 + c3 + c5 + proj
