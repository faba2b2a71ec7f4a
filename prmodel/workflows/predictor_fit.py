"""Steps 3-4 of ``prmodel learn``: kernel models and a calibration from network profiles.

:func:`learn_from_profiles` fits one latency model per layer kind on the kernels' in-network
times, cross-validated by network (:func:`prmodel.train.in_network.fit_in_network_models`),
optionally with another machine's networks translated to this one
(:mod:`prmodel.workflows.transfer`), and :func:`calibrated_predictor` fits the target's
:class:`~prmodel.estimate.calibration.Calibration` on the out-of-fold predictions: per-op
``fixed + µs per MB`` costs of the kernels without a model (reorders, Concat, ...) and the
map from the kernel sum to the measured latency. Nothing is measured or saved here:
:mod:`prmodel.workflows.learn` does both, and benchmarks use these for learning curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.estimate.calibration import (
    Calibration,
    core_cache_bytes,
    fit_calibration,
    last_level_cache_bytes,
)
from prmodel.estimate.estimator import Estimator
from prmodel.estimate.op_costs import CalibrationSample
from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.base import Target
from prmodel.targets.profiles import HardwareProfile
from prmodel.train.in_network import DEFAULT_FOLDS, InNetworkFit, fit_in_network_models
from prmodel.train.model import LatencyModel
from prmodel.workflows.network_profiles import in_network_times, kernel_layers
from prmodel.workflows.transfer import (
    ReferenceProfiles,
    TranslatedKernels,
    fit_translation,
    translated_kernels,
)

LEARNED_FORMS: tuple[tuple[str, ...], ...] = (
    ("scale",),
    ("scale", "offset"),
    ("scale", "kernels"),
    ("scale", "kernels", "offset"),
)
"""Calibration forms for models of in-network times, chosen by leave-one-network-out error.
The kernels' own context (cache state, layout) is in their times already; what is left is
the runtime's step from kernel to kernel and a fixed cost per run."""


class LearnError(PrmodelError, ValueError):
    """``prmodel learn`` cannot go on (one sentence says why and what to do)."""


@dataclass(frozen=True)
class NetworkCheck:
    """A training network predicted by models and a calibration fitted without it."""

    name: str
    measured_us: float
    predicted_us: float
    sum_us: float

    @property
    def error_pct(self) -> float:
        return 100 * (self.predicted_us - self.measured_us) / self.measured_us


@dataclass(frozen=True, eq=False)
class LearnedPredictor:
    """Models and calibration learned from network profiles, not yet saved."""

    models: dict[LayerKind, LatencyModel]
    calibration: Calibration
    fit: InNetworkFit
    checks: tuple[NetworkCheck, ...]
    features: str
    translated: TranslatedKernels | None = None
    """The reference's kernels the models learned from too (None: no reference)."""

    def estimator(self, target: Target) -> Estimator:
        """An estimator with these models and this calibration."""
        return Estimator(target, self.models, calibration=self.calibration, strict=False)


def learn_from_profiles(
    rows: pd.DataFrame,
    target: Target,
    *,
    representatives: RepresentativeSet | None = None,
    features: str | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    model_params: Mapping[str, Any] | None = None,
    reference: ReferenceProfiles | None = None,
) -> LearnedPredictor:
    """Fit kernel models and the calibration on network-profile rows (nothing is saved).

    Args:
        rows: Rows of the network-profile data set, of one target, machine and protocol.
        target: The target they were measured on (its profile, caches, refused layers).
        representatives: The PR set for the architecture-aware features (None: the
            target's hardware profile alone).
        features: How the features were chosen, in words (for the report).
        folds: Folds of networks.
        seed: Seed of the folds and the regressors.
        model_params: XGBoost hyper-parameters replacing the defaults.
        reference: Another machine's profiles: the kind models also learn from its
            networks not in ``rows``, their kernel times translated to this machine
            (:mod:`prmodel.workflows.transfer`); the calibration uses ``rows`` alone.

    Raises:
        LearnError: no network with a positive measured latency.
        TransferError: too few kernels measured both here and in the reference.
    """
    rows = rows.reset_index(drop=True)
    totals = rows.groupby("network", sort=False)["network_total_us"].first()
    if not (totals > 0).any():
        raise LearnError("no profiled network has a positive measured latency")
    layers = kernel_layers(rows)
    in_network = in_network_times(rows)
    names = list(rows["network"])
    translated = None
    if reference is not None:
        translation = fit_translation(reference, rows, seed=seed)
        translated = translated_kernels(reference, translation, skip=names)
        layers = [*layers, *translated.layers]
        in_network = np.concatenate([in_network, translated.times_us])
        names = [*names, *translated.networks]
    profile: HardwareProfile | None = None
    if representatives is None:
        profile = target.hardware_profile()
    fit = fit_in_network_models(
        layers,
        in_network,
        names,
        representatives=representatives,
        profile=profile,
        folds=folds,
        seed=seed,
        params=model_params,
        usable=lambda layer: target.unsupported_reason(layer) is None,
    )
    if translated is not None:  # the calibration judges the networks measured here
        fit = replace(fit, out_of_fold_us=fit.out_of_fold_us[: len(rows)])
    described = features or (
        "hardware profile" if representatives is None else "PR file and hardware profile"
    )
    if translated is not None:
        described += f", with kernels translated from {translated.translation.reference_id}"
    return calibrated_predictor(rows, target, fit, features=described, translated=translated)


