"""Plots of the selection: each 1-D sweep with its plateaus, boundaries and representatives.

Drawn from the evidence stored in a :class:`~prmodel.select.representatives.RepresentativeSet`,
so a reloaded PR file can be re-plotted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prmodel.select.representatives import ParameterSteps, RepresentativeSet


def save_plots(representatives: RepresentativeSet, folder: str | Path) -> list[Path]:
    """One PNG per swept parameter: the sweep, the plateau levels, boundaries and the PRs.

    Plots are drawn from the evidence stored in the set, so a reloaded PR file can be
    re-plotted. Returns the written paths (``<kind>-<parameter>.png``).
    """
    # matplotlib is heavy and only needed here: kept off the import path of select/estimate.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for steps in representatives.steps:
        sweep = steps.evidence.get("sweep") if isinstance(steps.evidence, Mapping) else None
        if not sweep or not sweep.get("values"):
            continue
        figure, axes = plt.subplots(figsize=(8, 4.5))
        try:
            _draw(axes, steps, sweep, representatives.target_id)
            path = folder / f"{steps.kind.value}-{steps.parameter}.png"
            figure.tight_layout()
            figure.savefig(path, dpi=110)
            paths.append(path)
        finally:
            plt.close(figure)
    return paths


def _draw(axes: Any, steps: ParameterSteps, sweep: Mapping[str, Any], target_id: str) -> None:
    values = np.asarray(sweep["values"], dtype=float)
    latency = np.asarray(sweep["latency_us"], dtype=float)
    axes.plot(values, latency, "o", ms=3.5, color="tab:blue", label="measured")
    if steps.has_steps:
        edges = _plateau_edges(steps, values)
        for low, high in edges:
            inside = (values > low) & (values <= high)
            if inside.any():
                level = float(np.median(latency[inside]))
                axes.hlines(level, values[inside].min(), values[inside].max(), color="tab:orange")
        for boundary in (b for _, b in edges[:-1]):
            axes.axvline(boundary + 0.5, color="grey", lw=0.6, ls="--")
    in_sweep = [r for r in steps.representatives if values.min() <= r <= values.max()]
    marks = [latency[np.argmin(np.abs(values - r))] for r in in_sweep]
    axes.plot(in_sweep, marks, "v", color="tab:red", ms=8, label="representatives")
    axes.set_xlabel(steps.parameter)
    axes.set_ylabel("latency (µs)")
    axes.set_title(
        f"{target_id}: {steps.kind.value} {steps.parameter}: {steps.label}, "
        f"confidence {steps.confidence:.2f}"
    )
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)


def _plateau_edges(steps: ParameterSteps, values: np.ndarray) -> list[tuple[float, int]]:
    """(lower, upper] value intervals of the plateaus that hold swept values."""
    uppers = sorted({steps.boundary_at_or_above(int(v)) for v in values if v > steps.start})
    lowers = [steps.start, *uppers[:-1]]
    if steps.period:
        lowers = [max(u - steps.period, steps.start) for u in uppers]
    return list(zip(lowers, uppers, strict=False))


__all__ = ["save_plots"]
