"""Mobile CNN architectures, torch-free: MobileNet V2 and V3, EfficientNet, MNASNet and
ShuffleNet V2.

Each builder writes the graph that torchvision's model gives through PyTorch's ONNX exporter
in eval mode (opset 17, batch-norm folded into the convs): ReLU6 as Clip, HardSwish,
squeeze-excite blocks (GlobalAveragePool, two 1x1 convs, HardSigmoid or Sigmoid, Mul), SiLU as
Sigmoid + Mul, ShuffleNet's channel split (Slice) and shuffle (Reshape, Transpose, Reshape).
At the defaults (224 px, batch 1, width 1) the layers, MACs and parameter counts are
torchvision's. Every builder returns a checked ``ModelProto`` with input ``input``
(``batch x 3 x size x size``) and output ``output`` (``batch x classes``); ``weights=False``
gives a skeleton (:mod:`prmodel.zoo.builder`).
"""

from __future__ import annotations

import math

import onnx

from prmodel.zoo.builder import (
    GraphBuilder,
    ZooError,
    check_width,
    conv_output_size,
    input_shape,
    make_divisible,
)

_MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    # expansion t, output channels c, blocks n, stride of the first block s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_V3 = tuple[int, int, int, int, bool, str, int]
"""(input channels, kernel, expanded channels, output channels, squeeze-excite, activation,
stride) of one MobileNet V3 block, before the width multiplier."""

MOBILENET_V3_BLOCKS: dict[str, tuple[tuple[_V3, ...], int]] = {
    "large": (
        (
            (16, 3, 16, 16, False, "relu", 1),
            (16, 3, 64, 24, False, "relu", 2),
            (24, 3, 72, 24, False, "relu", 1),
            (24, 5, 72, 40, True, "relu", 2),
            (40, 5, 120, 40, True, "relu", 1),
            (40, 5, 120, 40, True, "relu", 1),
            (40, 3, 240, 80, False, "hardswish", 2),
            (80, 3, 200, 80, False, "hardswish", 1),
            (80, 3, 184, 80, False, "hardswish", 1),
            (80, 3, 184, 80, False, "hardswish", 1),
            (80, 3, 480, 112, True, "hardswish", 1),
            (112, 3, 672, 112, True, "hardswish", 1),
            (112, 5, 672, 160, True, "hardswish", 2),
            (160, 5, 960, 160, True, "hardswish", 1),
            (160, 5, 960, 160, True, "hardswish", 1),
        ),
        1280,
    ),
    "small": (
        (
            (16, 3, 16, 16, True, "relu", 2),
            (16, 3, 72, 24, False, "relu", 2),
            (24, 3, 88, 24, False, "relu", 1),
            (24, 5, 96, 40, True, "hardswish", 2),
            (40, 5, 240, 40, True, "hardswish", 1),
            (40, 5, 240, 40, True, "hardswish", 1),
            (40, 5, 120, 48, True, "hardswish", 1),
            (48, 5, 144, 48, True, "hardswish", 1),
            (48, 5, 288, 96, True, "hardswish", 2),
            (96, 5, 576, 96, True, "hardswish", 1),
            (96, 5, 576, 96, True, "hardswish", 1),
        ),
        1024,
    ),
}
"""MobileNet V3 variant -> its blocks and the width of its classifier's hidden layer."""

_EFFICIENTNET_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    # expansion, kernel, stride, input channels, output channels, layers (B0)
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

EFFICIENTNET_SCALES: dict[str, tuple[float, float, int]] = {
    "b0": (1.0, 1.0, 224),
    "b1": (1.0, 1.1, 240),
    "b2": (1.1, 1.2, 260),
    "b3": (1.2, 1.4, 300),
}
"""EfficientNet variant -> (width multiplier, depth multiplier, native resolution)."""

_MNASNET_STAGES: tuple[tuple[int, int, int, int], ...] = (
    # kernel, stride, expansion, blocks; output channels are _MNASNET_DEPTHS[2:]
    (3, 2, 3, 3),
    (5, 2, 3, 3),
    (5, 2, 6, 3),
    (3, 1, 6, 2),
    (5, 2, 6, 4),
    (3, 1, 6, 1),
)
_MNASNET_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)

SHUFFLENET_V2_WIDTHS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
"""ShuffleNet V2 width -> channels of the stem, the three stages and the last conv."""


# -- MobileNet V2 -------------------------------------------------------------------------------


