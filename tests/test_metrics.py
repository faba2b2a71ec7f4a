"""Tests of the accuracy metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from prmodel.metrics import MetricsError, mape, relative_errors, rmspe, spearman, summarize, within


def test_summary_of_known_errors() -> None:
    measured = [100.0, 200.0, 50.0, 10.0]
    predicted = [104.0, 180.0, 50.0, 12.0]  # errors +4 %, -10 %, 0 %, +20 %
    summary = summarize(measured, predicted)
    assert summary["mape"] == pytest.approx((4 + 10 + 0 + 20) / 4)
    assert summary["rmspe"] == pytest.approx(math.sqrt((16 + 100 + 0 + 400) / 4))
    assert summary["within_5"] == pytest.approx(50.0)
    assert summary["within_10"] == pytest.approx(75.0)  # exactly -10 % counts as within
    assert summary["spearman"] == pytest.approx(1.0)
    assert summary["n"] == 4
    assert set(summary) == {"mape", "rmspe", "within_5", "within_10", "spearman", "n"}


def test_perfect_prediction() -> None:
    values = np.array([3.0, 1.0, 2.0])
    assert summarize(values, values) == {
        "mape": 0.0,
        "rmspe": 0.0,
        "within_5": 100.0,
        "within_10": 100.0,
        "spearman": 1.0,
        "n": 3.0,
    }


@pytest.mark.parametrize(
    ("measured", "predicted", "expected"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        # ties get average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
        ([1, 2, 2, 3], [1, 2, 3, 4], 0.9486832980505138),
    ],
)
def test_spearman(measured: list[float], predicted: list[float], expected: float) -> None:
    assert spearman(measured, predicted) == pytest.approx(expected)


def test_spearman_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    measured = rng.integers(1, 20, size=200).astype(float)  # many ties
    predicted = measured * rng.lognormal(0, 0.3, size=200)
    assert spearman(measured, predicted) == pytest.approx(spearmanr(measured, predicted)[0])


def test_spearman_of_constant_is_nan() -> None:
    assert math.isnan(spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))


def test_single_metrics_agree_with_summary() -> None:
    measured, predicted = [10.0, 20.0], [11.0, 19.0]
    assert mape(measured, predicted) == pytest.approx(7.5)
    assert rmspe(measured, predicted) == pytest.approx(math.sqrt((100 + 25) / 2))
    assert within(measured, predicted, tolerance_pct=6) == pytest.approx(50.0)
    assert relative_errors(measured, predicted) == pytest.approx([0.1, -0.05])


@pytest.mark.parametrize(
    ("measured", "predicted", "message"),
    [
        ([1.0, 2.0], [1.0], "2 measured values but 1 predictions"),
        ([], [], "no measured/predicted pairs"),
        ([1.0, 0.0], [1.0, 1.0], "position 1 is 0.0, not positive"),
        ([1.0, 2.0], [1.0, float("nan")], "must all be finite"),
    ],
)
def test_refuses_bad_input(measured: list[float], predicted: list[float], message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        summarize(measured, predicted)
