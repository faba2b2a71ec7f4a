"""Accuracy metrics of latency predictions, comparable with nn-Meter, ANNETTE and the PR paper.

Every function takes measured and predicted latencies (any positive unit, the same for both)
and relative errors are ``(predicted - measured) / measured``. Percentages are in percent
(``mape == 2.0`` means 2 %), so reports read like the papers they are compared with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from prmodel.errors import PrmodelError

ArrayLike = Sequence[float] | npt.NDArray[np.floating]


class MetricsError(PrmodelError, ValueError):
    """Measured and predicted latencies that cannot be compared (one sentence says why)."""


def relative_errors(measured: ArrayLike, predicted: ArrayLike) -> npt.NDArray[np.float64]:
    """Signed relative errors ``(predicted - measured) / measured`` (a fraction, not percent).

    Raises:
        MetricsError: different lengths, non-finite values or a non-positive measurement.
    """
    m, p = _validated(measured, predicted)
    return (p - m) / m


def mape(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute percentage error, in percent."""
    return float(np.mean(np.abs(relative_errors(measured, predicted))) * 100)


def rmspe(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Root mean squared percentage error, in percent (punishes large misses more than MAPE)."""
    return float(np.sqrt(np.mean(relative_errors(measured, predicted) ** 2)) * 100)


def within(measured: ArrayLike, predicted: ArrayLike, *, tolerance_pct: float) -> float:
    """Share of predictions within ``±tolerance_pct`` percent of the measurement, in percent."""
    errors = np.abs(relative_errors(measured, predicted)) * 100
    # A tiny slack so that an error of exactly the tolerance counts despite float rounding.
    return float(np.mean(errors <= tolerance_pct + 1e-9) * 100)


def spearman(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Spearman's rank correlation (ties get average ranks); NaN when either side is constant."""
    m, p = _validated(measured, predicted)
    rank_m, rank_p = _average_ranks(m), _average_ranks(p)
    if np.ptp(rank_m) == 0 or np.ptp(rank_p) == 0:
        return math.nan
    return float(np.corrcoef(rank_m, rank_p)[0, 1])


def summarize(measured: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """All reported metrics at once.

    Args:
        measured: Measured latencies (positive).
        predicted: Predicted latencies, same order and unit.

    Returns:
        ``mape``, ``rmspe``, ``within_5`` and ``within_10`` in percent, ``spearman`` in
        [-1, 1] and ``n``, the number of pairs.

    Raises:
        MetricsError: no pairs, different lengths, non-finite values or a non-positive
            measurement.
    """
    m, p = _validated(measured, predicted)
    return {
        "mape": mape(m, p),
        "rmspe": rmspe(m, p),
        "within_5": within(m, p, tolerance_pct=5),
        "within_10": within(m, p, tolerance_pct=10),
        "spearman": spearman(m, p),
        "n": float(len(m)),
    }


def _validated(
    measured: ArrayLike, predicted: ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    m = np.asarray(measured, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if len(m) != len(p):
        raise MetricsError(f"{len(m)} measured values but {len(p)} predictions")
    if len(m) == 0:
        raise MetricsError("there are no measured/predicted pairs to compare")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(p))):
        raise MetricsError("measured and predicted latencies must all be finite numbers")
    if np.any(m <= 0):
        bad = int(np.argmax(m <= 0))
        raise MetricsError(f"measured latency at position {bad} is {m[bad]}, not positive")
    return m, p


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Group equal values and give each group the mean of the ranks it spans (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


__all__ = [
    "MetricsError",
    "mape",
    "relative_errors",
    "rmspe",
    "spearman",
    "summarize",
    "within",
]
