"""Latency models learned from kernels timed inside whole networks, cross-validated by network.

One profiled run of a network times every kernel in the context the estimator predicts it
in: fused, in the runtime's blocked layout, with the caches as the kernels before it left
them. :func:`fit_in_network_models` fits one :class:`~prmodel.train.model.LatencyModel` per
layer kind on such kernels and judges it the way it will be used, on networks it was not
trained on: the networks are split into folds, and every kernel is predicted by models
fitted on the other folds (its *out-of-fold* prediction). Per kind, the target transform
(``log`` or ``log-relative`` to the hardware's work estimate) with the lower out-of-fold
error wins; the final model is fitted on every row. The out-of-fold predictions let the
caller check whole networks the models never saw and fit the network-level calibration on
predictions as wrong as those for a new network will be.

Nothing here measures or reads files: :mod:`prmodel.workflows.learn` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.profiles import HardwareProfile
from prmodel.train.features import FeatureSpec
from prmodel.train.model import ExtrapolationWarning, LatencyModel, chosen_transform

DEFAULT_FOLDS = 5
"""Folds of networks for the out-of-fold predictions."""
MIN_KIND_ROWS = 8
"""Kernels a layer kind needs before it gets a model (fewer: priced as unmodelled ops)."""


@dataclass(frozen=True)
class KindFit:
    """How one kind's model was chosen: its rows, networks and each transform's error.

    ``errors_pct`` holds, per target transform tried, the out-of-fold error weighted by
    time (sum of absolute errors over the sum of times, percent): the share of network time
    the kind's predictions get wrong. Empty where too few networks had the kind to fold.
    """

    kind: LayerKind
    rows: int
    networks: int
    transform: str
    errors_pct: dict[str, float] = field(default_factory=dict)

    @property
    def error_pct(self) -> float | None:
        """The chosen transform's out-of-fold error (None where not cross-validated)."""
        return self.errors_pct.get(self.transform)


@dataclass(frozen=True, eq=False)
class InNetworkFit:
    """Models by kind, each row's out-of-fold prediction (NaN: no model could predict it
    without its network) and how every kind was fitted."""

    models: dict[LayerKind, LatencyModel]
    out_of_fold_us: npt.NDArray[np.float64]
    kinds: tuple[KindFit, ...]
    folds: int


def network_folds(networks: Sequence[str], folds: int, *, seed: int = 0) -> dict[str, int]:
    """Each network's fold: a seeded shuffle of the distinct names dealt round-robin.

    The shuffle depends only on the names and the seed, so the same networks always fall
    into the same folds.
    """
    names = sorted(set(networks))
    order = np.random.default_rng(seed).permutation(len(names))
    count = max(1, min(folds, len(names)))
    return {names[index]: position % count for position, index in enumerate(order)}


