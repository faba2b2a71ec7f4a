"""Whole-network accuracy as a reviewer reads it: per-network and per-kernel tables, plots.

:func:`network_table` puts each measured network's estimate next to its measurement and
the measurement's spread; :func:`kernel_table` lists every kernel's prediction and profiled
time; :func:`errors_by_group` sums the kernel errors up per kernel kind. The plots draw
them: :func:`plot_networks` (estimate vs measured per network, and the errors),
:func:`plot_kernel_errors` (error by kernel kind), :func:`plot_kernel_scatter`. Plain
matplotlib Figures (no pyplot, no GUI backend); :mod:`prmodel.workflows.review` logs them
to MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from prmodel.estimate.calibration import Calibration
from prmodel.estimate.compare import Comparison

NETWORK_COLUMNS: tuple[str, ...] = (
    "network",
    "measured_us",
    "estimated_us",
    "error_pct",
    "sum_us",
    "sum_error_pct",
    "left_out_us",
    "left_out_error_pct",
    "p10_us",
    "p90_us",
    "spread_pct",
    "rounds",
    "runs",
    "kernels",
    "unmodelled_share_pct",
    "kernel_mape_pct",
)
"""Columns of :func:`network_table`. ``estimated_us`` is what the user is told (calibrated
where a calibration applies), ``sum_us`` the plain sum of kernel predictions, ``left_out_us``
the estimate of a calibration fitted without this network (calibration runs only);
``p10_us``/``p90_us``/``spread_pct`` describe all timed runs of the measurement,
``kernel_mape_pct`` the modelled kernels' error against their profiled times."""

KERNEL_COLUMNS: tuple[str, ...] = (
    "network",
    "node",
    "op",
    "group",
    "status",
    "source",
    "params",
    "predicted_us",
    "measured_us",
    "error_pct",
)
"""Columns of :func:`kernel_table`: every kernel that runs, with its profiled time;
``group`` is the layer kind of a modelled kernel, ``<op> (unmodelled)`` otherwise."""

ERROR_BY_GROUP_COLUMNS: tuple[str, ...] = (
    "group",
    "kernels",
    "rated",
    "measured_us",
    "time_share_pct",
    "mape_pct",
    "median_error_pct",
    "p90_abs_error_pct",
    "worst_error_pct",
)
"""Columns of :func:`errors_by_group`, one row per kernel kind, largest share of time first."""

_PLOT_CLIP_PCT = 300.0
"""Per-kernel errors beyond this are drawn at the edge (tiny kernels near the profiler's
floor reach thousands of percent and would flatten every other box)."""


# -- tables -----------------------------------------------------------------------------------


