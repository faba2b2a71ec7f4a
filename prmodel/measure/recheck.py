"""Recheck a measurement store: was every stretch of it measured on an equally fast machine?

A shared machine drifts. On the development VM the layers of 15 reference networks,
measured twice a few minutes apart, sum to within 3 % per network; measured hours apart, the
per-network sums moved by up to 10 % against each other (depending on the kinds of layer),
and a 20k-point store built over five hours had one 10-minute stretch measured about 10 %
slow and one about 10 % fast. Models trained on such a store take a slow stretch for a
property of the layers measured in it.

:func:`recheck_store` re-measures a sample of the stored points now, spread over the time
they were measured in (``bin_minutes`` stretches), into a temporary store, and compares.
Each layer's ratio ``now / stored`` is divided by the median ratio of its kind (the machine
today may be slower for some kinds than for others), so a stretch's ``slowdown`` says how
much slower than the rest of the store its points were measured: 1.10 means 10 % slow.
Stretches beyond ``tolerance`` are flagged where the slowdown's ~95 % interval excludes 1
(with a dozen points per stretch the interval is about ±4 % on the development VM, so a
larger sample judges stretches near the tolerance more surely).
:func:`remeasure_stretches` measures every point of the flagged stretches again in the store
itself (each point replaced as soon as it is measured, so an interrupted run keeps what it
did and the next recheck finds what is left).

Only points of the target's current fingerprint (this machine and software) are checked;
points stored from other machines cannot be measured here.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.machines import refuse_old_ids
from prmodel.measure.runner import (
    MeasureSettings,
    SweepReport,
    measure_layers,
    relative_ci,
    run_sweep,
)
from prmodel.measure.store import MeasurementStore
from prmodel.targets.base import Target, fingerprint_hash

DEFAULT_SAMPLE = 120
"""Stored points re-measured by default (spread over the stretches)."""
DEFAULT_BIN_MINUTES = 30
DEFAULT_TOLERANCE = 0.05
"""A stretch whose slowdown is beyond 1 ± this is flagged."""
MIN_PER_STRETCH = 3
"""Points re-measured at least per stretch (fewer where the stretch holds fewer)."""
MIN_LATENCY_US = 20.0
MAX_LATENCY_US = 5000.0
"""Points outside this range are not sampled: the shortest are dominated by fixed costs,
the longest make the check slow."""
RECHECK_SETTINGS = MeasureSettings(max_rounds=7, max_seconds_per_point=10.0)
"""How the sample is measured: enough interleaved rounds for a 1-2 % point, all in one go."""

LAYER_COLUMNS = ["layer_key", "kind", "measured_at", "stretch", "stored_us", "now_us", "ratio"]


class RecheckError(PrmodelError, ValueError):
    """A store that cannot be rechecked (one sentence says why)."""


@dataclass(frozen=True)
class StretchCheck:
    """One stretch of measuring time and how fast the machine was in it."""

    start: str
    """The stretch's first minute, ``YYYY-MM-DDTHH:MM`` (UTC)."""
    stored: int
    checked: int
    slowdown: float | None
    """Median over the checked points of stored / now, relative to their kind (None: none
    checked)."""
    spread: float | None
    """Half-width of the slowdown's ~95 % interval (``1.57·IQR/√n`` of the median)."""
    flagged: bool
    """The slowdown is beyond ``1 ± tolerance`` and its interval excludes 1."""


@dataclass(frozen=True)
class KindCheck:
    """How the machine's speed now compares to the store's, for one layer kind."""

    kind: str
    checked: int
    median: float
    p10: float
    p90: float