def fit_in_network_models(
    layers: Sequence[LayerConfig | None],
    latency_us: npt.ArrayLike,
    networks: Sequence[str],
    *,
    representatives: RepresentativeSet | None = None,
    profile: HardwareProfile | None = None,
    folds: int = DEFAULT_FOLDS,
    min_rows: int = MIN_KIND_ROWS,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    usable: Callable[[LayerConfig], bool] | None = None,
    on_kind: Callable[[LayerKind], None] | None = None,
) -> InNetworkFit:
    """Fit one model per layer kind on in-network kernel times, with out-of-fold predictions.

    Args:
        layers: Each kernel's layer (None: a kernel without one, e.g. a layout reorder).
        latency_us: Each kernel's in-network time (NaN or <= 0: not usable).
        networks: The network each kernel belongs to (the folds split networks, never one
            network's kernels).
        representatives: The target's PR set, for its architecture-aware features.
        profile: The hardware profile for GEMM and layout features (where no PR set).
        folds: Folds of networks (at most one per network).
        min_rows: Kernels a kind needs for a model.
        seed: Seed of the folds and the regressors.
        params: XGBoost hyper-parameters replacing the defaults (fewer trees fit faster).
        usable: Whether the target can run a layer (others are left to the unmodelled fits).
        on_kind: Called with each kind before it is fitted, for progress.

    Returns:
        The fitted models, out-of-fold predictions (aligned with ``layers``) and choices.
    """
    times = np.asarray(latency_us, dtype=np.float64)
    fold_of = network_folds(networks, folds, seed=seed)
    row_folds = np.array([fold_of[name] for name in networks], dtype=np.int64)
    by_kind: dict[LayerKind, list[int]] = {}
    for index, layer in enumerate(layers):
        usable_row = layer is not None and np.isfinite(times[index]) and times[index] > 0
        if usable_row and (usable is None or usable(layer)):  # type: ignore[arg-type]
            by_kind.setdefault(layer.kind, []).append(index)  # type: ignore[union-attr]
    models: dict[LayerKind, LatencyModel] = {}
    out_of_fold = np.full(len(layers), np.nan)
    kinds = []
    for kind in sorted(by_kind, key=lambda k: k.value):
        rows = np.array(by_kind[kind])
        if len(rows) < min_rows:
            continue
        if on_kind is not None:
            on_kind(kind)
        kind_layers = [layers[i] for i in rows]
        spec = FeatureSpec.for_kind(kind, representatives, profile=profile)
        candidates = _transforms(spec)

        def make(transform: str, kind: LayerKind = kind) -> LatencyModel:
            return LatencyModel(
                kind,
                representatives=representatives,
                profile=profile,
                plateau_mapping=False,
                target_transform=transform,
                seed=seed,
                params=params,
            )

        predictions = {
            transform: _out_of_fold(make(transform), kind_layers, times[rows], row_folds[rows])
            for transform in candidates
        }
        errors = {
            transform: error
            for transform, found in predictions.items()
            if (error := _weighted_error(found, times[rows])) is not None
        }
        chosen = min(errors, key=lambda t: (errors[t], candidates.index(t))) if errors else None
        transform = chosen or candidates[0]
        models[kind] = _fit(make(transform), kind_layers, times[rows])
        out_of_fold[rows] = predictions[transform]
        networks_of_kind = len({networks[i] for i in rows})
        kinds.append(KindFit(kind, len(rows), networks_of_kind, transform, errors))
    return InNetworkFit(models, out_of_fold, tuple(kinds), max(fold_of.values(), default=0) + 1)


def _transforms(spec: FeatureSpec) -> list[str]:
    """The target transforms to try, the default first (it wins ties)."""
    default = chosen_transform(None, spec)
    return [default, *(t for t in ("log", "log-relative") if t != default and _fits(t, spec))]


def _fits(transform: str, spec: FeatureSpec) -> bool:
    return transform != "log-relative" or spec.work_feature is not None


def _out_of_fold(
    model: LatencyModel,
    layers: Sequence[LayerConfig],
    times: npt.NDArray[np.float64],
    folds: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Each row predicted by the model fitted on the other folds' rows (NaN where the kind
    has no rows outside the row's fold: nothing could predict it without its network)."""
    predicted = np.full(len(layers), np.nan)
    for fold in np.unique(folds):
        inside = folds == fold
        if inside.all():
            continue
        trained = _fit(
            model, [x for x, out in zip(layers, ~inside, strict=True) if out], times[~inside]
        )
        held = [x for x, held_in in zip(layers, inside, strict=True) if held_in]
        with warnings.catch_warnings():
            # A held-out network beyond the training ranges is what is being judged.
            warnings.simplefilter("ignore", ExtrapolationWarning)
            predicted[inside] = trained.predict(held)
    return predicted


def _fit(
    model: LatencyModel, layers: Sequence[LayerConfig], times: npt.NDArray[np.float64]
) -> LatencyModel:
    fresh = LatencyModel(
        model.kind,
        regressor=model.regressor,
        params=model.params,
        representatives=model.representatives,
        seed=model.seed,
        n_jobs=model.n_jobs,
        plateau_mapping=model.plateau_mapping,
        target_transform=model.target_transform,
        profile=model.profile,
    )
    return fresh.fit(layers, times)


def _weighted_error(
    predicted: npt.NDArray[np.float64], measured: npt.NDArray[np.float64]
) -> float | None:
    """Sum of absolute errors over the sum of times, in percent (None: nothing predicted)."""
    known = np.isfinite(predicted)
    if not known.any():
        return None
    return float(100 * np.abs(predicted[known] - measured[known]).sum() / measured[known].sum())


__all__ = [
    "DEFAULT_FOLDS",
    "MIN_KIND_ROWS",
    "InNetworkFit",
    "KindFit",
    "fit_in_network_models",
    "network_folds",
]