def calibrated_predictor(
    rows: pd.DataFrame,
    target: Target,
    fit: InNetworkFit,
    *,
    features: str,
    translated: TranslatedKernels | None = None,
) -> LearnedPredictor:
    """The predictor of ``fit``'s models with the calibration fitted on ``rows``' networks.

    Args:
        rows: Network-profile rows of this machine (default index).
        target: The target they were measured on.
        fit: Kernel models and, aligned with ``rows``, each kernel's prediction by models
            that did not learn its network's times (NaN: none could).
        features: How the models' features were chosen, in words.
        translated: The reference's kernels the models learned from too.
    """
    status = _status(rows, kernel_layers(rows), fit)
    samples = calibration_samples(rows, status, np.nan_to_num(fit.out_of_fold_us))
    calibration = fit_calibration(
        samples,
        target_id=target.target_id,
        weight_cap_bytes=last_level_cache_bytes(target),
        core_cache_bytes=core_cache_bytes(target),
        forms=LEARNED_FORMS,
    )
    checks = tuple(
        NetworkCheck(
            name=n.name,
            measured_us=n.measured_us,
            predicted_us=n.loo_us if n.loo_us is not None else n.calibrated_us,
            sum_us=n.sum_us,
        )
        for n in calibration.networks
    )
    return LearnedPredictor(fit.models, calibration, fit, checks, features, translated)


def calibration_samples(
    rows: pd.DataFrame, status: npt.NDArray[Any], predicted_us: npt.NDArray[np.float64]
) -> list[CalibrationSample]:
    """One calibration sample per profiled network of ``rows`` (default index), with each
    kernel's status (free, modelled, unmodelled) and predicted time aligned with ``rows``."""
    return [
        CalibrationSample(
            name=str(name),
            measured_us=float(group["network_total_us"].iloc[0]),
            kernels=pd.DataFrame(
                {
                    "op": group["op"].to_numpy(),
                    "status": status[group.index],
                    "predicted_us": predicted_us[group.index],
                    "bytes_moved": group["bytes_moved"].to_numpy(dtype=np.float64),
                    "weight_bytes": group["weight_bytes"].to_numpy(dtype=np.float64),
                    "measured_us": group["measured_us"].to_numpy(dtype=np.float64),
                }
            ),
        )
        for name, group in rows.groupby("network", sort=False)
    ]


def _status(rows: pd.DataFrame, layers: Sequence[LayerConfig | None], fit: InNetworkFit) -> Any:
    """Each kernel as the estimator will see it: free, modelled (a model predicted it
    without its network) or unmodelled (priced by the calibration's op fits)."""
    status = np.full(len(rows), "unmodelled", dtype=object)
    status[(rows["status"] == "free").to_numpy()] = "free"
    for index, layer in enumerate(layers):
        if status[index] == "free" or layer is None or layer.kind not in fit.models:
            continue
        if np.isfinite(fit.out_of_fold_us[index]):
            status[index] = "modelled"
    return status


__all__ = [
    "LEARNED_FORMS",
    "LearnError",
    "LearnedPredictor",
    "NetworkCheck",
    "calibrated_predictor",
    "calibration_samples",
    "learn_from_profiles",
]
