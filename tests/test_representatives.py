"""Step detection, PR selection, the PR file and plateau mapping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from prmodel.hardware import HardwareProfile, StepHint
from prmodel.layers import LayerConfig, LayerKind
from prmodel.representatives import (
    ParameterSteps,
    ParameterSweep,
    RepresentativesError,
    RepresentativeSet,
    StepDetectionError,
    detect_steps,
    save_plots,
    select_representatives,
)
from prmodel.space import default_space
from prmodel.targets.analytic import AnalyticTarget


def staircase(
    period: int,
    offset: int,
    *,
    seed: int,
    count: int | None = None,
    jitter: float = 0.05,
    outliers: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """Latency = launch + work padded to the block, with multiplicative jitter and outliers.

    Jitter is log-normal with a 5 % standard deviation; about 3 % of the points are outliers
    30-100 % too slow (a neighbour's burst of load).
    """
    rng = np.random.default_rng(seed)
    x = np.arange(1, (count or max(4 * period, 48)) + 1)
    padded = offset + np.ceil((x - offset) / period) * period
    latency = (20.0 + 5.0 * padded) * np.exp(rng.normal(0.0, jitter, x.size))
    slow = rng.random(x.size) < outliers
    latency[slow] *= rng.uniform(1.3, 2.0, slow.sum())
    return x, latency


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("period", [4, 8, 16, 32])
@pytest.mark.parametrize("offset", [0, 3])
def test_recovers_period_and_offset_under_jitter_and_outliers(period: int, offset: int) -> None:
    x, latency = staircase(period, offset, seed=period * 10 + offset)
    found = detect_steps(x, latency)
    assert found.has_steps and found.method == "periodic"
    assert (found.period, found.offset) == (period, offset)
    assert found.confidence > 0.3
    assert found.step_share > 0.6


def test_exact_staircase_is_flat_with_known_jumps() -> None:
    x = np.arange(1, 65)
    latency = 100.0 * np.ceil(x / 16)
    found = detect_steps(x, latency)
    assert (found.period, found.offset) == (16, 0)
    assert found.breakpoints == (16, 32, 48)
    assert found.flatness == pytest.approx(0.0)
    assert found.jump_ratios == pytest.approx((2.0, 1.5, 4 / 3))
    assert found.confidence > 0.9


@pytest.mark.parametrize(
    ("name", "latency"),
    [
        ("linear", lambda x: 10.0 + 3.0 * x),
        ("linear with jitter", lambda x: (10.0 + 3.0 * x) * _jitter(x.size, seed=1)),
        ("quadratic with jitter", lambda x: (5.0 + x**2) * _jitter(x.size, seed=2)),
        ("flat with jitter", lambda x: 100.0 * _jitter(x.size, seed=3)),
        ("logarithmic", lambda x: 50.0 * np.log1p(x)),
    ],
)
def test_smooth_series_have_no_steps(name: str, latency: object) -> None:
    x = np.arange(1, 65)
    found = detect_steps(x, latency(x))  # type: ignore[operator]
    assert not found.has_steps, name
    assert found.method == "none"
    assert found.label == "no steps"


def _jitter(count: int, *, seed: int) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.05, count))


@pytest.mark.parametrize("wrong", [8, 12, 32])
def test_wrong_profile_period_is_overruled_by_the_data(wrong: int) -> None:
    x, latency = staircase(16, 0, seed=7, count=64)
    found = detect_steps(x, latency, candidate_periods=[wrong])
    assert found.period == 16
    assert found.profile_verdict == "overruled"
    assert f"proposed period {wrong}" in found.note


def test_right_profile_period_is_agreed() -> None:
    x, latency = staircase(16, 0, seed=7, count=64)
    found = detect_steps(x, latency, candidate_periods=[16])
    assert (found.period, found.profile_verdict) == (16, "agreed")


def test_profile_period_on_a_smooth_series_is_overruled() -> None:
    x = np.arange(1, 65)
    found = detect_steps(x, 10.0 + 3.0 * x, candidate_periods=[16])
    assert not found.has_steps
    assert found.profile_verdict == "overruled"


def test_another_kernel_below_the_start_is_its_own_regime() -> None:
    # ONNX Runtime's conv: below 16 input channels an NCHW kernel that is linear in the
    # channels, blocks of 16 above it (swept on multiples of 4, as the profile asks).
    low = np.arange(1, 16)
    high = np.arange(16, 81, 4)
    x = np.concatenate([low, high])
    latency = np.concatenate([15.0 + 5.5 * low, 10.0 + 4.6 * 16 * np.ceil(high / 16)])
    found = detect_steps(x, latency, candidate_periods=[16], candidate_starts=[15])
    assert (found.period, found.offset, found.start) == (16, 0, 15)
    assert found.breakpoints == (16, 32, 48, 64)


def test_irregular_steps_are_reported_as_breakpoints() -> None:
    # A 32-row systolic array folding kernel 3x3 x channels: steps at ceil(9c / 32) changes.
    x = np.arange(1, 49)
    folds = np.ceil(9 * x / 32)
    found = detect_steps(x, 1000.0 * folds + 50.0, outliers=False)
    expected = tuple(int(v) for v in x[:-1][np.diff(folds) > 0])
    assert found.has_steps and found.method == "breakpoints"
    assert found.breakpoints == expected
    assert found.period is None


def test_rounded_timer_steps_of_a_tiny_kernel_are_not_steps() -> None:
    x = np.arange(1, 49)
    found = detect_steps(x, np.round(1.3 + 0.06 * x))  # whole-µs profiler times
    assert not found.has_steps
    assert "resolution" in found.note


def test_whole_microsecond_steps_of_a_small_gemm_are_steps() -> None:
    # Profiler kernel times of a dense layer: 4, 6, 8, 10 µs in blocks of 32 outputs.
    x = np.arange(1, 129)
    latency = 2.0 + 2.0 * np.ceil(x / 32)
    found = detect_steps(x, latency, candidate_periods=[32, 16])
    assert (found.period, found.profile_verdict) == (32, "agreed")


def test_repeated_values_are_merged() -> None:
    x, latency = staircase(8, 0, seed=3, count=48)
    found = detect_steps(np.concatenate([x, x]), np.concatenate([latency, latency * 1.01]))
    assert found.period == 8


def test_too_few_points_cannot_show_steps() -> None:
    found = detect_steps([1, 2, 3], [1.0, 1.0, 2.0], candidate_periods=[2])
    assert not found.has_steps
    assert "too few" in found.note
    assert found.profile_verdict == "overruled"


@pytest.mark.parametrize(
    ("values", "latencies", "message"),
    [
        ([1, 2, 3], [1.0, 2.0], "one latency per value"),
        ([1, 2, 3], [1.0, 0.0, 2.0], "positive and finite"),
        ([1, 2, 3], [1.0, math.nan, 2.0], "positive and finite"),
        ([1, 2.5, 3], [1.0, 2.0, 3.0], "positive integers"),
    ],
)
def test_bad_sweeps_are_refused(values: list[float], latencies: list[float], message: str) -> None:
    with pytest.raises(StepDetectionError, match=message):
        detect_steps(values, latencies)


@pytest.mark.parametrize(("parameter", "period"), [("out_channels", 16), ("channels", 8)])
def test_analytic_target_blocks_are_found(
    analytic_target: AnalyticTarget, parameter: str, period: int
) -> None:
    space = default_space("conv")
    x = np.arange(1, 65)
    latency = [analytic_target.latency_us(space.build({parameter: int(v)})) for v in x]
    found = detect_steps(x, latency)
    assert (found.period, found.offset) == (period, 0)


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


# -- selection ----------------------------------------------------------------------------------


def _sweeps() -> list[ParameterSweep]:
    x, latency = staircase(16, 0, seed=11, count=64)
    smooth_x = np.arange(1, 41)
    return [
        ParameterSweep(LayerKind.CONV, "out_channels", tuple(map(int, x)), tuple(latency), "p1"),
        ParameterSweep(
            LayerKind.CONV,
            "height",
            tuple(map(int, smooth_x)),
            tuple(float(v) for v in 3.0 + smooth_x**2),
            "p2",
        ),
    ]


def test_selection_takes_plateau_ends_over_the_whole_range() -> None:
    profile = HardwareProfile(
        "p", "cpu", hints={LayerKind.CONV: {"out_channels": StepHint((16,), note="blocks")}}
    )
    pr = select_representatives(_sweeps(), target_id="t", profile=profile)
    out = pr.for_kind("conv")["out_channels"]
    assert out.has_steps and out.period == 16
    assert out.representatives == tuple(range(16, 1025, 16))
    assert out.evidence["profile_verdict"] == "agreed"
    assert out.evidence["sweep"]["plan"] == "p1"
    assert out.evidence["hint"]["note"] == "blocks"
    height = pr.for_kind("conv")["height"]
    assert not height.has_steps
    assert height.representatives[0] == 1 and height.representatives[-1] == 224
    assert len(height.representatives) <= 9
    assert pr.metadata["profile"]["name"] == "p"


def test_low_confidence_steps_fall_back_to_coarse_values() -> None:
    pr = select_representatives(_sweeps()[:1], target_id="t", min_confidence=1.01)
    out = pr.for_kind("conv")["out_channels"]
    assert not out.has_steps and out.period is None
    assert "below" in out.evidence["note"]


def test_unswept_range_parameters_get_coarse_values() -> None:
    spaces = {LayerKind.CONV: default_space("conv")}
    pr = select_representatives(_sweeps()[:1], target_id="t", spaces=spaces)
    channels = pr.for_kind("conv")["channels"]
    assert not channels.has_steps
    assert channels.representatives[0] == 1 and channels.representatives[-1] == 1024


def test_a_start_keeps_small_values_and_steps_above() -> None:
    low, high = np.arange(1, 16), np.arange(16, 81, 4)
    x = np.concatenate([low, high])
    latency = np.concatenate([15.0 + 5.5 * low, 10.0 + 73.6 * np.ceil(high / 16)])
    sweep = ParameterSweep(LayerKind.CONV, "channels", tuple(map(int, x)), tuple(latency))
    profile = HardwareProfile(
        "p", "cpu", hints={LayerKind.CONV: {"channels": StepHint((16,), starts=(15,), step=4)}}
    )
    steps = select_representatives([sweep], target_id="t", profile=profile).steps[0]
    assert steps.start == 15
    small = [r for r in steps.representatives if r <= 15]
    assert small[0] == 1 and small[-1] == 15
    assert [r for r in steps.representatives if r > 15] == list(range(16, 1025, 16))


# -- the PR file --------------------------------------------------------------------------------


def test_pr_file_round_trips_to_equal_objects(tmp_path: Path) -> None:
    pr = select_representatives(_sweeps(), target_id="t", metadata={"note": "x"})
    path = pr.save(tmp_path / "sub" / "t.yaml")
    text = path.read_text()
    assert text.startswith("# prmodel Performance Representatives")
    assert "representatives: [16, 32, 48" in text  # short lists stay on one readable line
    assert RepresentativeSet.load(path) == pr


def _saved(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    steps = (
        ParameterSteps(
            LayerKind.CONV, "out_channels", True, period=16, representatives=(16, 32, 48)
        ),
        ParameterSteps(LayerKind.DENSE, "channels", False, representatives=(1, 8, 64)),
    )
    path = RepresentativeSet("t", steps).save(tmp_path / "pr.yaml")
    return path, yaml.safe_load(path.read_text())


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


def test_plots_show_every_swept_parameter(tmp_path: Path) -> None:
    pr = select_representatives(_sweeps(), target_id="t")
    written = save_plots(RepresentativeSet.load(pr.save(tmp_path / "t.yaml")), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["conv-height.png", "conv-out_channels.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


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
