"""Jumps and plateaus of one 1-D sweep, read point to point, to show a staircase to a person.

:func:`staircase` marks every point whose latency rises more than :data:`JUMP_RATIO` over the
previous one and :func:`plateaus` groups the points into runs between sustained jumps. This
is the quickstart's first table and plot: a direct reading of the curve that a newcomer can
check by eye. It is not step detection: :func:`prmodel.select.steps.detect_steps` fits
periodic and free-boundary staircase models against smooth ones and is what selecting the
representatives relies on; the two may disagree on a noisy sweep, and they answer different
questions (where does the curve jump vs what period explains it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

JUMP_RATIO = 1.03
"""A latency rise above 3 % from one value to the next counts as a step."""


@dataclass(frozen=True)
class StaircasePoint:
    """One point of a 1-D sweep: its value, latency, ratio to the previous, and if it jumps."""

    value: int
    latency_us: float
    ratio: float | None
    jump: bool


@dataclass(frozen=True)
class Plateau:
    """A run of values between two jumps (``first`` .. ``last`` inclusive)."""

    first: int
    last: int
    median_us: float
    jump_ratio: float | None
    """This plateau's median over the previous plateau's (None for the first)."""


def staircase(
    values: Sequence[int], latencies: Sequence[float], *, jump_ratio: float = JUMP_RATIO
) -> list[StaircasePoint]:
    """The sweep as points with their ratio to the previous point and jump marks."""
    points = []
    previous: float | None = None
    for value, latency in zip(values, latencies, strict=True):
        ratio = latency / previous if previous else None
        points.append(
            StaircasePoint(value, latency, ratio, ratio is not None and ratio > jump_ratio)
        )
        previous = latency
    return points


def plateaus(
    points: Sequence[StaircasePoint], *, jump_ratio: float = JUMP_RATIO, window: int = 3
) -> list[Plateau]:
    """Group the points into plateaus between sustained jumps.

    A plateau starts at a point that jumps (rises more than ``jump_ratio`` over the previous
    one) when the median of it and the next ``window - 1`` points also lies more than
    ``jump_ratio`` above the median of the ``window`` points before it; so a lone noisy
    point on a shared machine does not split a plateau.
    """
    latency = np.array([p.latency_us for p in points])
    starts = [0]
    for i, point in enumerate(points):
        if i - starts[-1] < 1 or not point.jump:
            continue
        before = np.median(latency[max(starts[-1], i - window) : i])
        after = np.median(latency[i : i + window])
        if after > before * jump_ratio:
            starts.append(i)
    groups: list[range] = []
    for start, stop in pairwise([*starts, len(points)]):
        # A "plateau" no higher than the one before is the same plateau, seen through noise.
        if groups and np.median(latency[start:stop]) <= _median(latency, groups[-1]) * jump_ratio:
            groups[-1] = range(groups[-1].start, stop)
        else:
            groups.append(range(start, stop))
    medians = [_median(latency, g) for g in groups]
    return [
        Plateau(
            first=points[g.start].value,
            last=points[g.stop - 1].value,
            median_us=median,
            jump_ratio=median / medians[k - 1] if k else None,
        )
        for k, (g, median) in enumerate(zip(groups, medians, strict=True))
    ]


def _median(values: np.ndarray, span: range) -> float:
    return float(np.median(values[span.start : span.stop]))


__all__ = ["JUMP_RATIO", "Plateau", "StaircasePoint", "plateaus", "staircase"]
