"""What kernels cost inside a network: in-network times and the costs of unmodelled ops.

A profiled run times every kernel but adds the profiler's own bookkeeping to each;
:func:`in_network_us` takes it off, so a network's kernels sum to its plain run. Kernels no
latency model prices (Concat, layout reorders, Softmax, ...) get a per-op ``fixed + µs per
MB moved`` cost (:class:`BandwidthFit`), fitted on those in-network times by
:func:`fit_unmodelled`. :mod:`prmodel.estimate.calibration` keeps these fits in a target's
calibration, and :mod:`prmodel.workflows.learn` trains the kernel models on the same times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

MIN_OP_SAMPLES = 3
"""Profiled kernels an op needs before it gets a bandwidth fit of its own."""
MIN_PROFILED_SHARE = 0.1
"""Least share of its profiled time a kernel keeps when the profiler's cost is taken off."""

_MB = 1e6


@dataclass(frozen=True)
class BandwidthFit:
    """The cost of an unmodelled op: ``fixed_us + us_per_mb * MB moved`` (op ``*``: any)."""

    op: str
    fixed_us: float
    us_per_mb: float
    samples: int
    mape: float

    def predict(self, bytes_moved: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predicted microseconds for kernels moving ``bytes_moved`` bytes."""
        moved = np.asarray(bytes_moved, dtype=np.float64)
        return self.fixed_us + self.us_per_mb * moved / _MB

    @property
    def gbps(self) -> float | None:
        """The fitted bandwidth in GB/s (None where traffic did not explain the time)."""
        return 1e3 / self.us_per_mb if self.us_per_mb > 0 else None


@dataclass(frozen=True)
class CalibrationSample:
    """One measured network: its total and its per-kernel estimate table.

    ``kernels`` needs the columns ``op``, ``status``, ``predicted_us``, ``bytes_moved`` and
    ``weight_bytes`` (as :class:`prmodel.estimate.estimator.NetworkEstimate.layers` has them) and,
    for the unmodelled-op fit, ``measured_us`` (profiled kernel time, NaN where unknown).
    """

    name: str
    measured_us: float
    kernels: pd.DataFrame


def in_network_us(sample: CalibrationSample) -> npt.NDArray[np.float64]:
    """Each kernel's profiled time less the profiler's own per-kernel cost (NaN: not profiled).

    A profiled run times every kernel but adds a few µs of bookkeeping to each, so profiled
    times sum to more than the network's plain (unprofiled) run: 0-44 % more on the
    reference networks, most where kernels are small. That excess, spread evenly over the
    profiled kernels, is taken off each of them; a kernel keeps at least
    :data:`MIN_PROFILED_SHARE` of its profiled time.
    """
    kernels = sample.kernels
    if "measured_us" not in kernels.columns:
        return np.full(len(kernels), np.nan)
    profiled = kernels["measured_us"].to_numpy(dtype=np.float64)
    timed = (kernels["status"] != "free").to_numpy() & (profiled > 0)
    if not timed.any():
        return np.full(len(kernels), np.nan)
    excess = max(0.0, float(profiled[timed].sum()) - sample.measured_us) / int(timed.sum())
    corrected = np.maximum(profiled - excess, MIN_PROFILED_SHARE * profiled)
    return np.where(timed, corrected, np.nan)


def fit_unmodelled(samples: Sequence[CalibrationSample]) -> tuple[BandwidthFit, ...]:
    """Per-op and all-op ``fixed + bytes`` fits of the in-network times of unmodelled kernels.

    The times are the profiled ones less the profiler's cost (:func:`in_network_us`).
    """
    frames = [
        s.kernels.assign(measured_us=in_network_us(s))
        for s in samples
        if "measured_us" in s.kernels.columns
    ]
    if not frames:
        return ()
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[
        (rows["status"] == "unmodelled") & rows["measured_us"].notna() & (rows["bytes_moved"] > 0)
    ]
    fits = []
    for op, group in rows.groupby("op", sort=True):
        if len(group) >= MIN_OP_SAMPLES:
            fits.append(_bandwidth_fit_of(str(op), group))
    if len(rows) >= MIN_OP_SAMPLES:
        fits.append(_bandwidth_fit_of("*", rows))
    return tuple(fits)


def _bandwidth_fit_of(op: str, rows: pd.DataFrame) -> BandwidthFit:
    from scipy.optimize import nnls  # 0.2 s to import: only fitting needs it, never estimating

    moved = rows["bytes_moved"].to_numpy(dtype=np.float64) / _MB
    measured = rows["measured_us"].to_numpy(dtype=np.float64)
    design = np.column_stack([np.ones_like(moved), moved])
    (fixed, per_mb), _ = nnls(design, measured)
    predicted = fixed + per_mb * moved
    errors = np.abs(predicted - measured) / np.maximum(measured, 1e-9)
    return BandwidthFit(op, float(fixed), float(per_mb), len(rows), float(100 * errors.mean()))


def bandwidth_fit_from_dict(data: Mapping[str, Any]) -> BandwidthFit:
    """Inverse of ``asdict`` on a :class:`BandwidthFit` (a calibration file's entry)."""
    return BandwidthFit(
        op=str(data["op"]),
        fixed_us=float(data["fixed_us"]),
        us_per_mb=float(data["us_per_mb"]),
        samples=int(data["samples"]),
        mape=float(data["mape"]),
    )


__all__ = [
    "MIN_OP_SAMPLES",
    "MIN_PROFILED_SHARE",
    "BandwidthFit",
    "CalibrationSample",
    "bandwidth_fit_from_dict",
    "fit_unmodelled",
    "in_network_us",
]
