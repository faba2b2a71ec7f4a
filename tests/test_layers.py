from __future__ import annotations

import pytest

from prmodel.layers import InvalidLayerError, LayerConfig


def conv(**params: object) -> LayerConfig:
    base: dict[str, object] = dict(channels=64, height=56, width=56, out_channels=128, kernel=3)
    base.update(params)
    return LayerConfig.create("conv", **base)


def test_conv_shapes_and_work() -> None:
    layer = conv(padding=1)
    assert layer.output_shape == (1, 128, 56, 56)
    assert layer.macs == 128 * 56 * 56 * 64 * 9
    assert layer.weight_bytes == 4 * 128 * (64 * 9 + 1)
    assert layer.activation_bytes == 4 * (64 * 56 * 56 + 128 * 56 * 56)


def test_strided_dilated_conv_output() -> None:
    layer = conv(stride=2, padding=2, dilation=2)
    assert layer.output_shape == (1, 128, 28, 28)


def test_depthwise_conv() -> None:
    layer = conv(channels=32, out_channels=32, groups=32, padding=1)
    assert layer.macs == 32 * 56 * 56 * 9
    assert layer.weight_bytes == 4 * 32 * 10


def test_dense_and_pooling() -> None:
    dense = LayerConfig.create("dense", batch=2, channels=512, out_channels=1000)
    assert dense.output_shape == (2, 1000)
    assert dense.macs == 2 * 512 * 1000
    pool = LayerConfig.create(
        "maxpool", channels=64, height=112, width=112, kernel=3, stride=2, padding=1
    )
    assert pool.output_shape == (1, 64, 56, 56)
    gap = LayerConfig.create("globalavgpool", channels=512, height=7, width=7)
    assert gap.output_shape == (1, 512, 1, 1)


@pytest.mark.parametrize("kind", ["add", "mul", "relu", "relu6", "sigmoid", "hardswish", "gelu"])
def test_elementwise_kinds_keep_shape(kind: str) -> None:
    layer = LayerConfig.create(kind, channels=8, height=4, width=4)
    assert layer.output_shape == layer.input_shape == (1, 8, 4, 4)


def test_round_trip_and_key_stability() -> None:
    layer = conv(padding=1, activation="relu", residual=True)
    again = LayerConfig.from_dict(layer.to_dict())
    assert again == layer
    assert again.key == layer.key
    assert conv(padding=1).key != layer.key


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"kind": "conv", "channels": 3, "out_channels": 4, "groups": 2},
            "not divisible by groups",
        ),
        ({"kind": "conv", "height": 2, "width": 2, "kernel": 5}, "larger than the padded height"),
        ({"kind": "softmax"}, "unknown layer kind 'softmax'"),
        ({"kind": "dense", "channels": 0}, "channels must be positive"),
        ({"kind": "relu", "kernel": 3}, "does not apply to a relu layer"),
        ({"kind": "conv", "channels": "many"}, "must be an integer"),
        ({"kind": "maxpool", "kernel": 2, "padding": 2, "height": 8, "width": 8}, "at most half"),
        ({"kind": "dense", "activation": "tanh"}, "activation 'tanh'"),
        ({"channels": 3}, "missing its 'kind'"),
    ],
)
def test_invalid_layers_are_refused_with_a_reason(params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidLayerError, match=message):
        LayerConfig.from_dict(params)


def test_with_params_validates() -> None:
    layer = conv(padding=1)
    narrow = layer.with_params(out_channels=16)
    assert (narrow.out_channels, narrow.channels, narrow.pad_h) == (16, 64, 1)
    assert layer.out_channels == 128 and narrow.key != layer.key  # a new layer
    with pytest.raises(InvalidLayerError):
        layer.with_params(kernel=99)