def mobilenet_v2(
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """MobileNet V2: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project) with
    ReLU6 (Clip 0..6), residual Adds where shapes allow, a 1x1 conv to 1280, global average
    pooling, Flatten and a Gemm.

    Args:
        width: The width multiplier (channels rounded to multiples of 8, as torchvision).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``mobilenet_v2``.
    """
    check_width(width)
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    channels = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    x = g.conv_act("input", 3, channels, kernel=3, stride=2, act="relu6")
    for expansion, c, count, first_stride in _MOBILENET_V2_STAGES:
        out = make_divisible(c * width)
        for index in range(count):
            stride = first_stride if index == 0 else 1
            hidden = round(channels * expansion)
            y = x
            if expansion != 1:
                y = g.conv_act(y, channels, hidden, kernel=1, act="relu6")
            y = g.conv_act(y, hidden, hidden, kernel=3, stride=stride, groups=hidden, act="relu6")
            y = g.conv_act(y, hidden, out, kernel=1, act=None)
            x = g.add(x, y) if stride == 1 and channels == out else y
            channels = out
    x = g.conv_act(x, channels, last, kernel=1, act="relu6")
    x = g.gemm(g.global_avgpool_flatten(x), last, classes)
    return g.model("mobilenet_v2", shape, x, [batch, classes])


# -- MobileNet V3 -------------------------------------------------------------------------------


def mobilenet_v3(
    variant: str = "large",
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """MobileNet V3 large or small: inverted residuals with ReLU or HardSwish, squeeze-excite
    with a HardSigmoid gate, a 1x1 conv to six times the last block's width, global average
    pooling, and a two-Gemm classifier with HardSwish between.

    Args:
        variant: ``"large"`` or ``"small"`` (:data:`MOBILENET_V3_BLOCKS`).
        width: The width multiplier (channels rounded to multiples of 8, as torchvision).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``mobilenet_v3_<variant>``.
    """
    if variant not in MOBILENET_V3_BLOCKS:
        raise ZooError(f"MobileNet V3 variant must be 'large' or 'small', got {variant!r}")
    check_width(width)
    shape = input_shape(batch, size, minimum=32)
    blocks, hidden_width = MOBILENET_V3_BLOCKS[variant]
    g = GraphBuilder(seed=seed, weights=weights)
    channels = make_divisible(blocks[0][0] * width)
    x = g.conv_act("input", 3, channels, kernel=3, stride=2, act="hardswish")
    for _, kernel, expanded, out, se, act, stride in blocks:
        expanded, out = make_divisible(expanded * width), make_divisible(out * width)
        y = x
        if expanded != channels:
            y = g.conv_act(y, channels, expanded, kernel=1, act=act)
        y = g.conv_act(
            y, expanded, expanded, kernel=kernel, stride=stride, groups=expanded, act=act
        )
        if se:
            squeeze = make_divisible(expanded // 4)
            y = g.squeeze_excite(y, expanded, squeeze, act="relu", gate="hardsigmoid")
        y = g.conv_act(y, expanded, out, kernel=1, act=None)
        x = g.add(y, x) if stride == 1 and channels == out else y
        channels = out
    last_conv, hidden = 6 * channels, make_divisible(hidden_width * width)
    x = g.conv_act(x, channels, last_conv, kernel=1, act="hardswish")
    x = g.activation(g.gemm(g.global_avgpool_flatten(x), last_conv, hidden), "hardswish")
    x = g.gemm(x, hidden, classes)
    return g.model(f"mobilenet_v3_{variant}", shape, x, [batch, classes])


# -- EfficientNet -------------------------------------------------------------------------------


def efficientnet(
    variant: str = "b0",
    *,
    width: float | None = None,
    depth: float | None = None,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """EfficientNet B0-B3 style: MBConv blocks (1x1 expand, depthwise, squeeze-excite, 1x1
    project) with SiLU written as ``x * Sigmoid(x)``, a Sigmoid-gated squeeze-excite, a 1x1 conv
    to four times the last block's width, global average pooling and a Gemm.

    The variant sets the width and depth multipliers (:data:`EFFICIENTNET_SCALES`); ``size``
    stays 224 unless given (the variants' native resolutions are in the table).

    Args:
        variant: ``"b0"`` to ``"b3"``.
        width: Overrides the variant's width multiplier.
        depth: Overrides the variant's depth multiplier (blocks per stage, rounded up).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``efficientnet_<variant>``.
    """
    if variant not in EFFICIENTNET_SCALES:
        known = ", ".join(EFFICIENTNET_SCALES)
        raise ZooError(f"EfficientNet variant must be one of {known}, got {variant!r}")
    width = EFFICIENTNET_SCALES[variant][0] if width is None else width
    depth = EFFICIENTNET_SCALES[variant][1] if depth is None else depth
    check_width(width)
    if not 0.5 <= depth <= 4.0:
        raise ZooError(f"the depth multiplier must be between 0.5 and 4, got {depth}")
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    channels = make_divisible(_EFFICIENTNET_STAGES[0][3] * width)
    x = g.conv_act("input", 3, channels, kernel=3, stride=2, act="silu")
    for expansion, kernel, first_stride, _, c, layers in _EFFICIENTNET_STAGES:
        out = make_divisible(c * width)
        for index in range(math.ceil(layers * depth)):
            stride = first_stride if index == 0 else 1
            expanded = make_divisible(channels * expansion)
            y = x
            if expanded != channels:
                y = g.conv_act(y, channels, expanded, kernel=1, act="silu")
            y = g.conv_act(
                y, expanded, expanded, kernel=kernel, stride=stride, groups=expanded, act="silu"
            )
            y = g.squeeze_excite(y, expanded, max(1, channels // 4), act="silu", gate="sigmoid")
            y = g.conv_act(y, expanded, out, kernel=1, act=None)
            x = g.add(y, x) if stride == 1 and channels == out else y
            channels = out
    last = 4 * channels
    x = g.conv_act(x, channels, last, kernel=1, act="silu")
    x = g.gemm(g.global_avgpool_flatten(x), last, classes)
    return g.model(f"efficientnet_{variant}", shape, x, [batch, classes])


# -- MNASNet ------------------------------------------------------------------------------------


def mnasnet(
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """MNASNet-B1 (torchvision's ``mnasnet<width>``): a depthwise-separable stem, stacks of
    inverted residuals with ReLU and no squeeze-excite, a 1x1 conv to 1280, the spatial mean
    as ReduceMean and a Gemm.

    Args:
        width: The width multiplier (torchvision's alpha: 0.5, 0.75, 1.0, 1.3).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``mnasnet``.
    """
    check_width(width)
    shape = input_shape(batch, size, minimum=32)
    depths = [_round_to_multiple(d * width) for d in _MNASNET_DEPTHS]
    g = GraphBuilder(seed=seed, weights=weights)
    x = g.conv_act("input", 3, depths[0], kernel=3, stride=2)
    x = g.conv_act(x, depths[0], depths[0], kernel=3, groups=depths[0])
    x = g.conv_act(x, depths[0], depths[1], kernel=1, act=None)
    channels = depths[1]
    for (kernel, first_stride, expansion, count), out in zip(
        _MNASNET_STAGES, depths[2:], strict=True
    ):
        for index in range(count):
            stride = first_stride if index == 0 else 1
            mid = channels * expansion
            y = g.conv_act(x, channels, mid, kernel=1)
            y = g.conv_act(y, mid, mid, kernel=kernel, stride=stride, groups=mid)
            y = g.conv_act(y, mid, out, kernel=1, act=None)
            x = g.add(y, x) if stride == 1 and channels == out else y
            channels = out
    x = g.conv_act(x, channels, 1280, kernel=1)
    x = g.gemm(g.spatial_mean(x), 1280, classes)
    return g.model("mnasnet", shape, x, [batch, classes])


def _round_to_multiple(value: float, divisor: int = 8, round_up_bias: float = 0.9) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded if rounded >= round_up_bias * value else rounded + divisor


# -- ShuffleNet V2 ------------------------------------------------------------------------------


def shufflenet_v2(
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """ShuffleNet V2: units that split the channels in two (Slice), transform one half (1x1,
    3x3 depthwise, 1x1), Concat the halves and shuffle them (Reshape, Transpose, Reshape);
    downsampling units transform both halves. A 1x1 conv, the spatial mean (ReduceMean) and a
    Gemm end it.

    Args:
        width: One of :data:`SHUFFLENET_V2_WIDTHS` (0.5, 1.0, 1.5, 2.0).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``shufflenet_v2``.
    """
    if width not in SHUFFLENET_V2_WIDTHS:
        known = ", ".join(map(str, SHUFFLENET_V2_WIDTHS))
        raise ZooError(f"ShuffleNet V2 width must be one of {known}, got {width}")
    shape = input_shape(batch, size, minimum=32)
    widths = SHUFFLENET_V2_WIDTHS[width]
    g = GraphBuilder(seed=seed, weights=weights)
    x = g.conv_act("input", 3, widths[0], kernel=3, stride=2)
    x = g.maxpool(x, kernel=3, stride=2, pad=1)
    side = conv_output_size(
        conv_output_size(size, kernel=3, stride=2, pad=1), kernel=3, stride=2, pad=1
    )
    channels = widths[0]
    for out, count in zip(widths[1:4], (4, 8, 4), strict=True):
        side = conv_output_size(side, kernel=3, stride=2, pad=1)
        half = out // 2
        left = g.conv_act(x, channels, channels, kernel=3, stride=2, groups=channels, act=None)
        left = g.conv_act(left, channels, half, kernel=1)
        right = _shuffle_branch(g, x, channels, half, stride=2)
        x = _channel_shuffle(g, g.concat([left, right]), batch, out, side)
        for _ in range(count - 1):
            left = g.slice(x, axis=1, start=0, end=half)
            right = _shuffle_branch(
                g, g.slice(x, axis=1, start=half, end=out), half, half, stride=1
            )
            x = _channel_shuffle(g, g.concat([left, right]), batch, out, side)
        channels = out
    x = g.conv_act(x, channels, widths[4], kernel=1)
    x = g.gemm(g.spatial_mean(x), widths[4], classes)
    return g.model("shufflenet_v2", shape, x, [batch, classes])


def _shuffle_branch(g: GraphBuilder, x: str, in_ch: int, half: int, *, stride: int) -> str:
    y = g.conv_act(x, in_ch, half, kernel=1)
    y = g.conv_act(y, half, half, kernel=3, stride=stride, groups=half, act=None)
    return g.conv_act(y, half, half, kernel=1)


def _channel_shuffle(g: GraphBuilder, x: str, batch: int, channels: int, side: int) -> str:
    grouped = g.reshape(x, [batch, 2, channels // 2, side, side])
    return g.reshape(g.transpose(grouped, [0, 2, 1, 3, 4]), [batch, channels, side, side])
