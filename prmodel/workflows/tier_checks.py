"""Tiers of training networks for ``prmodel learn``, and the check that may stop it early.

:func:`measure_tiers` measures the tiers of :func:`prmodel.zoo.learning.learning_tiers` one
after another with a :class:`~prmodel.workflows.profiling.NetworkProfiler`. With a stop
threshold, before each tier (from the third on) a :class:`TierChecker` predicts the tier
before it with models learned from the tiers before that (:func:`predict_profiled`: from
the profiled rows, no ONNX file needed): an error on networks those models never saw, from
measurements made anyway. Within the threshold, learning stops there. None by default
(:data:`DEFAULT_STOP_PCT`). See docs/method.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prmodel.targets.base import Target
from prmodel.train.model import ExtrapolationWarning
from prmodel.workflows.network_profiles import kernel_layers, matching_rows, read_profiles
from prmodel.workflows.profiling import NetworkProfiler
from prmodel.zoo.learning import LearningTier

if TYPE_CHECKING:
    from prmodel.workflows.predictor_fit import LearnedPredictor

DEFAULT_STOP_PCT = 0.0
"""No early stop by default: measure every tier the budget allows. A stop threshold (say 3 %:
stop once the last tier measured was predicted within it by the models learned before it)
saves measuring but cost accuracy where it was tried: on the 2-core AMD EPYC it stopped after
86 networks (4.3 min) at 3.75 % held-out MAPE, where the whole list (145 networks, 7.7 min)
gave 2.93 %; and where the later tiers were checked, they came out at 5-23 % (256 px 5.2-7.6
%, 128 px 5.9 %, 192 px 23 % in a noisy run), so one good tier says little about the
next."""
CHECK_MIN_NETWORKS = 25
"""Networks a check's models must have learned from (fewer: no check, measuring goes on)."""
CHECK_FOLDS = 3
"""Folds of the check's models (fewer than the final fit's: a check must be quick)."""


@dataclass(frozen=True)
class TierCheck:
    """A tier's networks predicted by models learned from the tiers before it only.

    This is an error on networks the models never saw, from measurements learn made anyway.
    With a stop threshold (``stop_pct``), learn stops when it is within it; none by default
    (:data:`DEFAULT_STOP_PCT`: one tier predicted well did not mean the next would be).
    """

    tier: str
    networks: int
    trained_on: int
    mape: float
    worst: str
    worst_error_pct: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_tiers(
    tiers: Sequence[LearningTier],
    reused: set[str],
    measuring: NetworkProfiler,
    checking: TierChecker,
    path: Path,
    *,
    progress: bool,
    note: Callable[[str], None],
) -> tuple[set[str], str | None]:
    """Measure the tiers' networks not measured before, tier by tier, until the tiers or the
    budget end or a check says the last tier was predicted well enough. Returns the names
    measured and the tier learning stopped after (None: no check stopped it)."""
    measured: set[str] = set()
    for index, tier in enumerate(tiers):
        waiting = [spec for spec in tier.networks if spec.name not in reused]
        if not waiting:
            continue
        if index >= 2 and measuring.left_s > 0:
            done = reused | measured
            check = checking.check(tiers[index - 1], tiers[: index - 1], done)
            if check is not None:
                measuring.spend(check.seconds)
                note(
                    f"check: the {check.networks} networks of tier {check.tier!r}, predicted "
                    f"by models of {check.trained_on} networks before it, MAPE "
                    f"{check.mape:.1f} % (worst {check.worst} {check.worst_error_pct:+.1f} %)"
                )
                if check.mape <= checking.stop_pct:
                    measuring.settle()
                    note(
                        f"stopped after tier {check.tier!r}: it came within "
                        f"{checking.stop_pct:g} % before it was learned (--stop-at 0 goes on)"
                    )
                    return measured, check.tier
        later = [
            spec
            for next_tier in tiers[index + 1 :]
            for spec in next_tier.networks
            if spec.name not in reused
        ]
        got = measuring.run(waiting, path, later=later, progress=progress, on_note=note)
        measured |= got
        if len(got) < len(waiting):
            break  # the budget is spent (the profiler said so)
    return measured, None