@dataclass(frozen=True)
class RecheckReport:
    """What :func:`recheck_store` found (see the module docstring)."""

    target_id: str
    fingerprint_hash: str
    bin_minutes: int
    tolerance: float
    checked: int
    failed: int
    median: float
    """Median ``now / stored`` over every checked point: above 1, the machine is slower now."""
    p10: float
    p90: float
    by_kind: tuple[KindCheck, ...]
    stretches: tuple[StretchCheck, ...]
    layers: pd.DataFrame = field(repr=False)
    """One row per checked point, columns :data:`LAYER_COLUMNS`."""

    @property
    def flagged(self) -> list[str]:
        """Starts of the flagged stretches."""
        return [s.start for s in self.stretches if s.flagged]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the per-point rows included)."""
        return {
            "target_id": self.target_id,
            "fingerprint_hash": self.fingerprint_hash,
            "bin_minutes": self.bin_minutes,
            "tolerance": self.tolerance,
            "checked": self.checked,
            "failed": self.failed,
            "now_over_stored": {"median": self.median, "p10": self.p10, "p90": self.p90},
            "by_kind": [vars(k) for k in self.by_kind],
            "stretches": [vars(s) for s in self.stretches],
            "flagged": self.flagged,
            "layers": self.layers.to_dict("records"),
        }


def stretch_of(measured_at: pd.Series, bin_minutes: int) -> pd.Series:
    """The stretch (``YYYY-MM-DDTHH:MM`` of its first minute) of each ``measured_at``."""
    if bin_minutes < 1:
        raise RecheckError(f"the stretch length must be at least 1 minute, got {bin_minutes}")
    times = pd.to_datetime(measured_at, utc=True, format="ISO8601")
    return times.dt.floor(f"{bin_minutes}min").dt.strftime("%Y-%m-%dT%H:%M")


def recheck_store(
    store: MeasurementStore,
    target: Target,
    *,
    sample: int = DEFAULT_SAMPLE,
    bin_minutes: int = DEFAULT_BIN_MINUTES,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    settings: MeasureSettings = RECHECK_SETTINGS,
    progress: bool = True,
) -> RecheckReport:
    """Re-measure a sample of ``store``'s points of ``target`` now and judge each stretch.

    Args:
        store: the store to check; it is only read (the sample is measured elsewhere).
        target: the target whose points are checked (its current fingerprint).
        sample: about how many stored points to re-measure, spread evenly over the
            stretches (rounded up to the same number per stretch, at least
            :data:`MIN_PER_STRETCH`; every point where a stretch holds fewer).
        bin_minutes: length of a stretch of measuring time.
        tolerance: a stretch whose slowdown is beyond ``1 ± tolerance`` is flagged.
        seed: seed of the sample.
        settings: how the sample is measured.
        progress: show a progress bar.

    Raises:
        RecheckError: bad arguments, or no stored point of this target and fingerprint.
    """
    if sample < 1:
        raise RecheckError(f"the sample must hold at least 1 point, got {sample}")
    if not 0 < tolerance < 1:
        raise RecheckError(f"the tolerance must be between 0 and 1, got {tolerance}")
    refuse_old_ids(store, target)  # this machine's rows under an old id: migrate them first
    digest, stored = _stored_points(store, target, bin_minutes)
    picked = _sample(stored, sample, seed)
    layers = measure_again(picked, target, settings=settings, progress=progress)
    layers = layers[LAYER_COLUMNS].reset_index(drop=True)
    return _report(target.target_id, digest, stored, layers, len(picked), bin_minutes, tolerance)


def measure_again(
    points: pd.DataFrame,
    target: Target,
    *,
    settings: MeasureSettings = RECHECK_SETTINGS,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure the layers of stored points again, now, into a temporary store.

    Args:
        points: store rows (:meth:`MeasurementStore.frame`) of ``target``.
        target: where to measure them.
        settings: how to measure them; all are measured in one go, interleaved.
        progress: show a progress bar.

    Returns:
        The rows of the points measured again (one that fails now is left out), with
        ``latency_us`` renamed ``stored_us`` and two columns added: ``now_us`` and
        ``ratio`` (now / stored).
    """
    with (
        tempfile.TemporaryDirectory(prefix="prmodel-recheck-") as folder,
        MeasurementStore(Path(folder) / "recheck.sqlite") as scratch,
    ):
        now = measure_layers(
            layers_from_frame(points), target, store=scratch, settings=settings, progress=progress
        )
    again = points.merge(now[["layer_key", "latency_us"]], on="layer_key", suffixes=("", "_now"))
    again = again.rename(columns={"latency_us": "stored_us", "latency_us_now": "now_us"})
    again["ratio"] = again["now_us"] / again["stored_us"]
    return again


def remeasure_stretches(
    store: MeasurementStore,
    target: Target,
    stretches: list[str],
    *,
    bin_minutes: int = DEFAULT_BIN_MINUTES,
    settings: MeasureSettings | None = None,
    progress: bool = True,
) -> SweepReport:
    """Measure every stored point of ``target`` in ``stretches`` again, replacing it.

    Each point is committed as soon as it is measured, with the time it was measured now,
    so it leaves its old stretch: after an interruption, the points still to do are the
    ones left in the stretches.

    Raises:
        RecheckError: no stored point of this target and fingerprint, or a stretch that
            holds none.
    """
    _, stored = _stored_points(store, target, bin_minutes)
    empty = sorted(set(stretches) - set(stored["stretch"]))
    if empty:
        raise RecheckError(
            f"no stored point of {target.target_id} from this machine was measured in the "
            f"{bin_minutes}-minute stretch starting {empty[0]}"
        )
    chosen = stored[stored["stretch"].isin(stretches)]
    return run_sweep(
        layers_from_frame(chosen),
        target,
        store=store,
        settings=settings,
        progress=progress,
        remeasure=True,
    )


