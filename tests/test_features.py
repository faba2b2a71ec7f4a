"""Tests of the regressor's features: raw, fused, derived and PR-aware columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prmodel.layers import ACTIVATIONS, PARAMETERS, LayerConfig, LayerKind
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets.profiles import GemmBlocks, builtin_profile
from prmodel.targets.scalesim import ScaleSimTarget
from prmodel.train.features import BLOCKED_FEATURE, FeatureError, FeatureSpec, gemm_view

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


SYSTOLIC = GemmBlocks(k=32, n=32, fill=94)


@pytest.mark.parametrize(
    ("layer", "view"),
    [
        (LayerConfig.create("dense", batch=2, channels=64, out_channels=50), (1, 2, 64, 50)),
        (EXAMPLES[LayerKind.CONV], (1, 14 * 14, 12 * 9, 20)),
        (
            LayerConfig.create(
                "conv", channels=32, height=8, width=8, out_channels=32, kernel=3, padding=1,
                groups=32,
            ),
            (32, 64, 9, 1),
        ),
    ],
)  # fmt: skip
def test_gemm_view(layer: LayerConfig, view: tuple[int, int, int, int]) -> None:
    assert gemm_view(layer) == view
    spec = FeatureSpec.for_kind(layer.kind)
    assert [column(spec, layer, n) for n in ("gemm_groups", "gemm_m", "gemm_k", "gemm_n")] == [
        float(v) for v in view
    ]
    assert "gemm_work" not in spec.names  # no profile: no tiled features


def test_tiled_gemm_features_of_a_systolic_array() -> None:
    spec = FeatureSpec(LayerKind.DENSE, blocks=SYSTOLIC)
    layer = LayerConfig.create("dense", channels=40, out_channels=70)  # K 40 -> 2, N 70 -> 3
    assert column(spec, layer, "gemm_k_tiles") == 2
    assert column(spec, layer, "gemm_n_tiles") == 3
    assert column(spec, layer, "gemm_k_padded") == 64
    assert column(spec, layer, "padded_macs") == 64 * 96
    assert column(spec, layer, "gemm_efficiency") == pytest.approx(40 * 70 / (64 * 96))
    assert column(spec, layer, "gemm_work") == 2 * 3 * (1 + 94)  # folds * (M + fill)
    assert spec.work_feature == "gemm_work"


def test_channel_blocking_pads_channels_not_the_window() -> None:
    spec = FeatureSpec(LayerKind.CONV, blocks=GemmBlocks(k=8, n=16, reduction="channels"))
    layer = EXAMPLES[LayerKind.CONV]  # 12 channels, 3x3, 20 filters, 14x14 outputs
    assert column(spec, layer, "gemm_k_padded") == 16 * 9
    assert column(spec, layer, "gemm_n_padded") == 32
    assert column(spec, layer, "gemm_work") == 2 * 9 * 2 * 196


def test_the_profile_reaches_the_spec_through_the_pr_set() -> None:
    profile = ScaleSimTarget(rows=32, cols=32, dataflow="ws").hardware_profile()
    with_profile = RepresentativeSet(
        "t", PR.steps, {"profile": {**profile.to_dict(), "source": "derived"}}
    )
    spec = FeatureSpec.for_kind("conv", with_profile)
    assert spec.blocks == profile.gemm_blocks("conv")
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    name_only = RepresentativeSet("t", PR.steps, {"profile": {"name": "x", "source": "derived"}})
    assert FeatureSpec.for_kind("conv", name_only).blocks is None


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (EXAMPLES[LayerKind.CONV], EXAMPLES[LayerKind.CONV].with_params(channels=16,
                                                                        out_channels=32)),
        (
            LayerConfig.create(
                "conv", channels=8, height=8, width=8, out_channels=8, kernel=3, padding=1, groups=8
            ),
            None,  # grouped: left as it is
        ),
    ],
)  # fmt: skip
def test_plateau_of_moves_stepped_parameters(
    layer: LayerConfig, expected: LayerConfig | None
) -> None:
    spec = FeatureSpec.for_kind("conv", PR)
    assert spec.plateau_of(layer) == (expected or layer)


@pytest.mark.parametrize("kind", [LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.GLOBALAVGPOOL])
def test_pools_learn_whether_their_channels_fill_the_cpu_block(kind: LayerKind) -> None:
    spec = FeatureSpec.for_kind(kind, profile=builtin_profile("ort-cpu-avx512"))
    assert spec.channel_block == 16 and BLOCKED_FEATURE in spec.names
    column = spec.names.index(BLOCKED_FEATURE)
    layers = [LayerConfig.create(kind, channels=c, height=14, width=14) for c in (64, 60, 832)]
    assert spec.transform(layers)[:, column].tolist() == [1.0, 0.0, 1.0]
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_channel_block_feature_needs_a_pooling_kind_and_a_cpu_block() -> None:
    avx512 = builtin_profile("ort-cpu-avx512")
    assert BLOCKED_FEATURE not in FeatureSpec.for_kind("conv", profile=avx512).names
    assert builtin_profile("ort-cpu-avx2").channel_block() == 8
    assert builtin_profile("ort-cpu-generic").channel_block() is None
    accelerator = ScaleSimTarget(rows=32, cols=32, dataflow="ws").hardware_profile()
    assert BLOCKED_FEATURE not in FeatureSpec.for_kind("maxpool", profile=accelerator).names
    # a spec saved before the feature existed rebuilds without it
    saved = FeatureSpec.for_kind("maxpool", profile=avx512).to_dict()
    del saved["channel_block"]
    assert BLOCKED_FEATURE not in FeatureSpec.from_dict(saved).names
