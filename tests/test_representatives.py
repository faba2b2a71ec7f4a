"""The PR types, plateau mapping and the PR file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.representatives import (
    ParameterSteps,
    RepresentativesError,
    RepresentativeSet,
    plateau_layer,
)

# -- ParameterSteps and plateau mapping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "value", "representative", "index"),
    [
        (ParameterSteps(LayerKind.CONV, "out_channels", True, period=16), 1, 16, 0),
        (ParameterSteps(LayerKind.CONV, "out_channels", True, period=16), 16, 16, 0),
        (ParameterSteps(LayerKind.CONV, "out_channels", True, period=16), 17, 32, 1),
        (ParameterSteps(LayerKind.CONV, "out_channels", True, period=8, offset=3), 3, 3, 0),
        (ParameterSteps(LayerKind.CONV, "out_channels", True, period=8, offset=3), 4, 11, 1),
        (ParameterSteps(LayerKind.CONV, "channels", True, period=16, start=15), 3, 3, 0),
        (ParameterSteps(LayerKind.CONV, "channels", True, period=16, start=15), 16, 16, 0),
        (ParameterSteps(LayerKind.CONV, "channels", True, period=16, start=15), 20, 32, 1),
        (ParameterSteps(LayerKind.CONV, "height", True, breakpoints=(3, 7, 10)), 5, 7, 1),
        (ParameterSteps(LayerKind.CONV, "height", True, breakpoints=(3, 7, 10)), 12, 12, 3),
        (ParameterSteps(LayerKind.CONV, "height", False), 13, 13, 0),
    ],
)
def test_plateau_mapping(
    steps: ParameterSteps, value: int, representative: int, index: int
) -> None:
    assert steps.representative(value) == representative
    assert steps.plateau_index(value) == index


def test_plateau_of_rounds_stepped_parameters_and_keeps_invalid_roundings() -> None:
    out = ParameterSteps(LayerKind.CONV, "out_channels", True, period=16)
    height = ParameterSteps(LayerKind.CONV, "height", False)
    pr = RepresentativeSet("t", (out, height))
    layer = LayerConfig.create("conv", channels=8, out_channels=20, height=9, width=9)
    assert pr.plateau_of(layer).out_channels == 32
    assert pr.plateau_of(layer).height == 9
    grouped = LayerConfig.create("conv", channels=6, out_channels=6, groups=6, height=4, width=4)
    assert pr.plateau_of(grouped).out_channels == 6  # 16 is not divisible by 6 groups


def test_plateau_of_maps_periodic_steps_but_not_irregular_breakpoints() -> None:
    periodic = ParameterSteps(LayerKind.CONV, "out_channels", True, period=16)
    irregular = ParameterSteps(LayerKind.CONV, "channels", True, breakpoints=(4, 8, 11, 15))
    prs = RepresentativeSet("t", (periodic, irregular))
    layer = LayerConfig.create("conv", channels=9, height=8, width=8, out_channels=20, kernel=3)
    mapped = prs.plateau_of(layer)
    assert mapped.out_channels == 32
    # breakpoints found on the sweep's base layer (kernel 3) do not carry over to other layers
    assert mapped.channels == 9
    grouped = layer.with_params(channels=4, out_channels=20, groups=4)
    assert prs.plateau_of(grouped) == grouped


@pytest.mark.parametrize(
    ("kernel", "channels", "expected"),
    [
        (1, 33, 64),  # 1x1: the taps are the channels, period 32
        (3, 32, 32),  # 288 taps: exactly 9 folds of 32
        (3, 33, 35),  # 297 taps need 10 folds (320 taps): 35 channels still fit them
        (5, 2, 2),  # 50 taps, 2 folds (64): 3 channels would need 3
        (7, 1, 1),
    ],
)
def test_a_folded_window_moves_channels_by_the_layers_own_taps(
    kernel: int, channels: int, expected: int
) -> None:
    steps = ParameterSteps(LayerKind.CONV, "channels", True, period=32, window=1)
    layer = LayerConfig.create(
        "conv", channels=channels, height=8, width=8, out_channels=8, kernel=kernel
    )
    assert steps.folds_window
    assert plateau_layer((steps,), layer).channels == expected
    unfolded = ParameterSteps(LayerKind.CONV, "channels", True, period=32)
    assert plateau_layer((unfolded,), layer).channels == max(32, 32 * -(-channels // 32))


def test_a_window_swept_at_3x3_counts_its_taps() -> None:
    # a period of 32 channels found at 3x3 is a step every 288 taps
    steps = ParameterSteps(LayerKind.CONV, "channels", True, period=32, window=9)
    layer = LayerConfig.create("conv", channels=100, height=8, width=8, out_channels=8, kernel=1)
    assert steps.representative_for(layer) == 288


# -- the PR file --------------------------------------------------------------------------------


def _saved(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    steps = (
        ParameterSteps(
            LayerKind.CONV, "out_channels", True, period=16, representatives=(16, 32, 48)
        ),
        ParameterSteps(LayerKind.DENSE, "channels", False, representatives=(1, 8, 64)),
    )
    path = RepresentativeSet("t", steps).save(tmp_path / "pr.yaml")
    return path, yaml.safe_load(path.read_text())


def test_the_folded_window_is_saved_and_old_files_read_without_it(tmp_path: Path) -> None:
    folded = ParameterSteps(
        LayerKind.CONV, "channels", True, period=32, representatives=(32, 64), window=1
    )
    path = RepresentativeSet("t", (folded,)).save(tmp_path / "pr.yaml")
    assert RepresentativeSet.load(path).steps == (folded,)
    old, data = _saved(tmp_path)
    assert "window" not in data["parameters"][0]  # type: ignore[index]
    assert all(s.window == 0 for s in RepresentativeSet.load(old).steps)


def _set(data: dict[str, object], entry: int, name: str, value: object) -> None:
    data["parameters"][entry][name] = value  # type: ignore[index]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: d.pop("target_id"), "field 'target_id' is missing"),
        (lambda d: d.update(parameters="x"), "'parameters' must be a list"),
        (lambda d: d["parameters"][0].pop("has_steps"), "entry 1 lacks the field 'has_steps'"),
        (lambda d: _set(d, 0, "period", 0), r"entry 1 \(conv.out_channels\): period must be"),
        (lambda d: _set(d, 0, "period", -4), "period must be positive"),
        (lambda d: _set(d, 0, "offset", 16), r"offset 16 is not in \[0, period 16\)"),
        (lambda d: _set(d, 0, "representatives", [32, 16]), "not sorted"),
        (lambda d: _set(d, 0, "representatives", [16, 20]), "representative 20 is not the upper"),
        (lambda d: _set(d, 0, "kind", "softmax"), "unknown layer kind 'softmax'"),
        (lambda d: _set(d, 1, "parameter", "kernel_h"), "'kernel_h' is not a dense parameter"),
        (lambda d: _set(d, 1, "period", 8), "has_steps is false but a period"),
        (lambda d: _set(d, 0, "period", None), "has_steps needs a period or breakpoints"),
        (lambda d: _set(d, 0, "confidence", 3.0), r"confidence 3.0 is not in \[0, 1\]"),
        (lambda d: _set(d, 0, "window", -9), "window must be >= 0, got -9"),
        (lambda d: _set(d, 0, "has_steps", "yes"), "field 'has_steps' has the wrong type"),
        (lambda d: d["parameters"].append(dict(d["parameters"][0])), "appears twice"),
    ],
)
def test_corrupted_pr_file_gets_one_clear_error(
    tmp_path: Path, corrupt: object, message: str
) -> None:
    path, data = _saved(tmp_path)
    corrupt(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RepresentativesError, match=message) as caught:
        RepresentativeSet.load(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_pr_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: [unclosed\n")
    with pytest.raises(RepresentativesError, match="not valid YAML"):
        RepresentativeSet.load(bad)
    with pytest.raises(RepresentativesError, match="cannot read PR file"):
        RepresentativeSet.load(tmp_path / "missing.yaml")