def _stored_points(
    store: MeasurementStore, target: Target, bin_minutes: int
) -> tuple[str, pd.DataFrame]:
    """The target's fingerprint hash and its points from this machine, with their stretch."""
    digest = fingerprint_hash(target.fingerprint())
    stored = store.frame(target_id=target.target_id, fingerprint_hash=digest)
    if stored.empty:
        raise RecheckError(
            f"the store {store.path} holds no measurement of {target.target_id} from this "
            "machine (its fingerprint differs from every stored one, or nothing was measured)"
        )
    return digest, stored.assign(stretch=stretch_of(stored["measured_at"], bin_minutes))


def _sample(stored: pd.DataFrame, sample: int, seed: int) -> pd.DataFrame:
    """About ``sample`` points, the same number from each stretch (all of a smaller one),
    timed within the sampled range where any are."""
    usable = stored[stored["latency_us"].between(MIN_LATENCY_US, MAX_LATENCY_US)]
    if usable.empty:
        usable = stored
    groups = usable.groupby("stretch", sort=True)
    per_stretch = max(MIN_PER_STRETCH, -(-sample // groups.ngroups))
    picked = groups.sample(frac=1.0, random_state=seed).groupby("stretch").head(per_stretch)
    # interleave the stretches, so the sample's own measuring order favours none of them
    return picked.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)


def _report(
    target_id: str,
    digest: str,
    stored: pd.DataFrame,
    layers: pd.DataFrame,
    attempted: int,
    bin_minutes: int,
    tolerance: float,
) -> RecheckReport:
    if layers.empty:
        raise RecheckError(
            f"none of the {attempted} stored points of {target_id} sampled for the recheck "
            "could be measured again on this machine"
        )
    ratio = layers["ratio"]
    by_kind = tuple(
        KindCheck(
            kind=str(kind),
            checked=len(group),
            median=float(group.median()),
            p10=float(group.quantile(0.1)),
            p90=float(group.quantile(0.9)),
        )
        for kind, group in ratio.groupby(layers["kind"], sort=True)
    )
    relative = _relative_to_kind(layers)
    stretches = []
    for start, points in stored.groupby("stretch", sort=True)["layer_key"]:
        mine = relative[layers["stretch"] == start]
        slowdown = spread = None
        flagged = False
        if len(mine):
            slowdown = float(1 / np.median(mine))
            spread = slowdown * relative_ci(mine.to_numpy())
            off = abs(slowdown - 1)
            enough = len(mine) >= min(MIN_PER_STRETCH, len(points))
            flagged = enough and off > tolerance and off > spread
        stretches.append(
            StretchCheck(
                start=str(start),
                stored=len(points),
                checked=len(mine),
                slowdown=slowdown,
                spread=spread,
                flagged=flagged,
            )
        )
    return RecheckReport(
        target_id=target_id,
        fingerprint_hash=digest,
        bin_minutes=bin_minutes,
        tolerance=tolerance,
        checked=len(layers),
        failed=attempted - len(layers),
        median=float(ratio.median()),
        p10=float(ratio.quantile(0.1)),
        p90=float(ratio.quantile(0.9)),
        by_kind=by_kind,
        stretches=tuple(stretches),
        layers=layers,
    )


def _relative_to_kind(layers: pd.DataFrame) -> pd.Series:
    """Each ratio over its kind's median, where the kind was checked in several stretches.

    A kind checked in one stretch only cannot tell that stretch from today's speed for
    that kind, so its ratios are taken relative to the median over all kinds instead.
    """
    ratio = layers["ratio"]
    kind_median = ratio.groupby(layers["kind"]).transform("median")
    stretches_per_kind = layers.groupby("kind")["stretch"].transform("nunique")
    reference = kind_median.where(stretches_per_kind > 1, float(ratio.median()))
    return ratio / reference


__all__ = [
    "DEFAULT_BIN_MINUTES",
    "DEFAULT_SAMPLE",
    "DEFAULT_TOLERANCE",
    "KindCheck",
    "RecheckError",
    "RecheckReport",
    "StretchCheck",
    "measure_again",
    "recheck_store",
    "remeasure_stretches",
    "stretch_of",
]
