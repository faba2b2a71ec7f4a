"""Transfer: start a new machine from another machine's network profiles.

A network-profile data set of another machine (the *reference*: the one shipped with
prmodel, or a lab's own) holds the in-network time of every kernel of many networks. On a
new machine the same networks build the same kernels, so a few of them measured here pair
kernel by kernel with the reference. :func:`fit_translation` learns from those pairs how
this machine's times relate to the reference's: the log ratio of the two times as a
function of the kernel (its kind, its reference time, MACs, bytes, depthwise or not, batch),
with a small gradient-boosted tree ensemble. :func:`translated_kernels` applies it to the
reference networks not measured here, so the kind models are fitted on the networks
measured here plus the reference's other networks, their times translated to this machine.

The translation only widens what the kind models learn from. Everything measured here
stays as measured, and the calibration (network totals, the ops without a model) is fitted
on the networks measured here alone, so a translated network never stands in for a
measured one.

Nothing here measures or writes files; :mod:`prmodel.workflows.learn` uses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig, LayerKind
from prmodel.train.in_network import network_folds
from prmodel.train.regressors import build_regressor, thread_limit
from prmodel.workflows.network_profiles import (
    in_network_times,
    kernel_layers,
    read_profiles,
)
from prmodel.zoo.learning import is_held_out, is_held_out_name
from prmodel.zoo.sets import ARCHITECTURES, NetworkSpec

MIN_PAIRS = 30
"""Kernels measured both here and in the reference that a translation needs."""
TRANSLATION_FOLDS = 5
"""Folds of paired networks for the translation's out-of-fold error."""
TRANSLATION_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "max_depth": 4,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 1.0,
    "min_child_weight": 3.0,
    "reg_lambda": 5.0,
}
"""XGBoost settings of the ratio model: shallow and regularised, since a few hundred pairs
of one machine's first networks are all it learns from."""
REFERENCE_PREFIX = "reference:"
"""How translated networks are named among the measured ones (their folds are their own)."""
_KINDS = tuple(LayerKind)


class TransferError(PrmodelError, ValueError):
    """A reference data set that cannot be used to start this machine (says why)."""


@dataclass(frozen=True)
class ReferenceProfiles:
    """The rows of one machine's network-profile data set, used as a reference."""

    path: Path
    target_id: str
    fingerprint_hash: str
    rows: pd.DataFrame

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.rows["network"]))