class TierChecker:
    """Predicts a measured tier with models learned from the tiers before it."""

    def __init__(
        self,
        target: Target,
        path: Path,
        identity: Mapping[str, str],
        fit: Callable[[pd.DataFrame], LearnedPredictor],
        *,
        stop_pct: float,
        clock: Callable[[], float],
    ) -> None:
        self.target = target
        self.path = path
        self.identity = identity
        self.fit = fit
        self.stop_pct = stop_pct
        self.clock = clock
        self.checks: list[TierCheck] = []

    def check(
        self, tier: LearningTier, before: Sequence[LearningTier], done: set[str]
    ) -> TierCheck | None:
        """``tier`` predicted by models of the ``before`` tiers' networks in ``done`` (None:
        no stop threshold, too few networks before it, or none of it measured)."""
        if self.stop_pct <= 0:
            return None
        earlier = {spec.name for t in before for spec in t.networks} & done
        checked = {spec.name for spec in tier.networks} & done
        if len(earlier) < CHECK_MIN_NETWORKS or not checked:
            return None
        started = self.clock()
        rows = matching_rows(
            read_profiles(self.path),
            target_id=self.identity["target_id"],
            fingerprint_hash=self.identity["fingerprint_hash"],
            protocol_hash=self.identity["protocol_hash"],
        )
        learned = self.fit(rows[rows["network"].isin(earlier)])
        tier_rows = rows[rows["network"].isin(checked)]
        predicted = predict_profiled(learned, tier_rows, self.target)
        truth = tier_rows.groupby("network", sort=False)["network_total_us"].first()
        errors = 100 * (predicted - truth[predicted.index]) / truth[predicted.index]
        worst = str(errors.abs().idxmax())
        check = TierCheck(
            tier=tier.name,
            networks=len(errors),
            trained_on=len(earlier),
            mape=float(errors.abs().mean()),
            worst=worst,
            worst_error_pct=float(errors[worst]),
            seconds=self.clock() - started,
        )
        self.checks.append(check)
        return check


def predict_profiled(learned: LearnedPredictor, rows: pd.DataFrame, target: Target) -> pd.Series:
    """Each network of ``rows`` (network-profile rows) as ``learned`` estimates it from its
    profiled kernels, without its ONNX file: a model's prediction for each kernel of a
    learned kind, the calibration's byte-cost fit for the others, and the calibration's total
    over them. Returns microseconds by network name."""
    rows = rows.reset_index(drop=True)
    layers = kernel_layers(rows)
    running = (rows["status"] != "free").to_numpy()
    predicted = np.zeros(len(rows))
    modelled = np.zeros(len(rows), dtype=bool)
    for kind, model in learned.models.items():
        picked = {
            i: layer
            for i, layer in enumerate(layers)
            if running[i]
            and layer is not None
            and layer.kind is kind
            and target.unsupported_reason(layer) is None
        }
        if picked:
            at = list(picked)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExtrapolationWarning)
                predicted[at] = model.predict(list(picked.values()))
            modelled[at] = True
    for index in np.flatnonzero(running & ~modelled):
        fit = learned.calibration.unmodelled_fit(str(rows["op"].iloc[index]))
        if fit is not None:
            predicted[index] = float(fit.predict(rows["bytes_moved"].iloc[index]))
    weights = rows["weight_bytes"].to_numpy(dtype=np.float64)
    totals = {}
    for name, group in rows.groupby("network", sort=False):
        active = group.index[running[group.index]]
        totals[str(name)] = learned.calibration.total_us(predicted[active], weights[active])
    return pd.Series(totals, dtype=np.float64)


__all__ = [
    "CHECK_FOLDS",
    "CHECK_MIN_NETWORKS",
    "DEFAULT_STOP_PCT",
    "TierCheck",
    "TierChecker",
    "measure_tiers",
    "predict_profiled",
]
