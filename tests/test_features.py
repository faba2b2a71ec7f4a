"""Tests of the regressor's features: raw, fused, derived and PR-aware columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prmodel.features import FeatureError, FeatureSpec
from prmodel.layers import ACTIVATIONS, PARAMETERS, LayerConfig, LayerKind
from prmodel.representatives import ParameterSteps, RepresentativeSet

PR = RepresentativeSet(
    target_id="analytic-b16-l8",
    steps=(
        ParameterSteps(LayerKind.CONV, "out_channels", True, period=16),
        ParameterSteps(LayerKind.CONV, "channels", True, period=8),
        ParameterSteps(LayerKind.CONV, "height", False),
        ParameterSteps(LayerKind.DENSE, "out_channels", True, breakpoints=(10, 100, 1000)),
    ),
)

EXAMPLES = {
    LayerKind.CONV: LayerConfig.create(
        "conv", channels=12, height=14, width=14, out_channels=20, kernel=3, padding=1
    ),
    LayerKind.DENSE: LayerConfig.create("dense", channels=64, out_channels=50),
    LayerKind.MAXPOOL: LayerConfig.create("maxpool", channels=8, height=8, width=8, kernel=2),
    LayerKind.ADD: LayerConfig.create("add", channels=8, height=4, width=4),
    LayerKind.GELU: LayerConfig.create("gelu", channels=8, height=4, width=4),
}


def column(spec: FeatureSpec, layer: LayerConfig, name: str) -> float:
    return float(spec.transform([layer])[0, spec.names.index(name)])


@pytest.mark.parametrize("kind", list(EXAMPLES))
@pytest.mark.parametrize("with_pr", [False, True])
def test_schema_matches_matrix(kind: LayerKind, with_pr: bool) -> None:
    spec = FeatureSpec.for_kind(kind, PR if with_pr else None)
    layer = EXAMPLES[kind]
    matrix = spec.transform([layer, layer])
    assert matrix.shape == (2, len(spec.names))
    assert len(set(spec.names)) == len(spec.names)
    assert np.all(np.isfinite(matrix))
    # raw parameters come first, in the kind's canonical order, with their values
    n_params = len(PARAMETERS[kind])
    assert spec.names[:n_params] == PARAMETERS[kind]
    assert list(matrix[0, :n_params]) == list(layer.params().values())
    assert column(spec, layer, "macs") == layer.macs
    assert column(spec, layer, "total_bytes") == layer.weight_bytes + layer.activation_bytes


def test_fused_activation_and_residual_columns() -> None:
    spec = FeatureSpec.for_kind("conv")
    plain = EXAMPLES[LayerKind.CONV]
    fused = plain.with_params(activation="relu6", residual=True)
    assert [column(spec, plain, f"act_{a}") for a in ACTIVATIONS] == [0.0] * len(ACTIVATIONS)
    assert column(spec, fused, "act_relu6") == 1.0
    assert column(spec, fused, "act_relu") == 0.0
    assert column(spec, fused, "residual") == 1.0
    assert "residual" not in FeatureSpec.for_kind("dense").names
    assert "act_relu" not in FeatureSpec.for_kind("maxpool").names


def test_pr_features_of_a_regular_staircase() -> None:
    spec = FeatureSpec.for_kind("conv", PR)
    layer = EXAMPLES[LayerKind.CONV]  # 12 -> 20 channels; periods 8 (in) and 16 (out)
    assert "height_plateau" not in spec.names  # analysed, but without steps
    assert column(spec, layer, "out_channels_plateau") == 1
    assert column(spec, layer, "out_channels_rounded") == 32
    assert column(spec, layer, "out_channels_blocks") == 2
    assert column(spec, layer, "out_channels_fill") == pytest.approx(20 / 32)
    assert column(spec, layer, "channels_rounded") == 16
    rounded = layer.with_params(channels=16, out_channels=32)
    assert column(spec, layer, "macs_rounded") == rounded.macs
    assert column(spec, layer, "rounded_efficiency") == pytest.approx(layer.macs / rounded.macs)


@pytest.mark.parametrize(
    ("width", "plateau", "rounded", "blocks"),
    [(5, 0, 10, 1), (10, 0, 10, 1), (11, 1, 100, 2), (1000, 2, 1000, 3)],
)
def test_pr_features_of_breakpoints(width: int, plateau: int, rounded: int, blocks: int) -> None:
    spec = FeatureSpec.for_kind("dense", PR)
    layer = LayerConfig.create("dense", channels=4, out_channels=width)
    assert column(spec, layer, "out_channels_plateau") == plateau
    assert column(spec, layer, "out_channels_rounded") == rounded
    assert column(spec, layer, "out_channels_blocks") == blocks


def test_round_trip_through_json() -> None:
    spec = FeatureSpec.for_kind("conv", PR)
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.names == spec.names
    layers = [EXAMPLES[LayerKind.CONV], EXAMPLES[LayerKind.CONV].with_params(out_channels=33)]
    np.testing.assert_array_equal(again.transform(layers), spec.transform(layers))


def test_frame_has_named_columns() -> None:
    spec = FeatureSpec.for_kind("dense")
    frame = spec.frame([EXAMPLES[LayerKind.DENSE]])
    assert list(frame.columns) == list(spec.names)
    assert frame.loc[0, "out_channels"] == 50


def test_refuses_a_layer_of_another_kind() -> None:
    with pytest.raises(FeatureError, match="dense layer given to the conv features"):
        FeatureSpec.for_kind("conv").transform([EXAMPLES[LayerKind.DENSE]])


def test_round_trip_keeps_the_start_of_a_staircase() -> None:
    steps = ParameterSteps(LayerKind.DENSE, "out_channels", True, period=16, start=64)
    spec = FeatureSpec.for_kind("dense", RepresentativeSet("t", (steps,)))
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    layers = [LayerConfig.create("dense", channels=8, out_channels=n) for n in (40, 70)]
    assert column(again, layers[0], "out_channels_rounded") == 40  # below start: no rounding
    assert column(again, layers[1], "out_channels_rounded") == 80
    np.testing.assert_array_equal(again.transform(layers), spec.transform(layers))
