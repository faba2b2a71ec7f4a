"""How big a sweep is before it runs: its points, counted without building them, and time.

A plan's points are the product of its sweep dimensions (or its random count, or its list
of points), so a plan of ten million points is refused in a moment instead of being built
for minutes and measured for weeks. :func:`load_sweep` loads the plans a command line names
and refuses a sweep above the limit, saying how many points and how long they would take;
:class:`SweepSize` says it before a sweep that is allowed to run.

The time is a range from the runner's settings: a noisy target measures each point in
``min_rounds`` to ``max_rounds`` interleaved rounds of ``batch_ms``, plus the canary's share
of each round and about :data:`POINT_OVERHEAD_S` to prepare and warm up the point (the
quickstart's sweeps on a two-core AMD EPYC took 0.11 s per point with 10 ms batches and 3-9
rounds). A deterministic target (a simulator) costs what its one call costs, which prmodel
does not know in advance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prmodel.measure.plans import (
    DEFAULT_MAX_POINTS,
    PlanTooLargeError,
    SweepPlan,
    find_plans,
)
from prmodel.measure.runner import MeasureSettings
from prmodel.targets.base import Target
from prmodel.workspace import Workspace

POINT_OVERHEAD_S = 0.08
"""Seconds to prepare, warm up and record one point on a noisy target, besides its rounds."""


@dataclass(frozen=True)
class SweepSize:
    """The points of a sweep and the time they would take on a target.

    Attributes:
        points: Points the plans ask for (duplicates and points already stored included).
        plans: How many plans.
        target_id: The target they would be measured on.
        seconds: The time range (low, high) on a noisy target; None on a deterministic one.
    """

    points: int
    plans: int
    target_id: str
    seconds: tuple[float, float] | None

    @property
    def duration(self) -> str:
        """The time in words: ``about 3-8 min on ort-cpu-t1-all``."""
        if self.seconds is None:
            return f"one {self.target_id} call per point"
        low, high = self.seconds
        return f"about {format_span(low, high)} on {self.target_id}"

    def describe(self) -> str:
        """``1,234 points in 3 plans, about 3-8 min on ort-cpu-t1-all``."""
        plans = f"{self.plans} plan{'s' if self.plans != 1 else ''}"
        return f"{self.points:,} points in {plans}, {self.duration}"


def seconds_per_point(target: Target, settings: MeasureSettings) -> tuple[float, float] | None:
    """The (low, high) seconds one point takes on ``target``; None for deterministic targets."""
    if target.deterministic:
        return None
    batch = settings.batch_ms / 1000
    canary = settings.canary_batch_ms / 1000 / max(settings.chunk_size, 1) if settings.canary else 0
    per_round = batch + canary
    return (
        POINT_OVERHEAD_S + settings.min_rounds * per_round,
        POINT_OVERHEAD_S + settings.max_rounds * per_round,
    )


def size_sweep(
    plans: Sequence[SweepPlan], target: Target, settings: MeasureSettings | None = None
) -> SweepSize:
    """Count the points of ``plans`` (without building them) and time them on ``target``."""
    points = sum(plan.point_count for plan in plans)
    per_point = seconds_per_point(target, settings or MeasureSettings())
    seconds = _times(points, per_point)
    return SweepSize(points=points, plans=len(plans), target_id=target.target_id, seconds=seconds)


def load_sweep(
    names: Sequence[str | Path],
    workspace: Workspace,
    target: Target,
    *,
    settings: MeasureSettings | None = None,
    max_points: int | None = DEFAULT_MAX_POINTS,
) -> tuple[list[SweepPlan], SweepSize]:
    """The plans named on a command line and their size, refusing a sweep that is too large.

    Args:
        names: Plan files, folders or bare plan names (see
            :func:`~prmodel.measure.plans.find_plans`).
        workspace: Where bare names are looked up.
        target: Where the sweep would run (for the time).
        settings: The runner's settings (for the time).
        max_points: The most points the sweep may have; None for no limit.

    Raises:
        PlanError: a plan that cannot be read.
        PlanTooLargeError: one plan or all of them together have more than ``max_points``
            points; the message says how many and how long they would take.
    """
    settings = settings or MeasureSettings()
    try:
        plans = find_plans(names, workspace, max_points=max_points)
    except PlanTooLargeError as exc:
        size = SweepSize(
            points=exc.points,
            plans=1,
            target_id=target.target_id,
            seconds=_times(exc.points, seconds_per_point(target, settings)),
        )
        raise PlanTooLargeError(exc.where, exc.points, exc.limit, duration=size.duration) from None
    size = size_sweep(plans, target, settings)
    if max_points is not None and size.points > max_points:
        raise PlanTooLargeError(
            f"the sweep ({size.plans} plans)", size.points, max_points, duration=size.duration
        )
    return plans, size


def format_span(low: float, high: float) -> str:
    """A time range in the unit that suits its upper end: ``3-8 min``, ``2.1-5.6 days``."""
    for unit, seconds in (("weeks", 604_800), ("days", 86_400), ("h", 3_600), ("min", 60)):
        if high >= 2 * seconds:
            return f"{_number(low / seconds)}-{_number(high / seconds)} {unit}"
    return f"{_number(low)}-{_number(high)} s"


def _number(value: float) -> str:
    return f"{value:,.1f}" if value < 10 else f"{value:,.0f}"


def _times(points: int, per_point: tuple[float, float] | None) -> tuple[float, float] | None:
    return (points * per_point[0], points * per_point[1]) if per_point else None


__all__ = [
    "POINT_OVERHEAD_S",
    "SweepSize",
    "format_span",
    "load_sweep",
    "seconds_per_point",
    "size_sweep",
]
