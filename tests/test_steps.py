"""Step detection on 1-D sweeps: periods, offsets, breakpoints, smooth series and hints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from staircases import staircase

from prmodel.select.spaces import default_space
from prmodel.select.steps import StepDetectionError, detect_steps, step_label
from prmodel.targets.analytic import AnalyticTarget


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


@pytest.mark.parametrize(
    ("has_steps", "period", "offset", "start", "breakpoints", "label"),
    [
        (False, 16, 0, 0, (), "no steps"),
        (True, 16, 0, 0, (), "period 16"),
        (True, 16, 3, 8, (), "period 16 + 3 above 8"),
        (True, None, 0, 0, (10, 20, 40), "3 breakpoints"),
    ],
)
def test_step_label_says_what_the_staircase_is(
    has_steps: bool,
    period: int | None,
    offset: int,
    start: int,
    breakpoints: tuple[int, ...],
    label: str,
) -> None:
    assert step_label(has_steps, period, offset, start, breakpoints) == label