@dataclass(frozen=True, eq=False)
class Translation:
    """How kernel times of the reference map to this machine, learned from paired kernels.

    ``error_pct``: the translated times of paired kernels against their measured ones,
    each predicted by a ratio model fitted without its network (sum of absolute errors over
    the sum of times, percent; None with fewer than two paired networks).
    """

    reference_id: str
    reference_file: str
    pairs: int
    paired_networks: tuple[str, ...]
    median_ratio: float
    error_pct: float | None
    regressor: Any

    def ratio(
        self, layers: Sequence[LayerConfig], reference_us: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """This machine's time over the reference's, for each kernel."""
        if not len(layers):
            return np.empty(0)
        with thread_limit(1):
            log_ratio = self.regressor.predict(_features(layers, reference_us))
        return np.exp(np.asarray(log_ratio, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference_id,
            "file": self.reference_file,
            "pairs": self.pairs,
            "paired_networks": len(self.paired_networks),
            "median_ratio": self.median_ratio,
            "error_pct": self.error_pct,
        }


def load_reference(path: Path) -> ReferenceProfiles:
    """The reference rows in the network-profile file at ``path``: those of the machine
    (target, fingerprint and protocol) with the most networks in it. Networks that are (or
    build the same network as) held-out ones are left out, so held-out errors stay those of
    networks never learned.

    Args:
        path: A network-profile Parquet (``sweeps/network-profiles/<target_id>.parquet``).

    Raises:
        TransferError: no such file, or no profiled network in it.
        ProfileSetError: an unreadable file.
    """
    if not path.is_file():
        raise TransferError(f"there is no reference network-profile file at {path}")
    frame = read_profiles(path)
    frame = frame[~frame["network"].isin(_held_out_networks(frame))]
    if frame.empty:
        raise TransferError(f"the reference file {path} holds no profiled networks")
    keys = ["target_id", "fingerprint_hash", "protocol_hash"]
    counts = frame.groupby(keys)["network"].nunique().sort_values(ascending=False)
    target_id, fingerprint, protocol = counts.index[0]
    chosen = (
        (frame["target_id"] == target_id)
        & (frame["fingerprint_hash"] == fingerprint)
        & (frame["protocol_hash"] == protocol)
    )
    return ReferenceProfiles(
        path=path,
        target_id=str(target_id),
        fingerprint_hash=str(fingerprint),
        rows=frame[chosen].reset_index(drop=True),
    )


def _held_out_networks(frame: pd.DataFrame) -> list[str]:
    """The networks of ``frame`` that bear a held-out network's name or build the same
    network (builder and options, as :func:`prmodel.zoo.learning.is_held_out` judges
    the networks ``prmodel learn`` is given)."""
    found = []
    built = frame[["network", "builder", "network_options"]].drop_duplicates("network")
    for name, builder, options in built.itertuples(index=False):
        make = ARCHITECTURES.get(str(builder))
        if make is None:  # a lab's own builder: judged by its name alone
            held_out = is_held_out_name(str(name))
        else:
            held_out = is_held_out(NetworkSpec(str(name), make, json.loads(options)))
        if held_out:
            found.append(str(name))
    return found


def fit_translation(
    reference: ReferenceProfiles, measured: pd.DataFrame, *, seed: int = 0
) -> Translation:
    """Learn how the reference's kernel times map to this machine's from the kernels both
    measured (same network, builder settings, node and op).

    Args:
        reference: The reference rows.
        measured: This machine's network-profile rows (one target, machine and protocol).
        seed: Seed of the regressor and the folds.

    Raises:
        TransferError: fewer than :data:`MIN_PAIRS` paired kernels with a layer.
    """
    pairs = _pairs(reference.rows, measured)
    if len(pairs) < MIN_PAIRS:
        raise TransferError(
            f"only {len(pairs)} kernels were measured both here and in the reference "
            f"{reference.target_id} ({reference.path}); a translation needs {MIN_PAIRS}: "
            "measure some of the reference's networks here first"
        )
    layers = kernel_layers(pairs)
    reference_us = pairs["reference_us"].to_numpy(dtype=np.float64)
    target = np.log(pairs["here_us"].to_numpy(dtype=np.float64) / reference_us)
    features = _features(layers, reference_us)  # type: ignore[arg-type]
    networks = list(pairs["network"])
    error = _out_of_fold_error(features, target, reference_us, networks, seed)
    regressor = build_regressor("xgboost", TRANSLATION_PARAMS, seed=seed, n_jobs=1)
    with thread_limit(1):
        regressor.fit(features, target)
    return Translation(
        reference_id=reference.target_id,
        reference_file=str(reference.path),
        pairs=len(pairs),
        paired_networks=tuple(dict.fromkeys(networks)),
        median_ratio=float(np.exp(np.median(target))),
        error_pct=error,
        regressor=regressor,
    )


@dataclass(frozen=True, eq=False)
class TranslatedKernels:
    """The reference's kernels with a layer, their times translated to this machine."""

    layers: list[LayerConfig]
    times_us: npt.NDArray[np.float64]
    networks: list[str]
    """Each kernel's network, prefixed with :data:`REFERENCE_PREFIX`."""
    translation: Translation


def translated_kernels(
    reference: ReferenceProfiles, translation: Translation, *, skip: Sequence[str] = ()
) -> TranslatedKernels:
    """The reference's kernels with a layer, their times translated to this machine.

    Args:
        reference: The reference rows.
        translation: From :func:`fit_translation`.
        skip: Networks measured here (their measured kernels are used instead).

    Returns:
        The layers, their translated in-network times (µs) and their networks.
    """
    rows = reference.rows[~reference.rows["network"].isin(list(skip))].reset_index(drop=True)
    times = in_network_times(rows)
    layers = kernel_layers(rows)
    usable = [
        i
        for i, layer in enumerate(layers)
        if layer is not None and np.isfinite(times[i]) and times[i] > 0
    ]
    picked: list[LayerConfig] = [layers[i] for i in usable]  # type: ignore[misc]
    reference_us = times[usable]
    translated = reference_us * translation.ratio(picked, reference_us)
    names = [f"{REFERENCE_PREFIX}{rows['network'].iat[i]}" for i in usable]
    return TranslatedKernels(picked, translated, names, translation)


def _pairs(reference: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Kernels with a layer timed both here and in the reference: this machine's rows with
    ``here_us`` and ``reference_us`` (in-network times)."""
    here = measured.reset_index(drop=True)
    here = here.assign(here_us=in_network_times(here))
    there = reference.reset_index(drop=True)
    there = there.assign(reference_us=in_network_times(there))
    keys = ["network", "network_hash", "node", "op"]
    there = there.drop_duplicates(keys, keep=False)[[*keys, "reference_us"]]
    here = here[here["kind"].notna()].drop_duplicates(keys, keep=False)
    joined = here.merge(there, on=keys, how="inner")
    good = (
        np.isfinite(joined["here_us"])
        & (joined["here_us"] > 0)
        & np.isfinite(joined["reference_us"])
        & (joined["reference_us"] > 0)
    )
    return joined[good].reset_index(drop=True)


def _features(
    layers: Sequence[LayerConfig], reference_us: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """What the ratio depends on: the kind, the kernel's size and its time on the reference."""
    return np.array(
        [
            [
                _KINDS.index(layer.kind),
                np.log(max(float(time), 1e-3)),
                np.log1p(layer.macs),
                np.log1p(layer.activation_bytes),
                np.log1p(layer.weight_bytes),
                float(layer.kind is LayerKind.CONV and layer.groups == layer.channels > 1),
                np.log(max(layer.batch, 1)),
            ]
            for layer, time in zip(layers, reference_us, strict=True)
        ],
        dtype=np.float64,
    )


def _out_of_fold_error(
    features: npt.NDArray[np.float64],
    log_ratio: npt.NDArray[np.float64],
    reference_us: npt.NDArray[np.float64],
    networks: Sequence[str],
    seed: int,
) -> float | None:
    """Time-weighted error of translated times, each pair predicted without its network."""
    fold_of = network_folds(networks, TRANSLATION_FOLDS, seed=seed)
    if len(set(fold_of.values())) < 2:
        return None
    folds = np.array([fold_of[name] for name in networks])
    predicted = np.empty(len(log_ratio))
    for fold in np.unique(folds):
        inside = folds == fold
        regressor = build_regressor("xgboost", TRANSLATION_PARAMS, seed=seed, n_jobs=1)
        with thread_limit(1):
            regressor.fit(features[~inside], log_ratio[~inside])
            predicted[inside] = regressor.predict(features[inside])
    here = reference_us * np.exp(log_ratio)
    guess = reference_us * np.exp(predicted)
    return float(100 * np.abs(guess - here).sum() / here.sum())


__all__ = [
    "MIN_PAIRS",
    "REFERENCE_PREFIX",
    "TRANSLATION_PARAMS",
    "ReferenceProfiles",
    "TransferError",
    "TranslatedKernels",
    "Translation",
    "fit_translation",
    "load_reference",
    "translated_kernels",
]
