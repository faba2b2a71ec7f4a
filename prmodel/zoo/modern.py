"""Designed-space and transformer-era CNNs, torch-free: RegNetY and ConvNeXt.

Each builder writes the graph that torchvision's model gives through PyTorch's ONNX exporter
in eval mode (opset 17): RegNetY's grouped 3x3 convs and squeeze-excite, ConvNeXt's 7x7
depthwise convs, LayerNormalization between Transposes, MatMul + Add linear layers, GELU in
its exact Div/Erf/Add/Mul form and layer scale. At the defaults (224 px, batch 1) the layers,
MACs and parameter counts are torchvision's. Every builder returns a checked ``ModelProto``
with input ``input`` (``batch x 3 x size x size``) and output ``output``
(``batch x classes``); ``weights=False`` gives a skeleton (:mod:`prmodel.zoo.builder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from prmodel.zoo.builder import GraphBuilder, ZooError, input_shape, make_divisible


@dataclass(frozen=True)
class RegNetParams:
    """The RegNet design-space parameters of one model (Radosavovic et al. 2020)."""

    depth: int
    w_0: int
    w_a: float
    w_m: float
    group_width: int
    se_ratio: float = 0.25


REGNET_Y: dict[str, RegNetParams] = {
    "400mf": RegNetParams(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8),
    "800mf": RegNetParams(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16),
    "1.6gf": RegNetParams(depth=27, w_0=48, w_a=20.71, w_m=2.65, group_width=24),
    "3.2gf": RegNetParams(depth=21, w_0=80, w_a=42.63, w_m=2.66, group_width=24),
}
"""RegNetY variants as torchvision defines them."""

CONVNEXT_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
}
"""ConvNeXt variant -> blocks per stage and stage widths (tiny/small as torchvision; the
smaller ones as ConvNeXt V2 and timm define them)."""

LAYER_SCALE = 1e-6
"""ConvNeXt's initial layer scale (torchvision's default)."""


# -- RegNetY ------------------------------------------------------------------------------------


def regnet_stages(params: RegNetParams, *, width: float = 1.0) -> list[tuple[int, int, int]]:
    """The stages of a RegNet: (width, blocks, group width) each, as torchvision computes them.

    ``width`` multiplies ``w_0`` and ``w_a`` before the widths are quantized to multiples of 8.
    """
    w_0, w_a = params.w_0 * width, params.w_a * width
    # float32 as torch computes it, so ties round the same way
    continuous = np.arange(params.depth, dtype=np.float32) * np.float32(w_a) + np.float32(w_0)
    capacity = np.round(np.log(continuous / np.float32(w_0)) / np.float32(np.log(params.w_m)))
    widths = (
        np.round(np.float32(w_0) * np.power(np.float32(params.w_m), capacity) / 8) * 8
    ).astype(int)
    stages: list[list[int]] = []
    for block_width in widths.tolist():
        if stages and stages[-1][0] == block_width:
            stages[-1][1] += 1
        else:
            stages.append([block_width, 1])
    result = []
    for stage_width, blocks in stages:
        group = min(params.group_width, stage_width)
        result.append((make_divisible(stage_width, group), blocks, group))
    return result


def regnet_y(
    variant: str = "400mf",
    *,
    width: float = 1.0,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """RegNetY: a 3x3 stem to 32 channels, four stages of bottleneck blocks (1x1, grouped 3x3,
    squeeze-excite with ReLU and a Sigmoid gate, 1x1; a 1x1 projection where the shape
    changes), global average pooling and a Gemm.

    Args:
        variant: One of :data:`REGNET_Y` (``"400mf"``, ``"800mf"``, ``"1.6gf"``, ``"3.2gf"``).
        width: Multiplies the design's initial width and slope (stage widths follow).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``regnet_y_<variant>``.
    """
    if variant not in REGNET_Y:
        raise ZooError(f"RegNetY variant must be one of {', '.join(REGNET_Y)}, got {variant!r}")
    if not 0.25 <= width <= 4.0:
        raise ZooError(f"the width multiplier must be between 0.25 and 4, got {width}")
    shape = input_shape(batch, size, minimum=32)
    params = REGNET_Y[variant]
    g = GraphBuilder(seed=seed, weights=weights)
    x, channels = g.conv_act("input", 3, 32, kernel=3, stride=2), 32
    for stage_width, blocks, group in regnet_stages(params, width=width):
        for index in range(blocks):
            stride = 2 if index == 0 else 1
            x = _regnet_block(g, x, channels, stage_width, stride, group, params.se_ratio)
            channels = stage_width
    x = g.gemm(g.global_avgpool_flatten(x), channels, classes)
    return g.model(f"regnet_y_{variant}", shape, x, [batch, classes])


def _regnet_block(
    g: GraphBuilder, x: str, in_ch: int, out_ch: int, stride: int, group: int, se_ratio: float
) -> str:
    # torchvision computes the projection first: x = proj(x) + f(x)
    shortcut = x
    if in_ch != out_ch or stride != 1:
        shortcut = g.conv_act(x, in_ch, out_ch, kernel=1, stride=stride, act=None)
    y = g.conv_act(x, in_ch, out_ch, kernel=1)
    y = g.conv_act(y, out_ch, out_ch, kernel=3, stride=stride, groups=out_ch // group)
    y = g.squeeze_excite(y, out_ch, round(se_ratio * in_ch), act="relu", gate="sigmoid")
    y = g.conv_act(y, out_ch, out_ch, kernel=1, act=None)
    return g.activation(g.add(shortcut, y), "relu")


# -- ConvNeXt -----------------------------------------------------------------------------------


def convnext(
    variant: str = "tiny",
    *,
    depths: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    batch: int = 1,
    size: int = 224,
    classes: int = 1000,
    seed: int = 0,
    weights: bool = True,
) -> onnx.ModelProto:
    """ConvNeXt: a 4x4 stride-4 stem, four stages of blocks (7x7 depthwise conv, Transpose to
    channels-last, LayerNormalization, MatMul + Add to four times the width, GELU, MatMul +
    Add back, Transpose, layer scale Mul, residual Add), LayerNorm + 2x2 stride-2 conv between
    stages, and a head of global average pooling, LayerNorm, Flatten and Gemm.

    Args:
        variant: One of :data:`CONVNEXT_SIZES` (``"tiny"`` is torchvision's convnext_tiny).
        depths: Blocks per stage (overrides the variant's; four stages).
        dims: Width of each stage (overrides the variant's; four stages).
        batch: Batch size of the static input.
        size: Input height and width (at least 32).
        classes: Output width of the final Gemm.
        seed: Seed of the random weights.
        weights: Draw weights (False: a skeleton with shapes only).

    Returns:
        A checked opset-17 ``ModelProto`` named ``convnext_<variant>``.
    """
    if variant not in CONVNEXT_SIZES:
        known = ", ".join(CONVNEXT_SIZES)
        raise ZooError(f"ConvNeXt variant must be one of {known}, got {variant!r}")
    depths = tuple(CONVNEXT_SIZES[variant][0] if depths is None else depths)
    dims = tuple(CONVNEXT_SIZES[variant][1] if dims is None else dims)
    if len(depths) != 4 or len(dims) != 4 or min(*depths, *dims) < 1:
        raise ZooError(f"ConvNeXt needs four positive depths and widths, got {depths} and {dims}")
    shape = input_shape(batch, size, minimum=32)
    g = GraphBuilder(seed=seed, weights=weights)
    x = _layernorm_2d(g, g.conv("input", 3, dims[0], kernel=4, stride=4, pad=0, bias=True), dims[0])
    for stage, (count, dim) in enumerate(zip(depths, dims, strict=True)):
        for _ in range(count):
            x = _convnext_block(g, x, dim)
        if stage < 3:
            x = _layernorm_2d(g, x, dim)
            x = g.conv(x, dim, dims[stage + 1], kernel=2, stride=2, pad=0, bias=True)
    x = g.flatten(_layernorm_2d(g, g.global_avgpool(x), dims[3]))
    x = g.gemm(x, dims[3], classes)
    return g.model(f"convnext_{variant}", shape, x, [batch, classes])


def _layernorm_2d(g: GraphBuilder, x: str, channels: int) -> str:
    y = g.layernorm(g.transpose(x, [0, 2, 3, 1]), channels)
    return g.transpose(y, [0, 3, 1, 2])


def _convnext_block(g: GraphBuilder, x: str, dim: int) -> str:
    y = g.conv(x, dim, dim, kernel=7, groups=dim, bias=True)
    y = g.layernorm(g.transpose(y, [0, 2, 3, 1]), dim)
    y = g.activation(g.matmul_add(y, dim, 4 * dim), "gelu")
    y = g.transpose(g.matmul_add(y, 4 * dim, dim), [0, 3, 1, 2])
    scale = g.constant(f"{y}.layer_scale", np.full((dim, 1, 1), LAYER_SCALE))
    return g.add(g.mul(scale, y), x)