def network_table(
    comparisons: Sequence[Comparison], calibration: Calibration | None = None
) -> pd.DataFrame:
    """One row per measured network (:data:`NETWORK_COLUMNS`).

    With ``calibration`` (a calibration run), the estimate is the calibration's own fit of
    each network and the left-out estimate comes from the leave-one-network-out fits;
    otherwise the estimate is the comparison's total.
    """
    fits = {fit.name: fit for fit in calibration.networks} if calibration is not None else {}
    rows = []
    for comparison in comparisons:
        estimate, measurement = comparison.estimate, comparison.measurement
        measured = measurement.total_us
        fit = fits.get(estimate.network)
        estimated = fit.calibrated_us if fit is not None else estimate.total_us
        plain = fit.sum_us if fit is not None else estimate.sum_us
        left_out = fit.loo_us if fit is not None else None
        errors = comparison.layer_errors()
        rows.append(
            {
                "network": estimate.network,
                "measured_us": measured,
                "estimated_us": estimated,
                "error_pct": _error_pct(estimated, measured),
                "sum_us": plain,
                "sum_error_pct": _error_pct(plain, measured),
                "left_out_us": left_out,
                "left_out_error_pct": (
                    _error_pct(left_out, measured) if left_out is not None else math.nan
                ),
                "p10_us": measured * measurement.p10_us / measurement.median_us,
                "p90_us": measured * measurement.p90_us / measurement.median_us,
                "spread_pct": measurement.spread_pct,
                "rounds": measurement.settings.rounds,
                "runs": measurement.runs,
                "kernels": int((estimate.layers["status"] != "free").sum()),
                "unmodelled_share_pct": 100 * estimate.unmodelled_share,
                "kernel_mape_pct": float(np.mean(np.abs(errors))) if len(errors) else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(NETWORK_COLUMNS))


def kernel_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Every kernel that runs in the measured networks, predicted and profiled
    (:data:`KERNEL_COLUMNS`)."""
    frames = []
    for comparison in comparisons:
        layers = comparison.layers[comparison.layers["status"] != "free"]
        frames.append(
            pd.DataFrame(
                {
                    "network": comparison.estimate.network,
                    "node": layers["node"],
                    "op": layers["op"],
                    "group": [_group(r) for r in layers.to_dict("records")],
                    "status": layers["status"],
                    "source": layers["source"],
                    "params": layers["params"],
                    "predicted_us": layers["predicted_us"],
                    "measured_us": layers["measured_us"],
                    "error_pct": layers["error_pct"],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(KERNEL_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(KERNEL_COLUMNS)]


def _group(record: Mapping[str, Any]) -> str:
    kind = record.get("kind")
    if record["status"] == "modelled" and isinstance(kind, str) and kind:
        return kind
    return f"{str(record['op']).rpartition('.')[2]} (unmodelled)"


def errors_by_group(kernels: pd.DataFrame) -> pd.DataFrame:
    """Per-kernel errors summarised per kernel kind (:data:`ERROR_BY_GROUP_COLUMNS`).

    Every kind with profiled time is listed, largest share of the networks' time first;
    ``rated`` counts its kernels with an error (a prediction and a profiled time), and
    the error columns are NaN for a kind without any (kernels no model priced).
    """
    timed = kernels[kernels["measured_us"].notna()]
    total = float(timed["measured_us"].sum())
    rows = []
    for group, part in timed.groupby("group", sort=False):
        errors = part["error_pct"].dropna().to_numpy(dtype=np.float64)
        measured = float(part["measured_us"].sum())
        rated = len(errors) > 0
        rows.append(
            {
                "group": group,
                "kernels": len(part),
                "rated": len(errors),
                "measured_us": measured,
                "time_share_pct": 100 * measured / total if total > 0 else math.nan,
                "mape_pct": float(np.mean(np.abs(errors))) if rated else math.nan,
                "median_error_pct": float(np.median(errors)) if rated else math.nan,
                "p90_abs_error_pct": (
                    float(np.percentile(np.abs(errors), 90)) if rated else math.nan
                ),
                "worst_error_pct": float(errors[np.argmax(np.abs(errors))]) if rated else math.nan,
            }
        )
    table = pd.DataFrame(rows, columns=list(ERROR_BY_GROUP_COLUMNS))
    return table.sort_values("measured_us", ascending=False, ignore_index=True)


# -- plots ------------------------------------------------------------------------------------


def plot_networks(table: pd.DataFrame, *, title: str) -> Figure:
    """Estimate vs measurement per network: the two latencies side by side, and the errors.

    Left: measured (with the p10-p90 spread of its runs) and estimated latency per network.
    Right: the estimate's error, the plain kernel sum's and, for a calibration, the
    left-out estimate's, with the ±10 % band.
    """
    rows = table.iloc[::-1]  # barh draws bottom-up: keep the table's order top-down
    names = list(rows["network"])
    y = np.arange(len(rows))
    figure = Figure(figsize=(9, 2.2 + 0.42 * len(rows)), layout="constrained")
    left, right = figure.subplots(1, 2, sharey=True)
    measured = rows["measured_us"].to_numpy(dtype=np.float64) / 1e3
    spread = np.vstack(
        [
            measured - rows["p10_us"].to_numpy(dtype=np.float64) / 1e3,
            rows["p90_us"].to_numpy(dtype=np.float64) / 1e3 - measured,
        ]
    ).clip(min=0)
    left.barh(y + 0.2, measured, 0.4, xerr=spread, color="0.6", label="measured (p10-p90)")
    left.barh(y - 0.2, rows["estimated_us"] / 1e3, 0.4, color="C0", label="estimated")
    left.set(xlabel="latency (ms)", yticks=y, yticklabels=names)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize="small")
    series = [("estimated_us", "error_pct", "estimate", "C0")]
    series.append(("sum_us", "sum_error_pct", "plain kernel sum", "C1"))
    if rows["left_out_error_pct"].notna().any():
        series.append(("left_out_us", "left_out_error_pct", "left out of the fit", "C2"))
    height = 0.8 / len(series)
    for index, (_, column, label, color) in enumerate(series):
        offset = (len(series) - 1) / 2 * height - index * height
        right.barh(y + offset, rows[column], height, color=color, label=label)
    for bound in (-10, 10):
        right.axvline(bound, color="0.5", ls=":", lw=1)
    right.axvline(0, color="k", lw=0.8)
    right.set(xlabel="error against the measurement (%)")
    right.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(series), fontsize="small"
    )
    figure.suptitle(title)
    return figure


def plot_kernel_errors(kernels: pd.DataFrame, summary: pd.DataFrame, *, title: str) -> Figure:
    """Per-kernel error by kernel kind (a box per kind), kinds ordered by their share of time.

    Kinds without a rated kernel (no model priced them) are named below the plot with their
    share of the time, so a reviewer sees what the boxes leave out.
    """
    shown = summary[summary["rated"] > 0]
    unrated = summary[summary["rated"] == 0]
    groups = list(shown["group"])
    figure = Figure(figsize=(max(6.5, 1.0 * len(groups) + 2.5), 5.0), layout="constrained")
    ax = figure.subplots()
    rated = kernels[kernels["error_pct"].notna()]
    data = [
        rated.loc[rated["group"] == g, "error_pct"].clip(-100, _PLOT_CLIP_PCT).to_numpy()
        for g in groups
    ]
    if data:
        ax.boxplot(data, showfliers=True, widths=0.6)
        labels = [
            f"{g}\n{n} kernels\n{share:.0f} % of time"
            for g, n, share in zip(groups, shown["rated"], shown["time_share_pct"], strict=True)
        ]
        ax.set_xticks(range(1, len(groups) + 1), labels, fontsize="small")
    else:
        ax.text(0.5, 0.5, "no kernel with a profiled time", ha="center", transform=ax.transAxes)
    for bound in (-10, 10):
        ax.axhline(bound, color="0.5", ls=":", lw=1)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel=f"predicted vs profiled (%, clipped at {_PLOT_CLIP_PCT:g})", title=title)
    if len(unrated):
        names = ", ".join(
            f"{g} {share:.0f} %"
            for g, share in zip(unrated["group"], unrated["time_share_pct"], strict=True)
        )
        figure.text(
            0.01, 0.005, wrap_title(f"not rated (no prediction): {names}", 120), fontsize="x-small"
        )
        engine = figure.get_layout_engine()
        if isinstance(engine, ConstrainedLayoutEngine):  # leave room for the note
            engine.set(rect=(0, 0.06, 1, 0.94))
    return figure


def plot_kernel_scatter(kernels: pd.DataFrame, *, title: str) -> Figure:
    """Predicted against profiled time of every kernel, one colour per kernel kind."""
    figure = Figure(figsize=(5.5, 5.5), layout="constrained")
    ax = figure.subplots()
    rated = kernels[kernels["error_pct"].notna() & (kernels["predicted_us"] > 0)]
    for group, part in rated.groupby("group", sort=True):
        ax.loglog(part["measured_us"], part["predicted_us"], ".", alpha=0.7, label=str(group))
    if len(rated):
        lo = float(min(rated["measured_us"].min(), rated["predicted_us"].min()))
        hi = float(max(rated["measured_us"].max(), rated["predicted_us"].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.legend(fontsize="x-small")
    ax.set(xlabel="profiled in the network (µs)", ylabel="predicted (µs)", title=title)
    return figure


def _error_pct(value: float, measured: float) -> float:
    return 100 * (value - measured) / measured if measured > 0 else math.nan


def wrap_title(title: str, width: int = 110) -> str:
    if len(title) <= width:
        return title
    cut = title.rfind(" ", 0, width)
    return title[:cut] + "\n" + wrap_title(title[cut + 1 :], width)


__all__ = [
    "ERROR_BY_GROUP_COLUMNS",
    "KERNEL_COLUMNS",
    "NETWORK_COLUMNS",
    "errors_by_group",
    "kernel_table",
    "network_table",
    "plot_kernel_errors",
    "plot_kernel_scatter",
    "plot_networks",
    "wrap_title",
]
