"""The quickstart: one small conv output-channel sweep that shows a target's latency staircase.

Each step is a small function so that later stages (selection, training, estimation) can be
appended to :func:`run_quickstart` without changing what is already here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from prmodel.layers import LayerKind
from prmodel.plans import SweepPlan, save_plans
from prmodel.store import MeasurementStore
from prmodel.sweep import MeasureSettings, SweepReport, run_sweep
from prmodel.targets.base import Target
from prmodel.workspace import Workspace

QUICKSTART_PLAN = SweepPlan(
    name="quickstart_conv_out_channels",
    kind=LayerKind.CONV,
    description="conv output channels 1..96 at 32x56x56, k3 p1 (the quickstart)",
    fixed={"channels": 32, "height": 56, "width": 56, "kernel": 3, "padding": 1},
    sweep={"out_channels": tuple(range(1, 97))},
)
"""The quickstart's sweep: a few minutes at most on one CPU core."""

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


@dataclass(frozen=True)
class QuickstartResult:
    """What the quickstart measured and where it put things."""

    target_id: str
    report: SweepReport
    points: tuple[StaircasePoint, ...]
    plateaus: tuple[Plateau, ...]
    plot_path: Path
    store_path: Path
    plan_path: Path


def run_quickstart(
    workspace: Workspace,
    target: Target,
    *,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan: SweepPlan = QUICKSTART_PLAN,
) -> QuickstartResult:
    """Sweep ``plan`` on ``target`` into the workspace store, then tabulate and plot it.

    Measurements already in the store are reused, so an interrupted quickstart resumes.
    """
    workspace.create()
    plan_path = _save_plan(workspace, plan)
    with MeasurementStore(workspace.store_path) as store:
        report = run_sweep(
            plan.layers(),
            target,
            store=store,
            settings=settings,
            progress=progress,
            plan_name=plan.name,
        )
        values, latencies = _sweep_curve(store, plan, report)
    points = staircase(values, latencies)
    plot_path = plot_staircase(
        points,
        workspace.results_dir / "quickstart_staircase.png",
        title=f"{plan.description} on {target.target_id}",
        parameter=plan.swept_parameter or "value",
    )
    return QuickstartResult(
        target_id=target.target_id,
        report=report,
        points=tuple(points),
        plateaus=tuple(plateaus(points)),
        plot_path=plot_path,
        store_path=workspace.store_path,
        plan_path=plan_path,
    )


def _save_plan(workspace: Workspace, plan: SweepPlan) -> Path:
    # Written so the user sees (and can rerun with `prmodel sweep`) exactly what was measured.
    path = workspace.sweeps_dir / "quickstart.yaml"
    if not path.exists():
        save_plans([plan], path)
    return path


def _sweep_curve(
    store: MeasurementStore, plan: SweepPlan, report: SweepReport
) -> tuple[list[int], list[float]]:
    pairs = plan.sweep_points()
    frame = store.frame(
        target_id=report.target_id,
        fingerprint_hash=report.fingerprint_hash,
        layer_keys=[layer.key for _, layer in pairs],
    )
    latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
    measured = [(value, latency[layer.key]) for value, layer in pairs if layer.key in latency]
    return [v for v, _ in measured], [float(t) for _, t in measured]


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


def plot_staircase(
    points: Sequence[StaircasePoint], path: Path, *, title: str, parameter: str
) -> Path:
    """Save a PNG of the sweep with its jumps marked; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.step(
        [p.value for p in points],
        [p.latency_us for p in points],
        where="mid",
        marker=".",
        color="tab:blue",
        label="latency (min of round medians)",
    )
    jumps = [p for p in points if p.jump]
    for p in jumps:
        ax.axvline(p.value - 0.5, color="tab:red", alpha=0.3, linewidth=1)
    ax.scatter(
        [p.value for p in jumps],
        [p.latency_us for p in jumps],
        color="tab:red",
        zorder=3,
        label=f"jump > {JUMP_RATIO - 1:.0%}",
    )
    ax.set_xlabel(parameter)
    ax.set_ylabel("latency (µs)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "JUMP_RATIO",
    "QUICKSTART_PLAN",
    "Plateau",
    "QuickstartResult",
    "StaircasePoint",
    "plateaus",
    "plot_staircase",
    "run_quickstart",
    "staircase",
]
