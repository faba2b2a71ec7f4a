"""Parameter spaces: ranges, choices, ties, symbolic values, limits and the YAML form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.spaces import (
    DEPTHWISE,
    GROUP_WIDTH,
    GROUPED_WIDTHS,
    SAME,
    Choice,
    Fixed,
    IntRange,
    Limits,
    ParameterSpace,
    SpaceError,
    Tied,
    default_space,
    default_spaces,
    group_width,
    grouped_conv_space,
    load_spaces,
    log_spaced,
    save_spaces,
)


@pytest.mark.parametrize("kind", list(LayerKind))
def test_random_layers_are_valid_inside_the_space_and_the_limits(kind: LayerKind) -> None:
    space = default_space(kind)
    rng = np.random.default_rng(0)
    layers = [space.random_layer(rng) for _ in range(100)]
    assert all(layer.kind is kind and space.contains(layer) for layer in layers)
    assert all(space.limits.allows(layer) for layer in layers)
    assert len({layer.key for layer in layers}) > 50  # really random


def test_log_uniform_sampling_reaches_both_ends() -> None:
    dim = IntRange(1, 1024)
    draws = [dim.sample(np.random.default_rng(seed)) for seed in range(3000)]
    assert min(draws) == 1 and max(draws) == 1024
    assert np.median(draws) < 64  # log-uniform: the median is near sqrt(1024) = 32


def test_build_resolves_ties_same_padding_and_depthwise() -> None:
    space = default_space("conv")
    layer = space.build({"channels": 32, "height": 17, "kernel_h": 5, "groups": DEPTHWISE})
    assert (layer.width, layer.kernel_w, layer.pad_h, layer.pad_w) == (17, 5, 2, 2)
    assert layer.groups == layer.channels == layer.out_channels == 32
    assert space.values_from_layer(layer)["groups"] == DEPTHWISE
    assert space.build(space.values_from_layer(layer)) == layer


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # channels rounded down to the width, outputs down to the groups
        ({"channels": 100, "out_channels": 50, "groups": "width8"}, (96, 12, 48)),
        # at least two groups, at least one output per group
        ({"channels": 5, "out_channels": 1, "groups": "width8"}, (16, 2, 2)),
        ({"channels": 64, "out_channels": 64, "groups": "width4"}, (64, 16, 64)),
    ],
)
def test_build_resolves_group_widths(
    values: dict[str, object], expected: tuple[int, int, int]
) -> None:
    space = _grouped_space()
    layer = space.build(values)
    assert (layer.channels, layer.groups, layer.out_channels) == expected
    assert space.values_from_layer(layer)["groups"] == values["groups"]
    assert space.build(space.values_from_layer(layer)) == layer
    assert space.contains(layer)
    assert not default_space("conv").contains(layer)  # the default draws no grouped convs


def _grouped_space() -> ParameterSpace:
    conv = default_space("conv")
    groups = Choice((1, DEPTHWISE, "width4", "width8"), (4.0, 2.0, 1.0, 1.0))
    return ParameterSpace(LayerKind.CONV, {**conv.dimensions, "groups": groups}, conv.base)


@pytest.mark.parametrize(
    ("value", "width"),
    [("width8", 8), ("width64", 64), ("width1", None), (GROUP_WIDTH, None), ("widthx", None),
     (8, None), (DEPTHWISE, None)],
)  # fmt: skip
def test_group_width_values(value: object, width: int | None) -> None:
    assert group_width(value) == width


def test_weighted_choices_draw_by_their_weights() -> None:
    dim = Choice((1, 2, 3), (6.0, 3.0, 1.0))
    rng = np.random.default_rng(0)
    draws = np.array([dim.sample(rng) for _ in range(5000)])
    shares = [float(np.mean(draws == v)) for v in (1, 2, 3)]
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.03)
    assert list(dim.shares((3, 1))) == pytest.approx([1 / 7, 6 / 7])  # among those given
    assert list(Choice((1, 2)).shares()) == [0.5, 0.5]


def test_a_space_with_group_widths_draws_grouped_convs_by_the_weights() -> None:
    space = _grouped_space()
    rng = np.random.default_rng(0)
    layers = [space.random_layer(rng) for _ in range(1000)]
    dense = sum(layer.groups == 1 for layer in layers)
    depthwise = sum(1 < layer.groups == layer.channels for layer in layers)
    grouped = [layer for layer in layers if 1 < layer.groups < layer.channels]
    assert [dense, depthwise, len(grouped)] == pytest.approx([500, 250, 250], abs=50)
    assert {layer.channels // layer.groups for layer in grouped} == {4, 8}
    assert all(space.contains(layer) for layer in layers)


def test_the_grouped_conv_space_draws_grouped_block_convs() -> None:
    space = grouped_conv_space()
    rng = np.random.default_rng(0)
    layers = [space.random_layer(rng) for _ in range(500)]
    assert all(1 < layer.groups < layer.channels for layer in layers)
    assert {layer.channels // layer.groups for layer in layers} == set(GROUPED_WIDTHS)
    assert all(layer.out_channels == layer.channels for layer in layers)
    assert {(layer.kernel_h, layer.pad_h) for layer in layers} == {(3, 1)}
    assert {layer.stride_h for layer in layers} == {1, 2}
    assert {layer.activation for layer in layers} == {None, "relu"}
    assert all(space.contains(layer) and space.limits.allows(layer) for layer in layers)
    assert space.build(space.base).groups == 8  # the base layer: 64 channels in groups of 8


def test_tied_output_channels_follow_the_channels_a_group_width_rounds() -> None:
    space = grouped_conv_space()
    # 100 channels in groups of 8: 96; 5 channels: raised to two groups, 16
    assert space.build({"channels": 100, "groups": "width8"}).out_channels == 96
    assert space.build({"channels": 5, "groups": "width8"}).out_channels == 16


def test_group_widths_and_weights_round_trip_through_yaml(tmp_path: Path) -> None:
    path = save_spaces([grouped_conv_space()], str(tmp_path / "grouped.yaml"))  # str or Path
    assert load_spaces(path)[LayerKind.CONV] == grouped_conv_space()
    path = save_spaces([_grouped_space()], tmp_path / "spaces.yaml")
    assert "weights: [4.0, 2.0, 1.0, 1.0]" in path.read_text()
    assert load_spaces(path)[LayerKind.CONV] == _grouped_space()


@pytest.mark.parametrize(
    ("layer", "inside"),
    [
        (LayerConfig.create("conv", channels=8, out_channels=8, height=9, width=9), True),
        (LayerConfig.create("conv", channels=8, height=9, width=10), False),  # not square
        (LayerConfig.create("conv", channels=8, height=9, width=9, kernel=3), False),  # pad
        (LayerConfig.create("conv", channels=8, height=9, width=9, kernel=2), False),  # kernel
        (LayerConfig.create("conv", channels=2048, height=9, width=9), False),  # range
        (LayerConfig.create("conv", channels=4, out_channels=8, groups=2), False),  # groups
        (LayerConfig.create("dense", channels=8, out_channels=8), False),  # kind
        (
            LayerConfig.create(
                "conv", channels=1024, out_channels=1024, height=224, width=224, kernel=7, padding=3
            ),
            False,  # over the limits
        ),
    ],
)
def test_contains(layer: LayerConfig, inside: bool) -> None:
    assert default_space("conv").contains(layer) is inside


def test_try_build_refuses_invalid_and_over_limit_layers() -> None:
    space = default_space("conv")
    assert space.try_build({"channels": 6, "groups": 4}) is None  # invalid
    assert space.try_build({"channels": 1024, "out_channels": 1024, "height": 224}) is None
    assert space.try_build({"channels": 16}) is not None


def test_an_impossible_space_says_so() -> None:
    space = ParameterSpace(
        LayerKind.DENSE,
        {"channels": IntRange(512, 1024), "out_channels": IntRange(512, 1024)},
        limits=Limits(max_weight_bytes=100),
    )
    with pytest.raises(SpaceError, match="no valid layer"):
        space.random_layer(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("low", "high", "count"), [(1, 1024, 8), (1, 15, 5), (7, 7, 4), (33, 4096, 7)]
)
def test_log_spaced_values(low: int, high: int, count: int) -> None:
    values = log_spaced(low, high, count)
    assert values[0] == low and values[-1] == high
    assert list(values) == sorted(set(values))
    assert len(values) <= count + 1


def test_spaces_round_trip_through_yaml(tmp_path: Path) -> None:
    path = save_spaces(default_spaces(), tmp_path / "spaces.yaml")
    assert load_spaces(path) == default_spaces()


def test_yaml_space_with_shorthands(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "kind: conv\n"
        "parameters:\n"
        "  channels: {range: [16, 64], scale: uniform}\n"
        "  height: 14\n"
        "  width: 14\n"
        "  kernel: {choices: [1, 3]}\n"
        "  padding: same\n"
        "base: {kernel: 3}\n"
        "limits: {max_macs: 100000000}\n"
    )
    space = load_spaces(path)[LayerKind.CONV]
    assert space.dimensions["kernel_w"] == Tied("kernel_h")
    assert space.dimensions["pad_h"] == Fixed(SAME)
    assert space.dimensions["channels"] == IntRange(16, 64, log=False)
    layer = space.build({"channels": 20})
    assert (layer.kernel_h, layer.kernel_w, layer.pad_h, layer.height) == (3, 3, 1, 14)
    assert space.swept_parameters == ("channels",)
    assert space.values_of("kernel_h") == (1, 3)


def test_max_reduction_bounds_the_terms_one_output_sums(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "kind: conv\n"
        "parameters:\n"
        "  channels: {range: [1, 512]}\n"
        "  height: 14\n"
        "  width: 14\n"
        "  kernel: {choices: [1, 3]}\n"
        "  padding: same\n"
        "  groups: {choices: [1, depthwise]}\n"
        "limits: {max_reduction: 576}\n"
    )
    space = load_spaces(path)[LayerKind.CONV]
    assert space.limits == Limits(max_reduction=576)
    assert space.limits.allows(space.build({"channels": 64, "kernel_h": 3}))  # 64 * 9
    assert not space.limits.allows(space.build({"channels": 65, "kernel_h": 3}))
    assert space.limits.allows(space.build({"channels": 512, "kernel_h": 1}))
    depthwise = space.build({"channels": 512, "kernel_h": 3, "groups": DEPTHWISE})
    assert depthwise.reduction == 9 and space.limits.allows(depthwise)
    rng = np.random.default_rng(1)
    layers = [space.random_layer(rng) for _ in range(50)]
    assert all(x.reduction <= 576 for x in layers)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: conv\nparameters: {bogus: 1}\n", "'bogus' is not a parameter"),
        ("kind: softmax\nparameters: {channels: 1}\n", "unknown layer kind"),
        ("kind: conv\nparameters: {channels: {range: [5, 2]}}\n", "empty or not positive"),
        ("kind: conv\nparameters: {channels: {range: [0, 8]}}\n", "empty or not positive"),
        ("kind: conv\nparameters: {channels: {range: 8}}\n", "range must be"),
        ("kind: conv\nparameters: {channels: {range: [1, 8], scale: cubic}}\n", "scale must"),
        ("kind: conv\nparameters: {channels: {choices: []}}\n", "non-empty list"),
        ("kind: conv\nparameters: {groups: {choices: [1, 2], weights: [1]}}\n", "one positive"),
        ("kind: conv\nparameters: {groups: {choices: [1, 2], weights: [1, 0]}}\n", "one positive"),
        ("kind: conv\nparameters: {groups: {choices: [1], weights: 1}}\n", "list of numbers"),
        ("kind: conv\nparameters: {channels: {range: [1, 8], weights: [1]}}\n", "list of choices"),
        ("kind: conv\nparameters: {width: {same_as: height}}\n", "tied to unknown height"),
        ("kind: conv\nparameters: {channels: 1}\nlimits: {max_macs: -1}\n", "positive integer"),
        ("kind: conv\nparameters: {channels: 1}\nextra: 1\n", "unknown field 'extra'"),
        ("kind: conv\nparameters: [unclosed\n", "not valid YAML"),
        ("- 1\n", "must be a mapping with a 'kind'"),
    ],
)
def test_bad_space_files_get_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message) as caught:
        load_spaces(path)
    assert str(path) in str(caught.value)


def test_choices_and_fixed_values_in_contains() -> None:
    space = ParameterSpace(
        LayerKind.MAXPOOL,
        {
            "channels": IntRange(1, 64),
            "height": IntRange(4, 32),
            "width": Tied("height"),
            "kernel_h": Choice((2, 3)),
            "kernel_w": Tied("kernel_h"),
            "pad_h": Choice((0, SAME)),
            "pad_w": Tied("pad_h"),
            "stride_h": Fixed(2),
            "stride_w": Fixed(2),
        },
    )
    same = space.build({"kernel_h": 3, "pad_h": SAME})
    assert same.pad_h == 1 and space.contains(same)
    assert not space.contains(same.with_params(stride=1))
