"""The latency model of one layer kind, used like a scikit-learn estimator, and its card.

A :class:`LatencyModel` predicts the kernel time (``latency_us``) of one layer kind on one
target. It is fitted on a log scale, either of the latency itself (``log``) or of the
latency relative to the hardware's full-efficiency work estimate (``log-relative``:
``log(latency) - log(gemm_work)``, an ANNETTE-style mixed model in which the trees learn
the efficiency, see :mod:`prmodel.train.features`). A model trained on Performance
Representatives predicts each layer's plateau representative (``plateau_mapping``): every
layer of a plateau has the representative's latency, and the representatives are all the
model has seen.

A :class:`ModelCard` is everything needed to trust, reproduce and review a saved model;
writing, reading and checking the files is :mod:`prmodel.train.artifacts`. This module
never imports mlflow, optuna or xgboost: the estimator loads models through it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.profiles import HardwareProfile
from prmodel.train.features import FeatureSpec
from prmodel.train.regressors import (
    DEFAULT_PARAMS,
    REGRESSORS,
    ModelError,
    build_regressor,
    thread_limit,
    unknown_regressor,
)
from prmodel.train.treeforest import TreeForest

CARD_FORMAT = 1

PREDICTION_HEADROOM = 10.0
"""Predictions are kept within the training latency range widened by this factor."""

TARGET_TRANSFORMS: tuple[str, ...] = ("log", "log-relative")
"""What the regressor learns: log latency, or log latency minus log of the work estimate."""


class ExtrapolationWarning(UserWarning):
    """A prediction for a layer outside the parameter ranges the model was trained on."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to trust, reproduce and review one saved model.

    The feature schema and the step structure it needs, the parameter ranges seen in
    training, metrics, library versions, target id and fingerprint, the sha256 of the
    model file, the regressor and its hyper-parameters, a digest of the training rows and
    the creation time. Saved as ``model_card.json`` beside the model file.
    """

    kind: str
    target_id: str
    fingerprint_hash: str
    regressor: str
    hyperparameters: Mapping[str, Any]
    feature_schema: tuple[str, ...]
    features: Mapping[str, Any]
    parameter_ranges: Mapping[str, tuple[float, float]]
    feature_ranges: Mapping[str, tuple[float, float]]
    latency_range_us: tuple[float, float]
    model_file: str
    model_sha256: str
    training_rows: int
    training_digest: str
    seed: int
    created: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    library_versions: Mapping[str, str] = field(default_factory=dict)
    representatives_sha256: str | None = None
    target_transform: str = "log"
    feature_transform: str = "log1p"
    plateau_mapping: bool = False
    training_set: Mapping[str, Any] = field(default_factory=dict)
    """What the model was trained on, where a workflow says so (name, file, networks, ...)."""
    format_version: int = CARD_FORMAT

    def to_json(self) -> str:
        """The card as indented JSON (the content of ``model_card.json``)."""
        data = asdict(self)
        data["feature_schema"] = list(self.feature_schema)
        for name in ("parameter_ranges", "feature_ranges"):
            data[name] = {k: list(v) for k, v in getattr(self, name).items()}
        return json.dumps(data, indent=2, sort_keys=True, default=_json_default)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Parse a ``model_card.json``.

        Raises:
            ModelError: missing, unreadable, or not a model card of this format.
        """
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"there is no model card at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"model card {path} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format_version") != CARD_FORMAT:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise ModelError(
                f"model card {path} has format version {version!r}; this prmodel reads "
                f"version {CARD_FORMAT}, so retrain the model"
            )
        try:
            data["feature_schema"] = tuple(data["feature_schema"])
            for name in ("parameter_ranges", "feature_ranges"):
                data[name] = {k: (float(lo), float(hi)) for k, (lo, hi) in data[name].items()}
            low, high = data["latency_range_us"]
            data["latency_range_us"] = (float(low), float(high))
            _check_card_types(data)
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card {path} is incomplete or malformed ({exc})") from None


_CARD_MAPPINGS = (
    "hyperparameters",
    "features",
    "metrics",
    "fingerprint",
    "library_versions",
    "training_set",
)
_CARD_TEXTS = (
    "kind",
    "target_id",
    "fingerprint_hash",
    "regressor",
    "model_file",
    "model_sha256",
    "training_digest",
    "created",
)


def _check_card_types(data: Mapping[str, Any]) -> None:
    """Raise TypeError naming the first card field of the wrong JSON type."""
    for name in _CARD_MAPPINGS:
        if name in data and not isinstance(data[name], dict):
            raise TypeError(f"field {name!r} must be an object, got {data[name]!r}")
    for name in _CARD_TEXTS:
        if name in data and not isinstance(data[name], str):
            raise TypeError(f"field {name!r} must be a string, got {data[name]!r}")
    for name in ("training_rows", "seed"):
        if name in data and (isinstance(data[name], bool) or not isinstance(data[name], int)):
            raise TypeError(f"field {name!r} must be an integer, got {data[name]!r}")
    for key, value in data.get("metrics", {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"metric {key!r} must be a number, got {value!r}")


class LatencyModel:
    """A regressor of one layer kind's kernel latency, used like a scikit-learn estimator.

    ``__init__`` only stores the settings; :meth:`fit` learns ``feature_spec_``,
    ``estimator_``, ``feature_ranges_``, ``latency_range_us_``, ``n_train_``,
    ``plateau_mapping_`` and ``target_transform_`` and returns the model; :meth:`predict`
    returns microseconds. ``card_`` is the :class:`ModelCard` the model was last saved
    with or loaded from (None after a fit); :func:`prmodel.train.artifacts.save_model` and
    :func:`~prmodel.train.artifacts.load_model` write and read the safe artifacts.

    Features are clipped to the range seen in training before the regressor sees them, and
    predictions to ``PREDICTION_HEADROOM`` times the training latency range. Tree ensembles
    and k-nearest neighbours cannot extrapolate anyway; for ridge it stops a combination of
    features never seen in training (say, every PR sample sat on a plateau end, so raw and
    rounded dimensions were equal) from blowing a prediction up by orders of magnitude.
    Inputs beyond the training ranges are reported with :class:`ExtrapolationWarning`.

    Args:
        kind: The layer kind the model is for.
        regressor: One of :data:`~prmodel.train.regressors.REGRESSORS`.
        params: Hyper-parameters of the regressor (defaults:
            :data:`~prmodel.train.regressors.DEFAULT_PARAMS`).
        representatives: The target's PR set, for the architecture-aware features (and the
            hardware profile recorded in it, for the GEMM features).
        seed: Random seed of the regressor, so a fit can be repeated exactly.
        n_jobs: Threads the regressor may use (fixed, so results do not depend on the host).
        plateau_mapping: Fit and predict at each layer's plateau representative (None: on
            when ``representatives`` are given). Right for a model trained on PR samples;
            turn it off for samples drawn inside plateaus on a target whose staircases are
            not exact.
        profile: The hardware profile for the GEMM and layout features where no
            ``representatives`` are given (theirs is used where they are).
        target_transform: One of :data:`TARGET_TRANSFORMS` (None: ``log-relative`` where
            the features have a work estimate, else ``log``).
    """

    def __init__(
        self,
        kind: LayerKind | str,
        *,
        regressor: str = "xgboost",
        params: Mapping[str, Any] | None = None,
        representatives: RepresentativeSet | None = None,
        seed: int = 0,
        n_jobs: int = 1,
        plateau_mapping: bool | None = None,
        target_transform: str | None = None,
        profile: HardwareProfile | None = None,
    ) -> None:
        self.kind = kind
        self.regressor = regressor
        self.params = params
        self.representatives = representatives
        self.seed = seed
        self.n_jobs = n_jobs
        self.plateau_mapping = plateau_mapping
        self.target_transform = target_transform
        self.profile = profile

    feature_spec_: FeatureSpec
    estimator_: Any
    feature_ranges_: dict[str, tuple[float, float]]
    latency_range_us_: tuple[float, float]
    n_train_: int
    plateau_mapping_: bool
    target_transform_: str
    card_: ModelCard | None

    # -- fitting and prediction ---------------------------------------------------------------
    def fit(
        self, layers: Sequence[LayerConfig], latency_us: Sequence[float] | npt.NDArray[np.float64]
    ) -> LatencyModel:
        """Fit on measured layers; returns self.

        Raises:
            ModelError: unknown regressor, no rows, lengths differ, a layer of another kind
                or a latency that is not a positive number.
        """
        kind = parse_kind(self.kind)
        measured = _checked_latencies(latency_us, len(layers))
        spec = FeatureSpec.for_kind(kind, self.representatives, profile=self.profile)
        _check_kinds(layers, kind)
        mapping = self.representatives is not None and bool(spec.steps)
        if self.plateau_mapping is not None:
            mapping = self.plateau_mapping
        transform = chosen_transform(self.target_transform, spec)
        raw = spec.transform([spec.plateau_of(x) for x in layers] if mapping else layers)
        estimator = build_regressor(
            self.regressor, self.hyperparameters, seed=self.seed, n_jobs=self.n_jobs
        )
        with thread_limit(self.n_jobs):
            estimator.fit(np.log1p(raw), np.log(measured) - _log_work(spec, raw, transform))
        self.feature_spec_ = spec
        self.estimator_ = estimator
        self.feature_ranges_ = _ranges(spec, raw)
        self.latency_range_us_ = (float(measured.min()), float(measured.max()))
        self.n_train_ = len(layers)
        self.plateau_mapping_ = mapping
        self.target_transform_ = transform
        self.card_ = None
        return self

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The regressor's defaults overridden by ``params``."""
        if self.regressor not in REGRESSORS:
            raise unknown_regressor(self.regressor)
        return {**DEFAULT_PARAMS[self.regressor], **dict(self.params or {})}

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        """Predicted kernel latency of each layer in microseconds (vectorised).

        Warns with :class:`ExtrapolationWarning` for every parameter outside its training
        range, naming the parameter and the value.

        Raises:
            ModelError: the model is not fitted, or a layer is of another kind.
        """
        spec = self.fitted_spec()
        if len(layers) == 0:
            return np.empty(0, dtype=np.float64)
        _check_kinds(layers, spec.kind)
        if self.plateau_mapping_:
            layers = [spec.plateau_of(x) for x in layers]
        raw = spec.transform(layers)
        _warn_outside_ranges(spec, raw, self.parameter_ranges)
        lows, highs = np.array([self.feature_ranges_[name] for name in spec.names]).T
        clipped = np.clip(raw, lows, highs)
        log_pred = self._predict_log(np.log1p(clipped))
        # The work estimate is exact arithmetic, so it is taken unclipped: only the learned
        # efficiency is kept within what training saw.
        log_pred += _log_work(spec, raw, self.target_transform_)
        low, high = self.latency_range_us_
        return np.clip(np.exp(log_pred), low / PREDICTION_HEADROOM, high * PREDICTION_HEADROOM)

    def _predict_log(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if isinstance(self.estimator_, TreeForest):  # single-threaded numpy: no pools to limit
            return np.asarray(self.estimator_.predict(features), dtype=np.float64)
        with thread_limit(self.n_jobs):
            return np.asarray(self.estimator_.predict(features), dtype=np.float64)

    @property
    def parameter_ranges(self) -> dict[str, tuple[float, float]]:
        """The training range of every raw parameter and fused flag (a fitted model's)."""
        spec = self.fitted_spec()
        return {k: v for k, v in self.feature_ranges_.items() if k in spec.raw_parameters}

    def fitted_spec(self) -> FeatureSpec:
        """The feature spec the model was fitted (or loaded) with.

        Raises:
            ModelError: the model is not fitted.
        """
        spec: FeatureSpec | None = getattr(self, "feature_spec_", None)
        if spec is None:
            raise ModelError(f"the {self.kind} latency model is not fitted; call fit() first")
        return spec

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        *,
        feature_spec: FeatureSpec,
        estimator: Any,
        feature_ranges: Mapping[str, tuple[float, float]],
    ) -> LatencyModel:
        """A fitted model rebuilt from a saved card and its regressor, without refitting.

        :func:`prmodel.train.artifacts.load_model` calls this after checking the files;
        ``feature_spec`` is the one the card describes.

        Raises:
            ModelError: the card's target transform does not fit its features.
        """
        transform = chosen_transform(card.target_transform, feature_spec)
        model = cls(
            feature_spec.kind,
            regressor=card.regressor,
            params=card.hyperparameters,
            seed=card.seed,
            plateau_mapping=card.plateau_mapping,
            target_transform=transform,
        )
        model.plateau_mapping_ = card.plateau_mapping
        model.target_transform_ = transform
        model.feature_spec_ = feature_spec
        model.estimator_ = estimator
        model.feature_ranges_ = dict(feature_ranges)
        model.latency_range_us_ = card.latency_range_us
        model.n_train_ = card.training_rows
        model.card_ = card
        return model

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "feature_spec_") else "not fitted"
        return f"LatencyModel(kind={self.kind!s}, regressor={self.regressor!r}, {fitted})"


def chosen_transform(asked: str | None, spec: FeatureSpec) -> str:
    """The target transform a model with features ``spec`` uses when ``asked`` for one.

    Raises:
        ModelError: an unknown transform, or ``log-relative`` without a work estimate.
    """
    if asked is None:
        return "log-relative" if spec.work_feature else "log"
    if asked not in TARGET_TRANSFORMS:
        raise ModelError(
            f"unknown target transform {asked!r} (choose from {', '.join(TARGET_TRANSFORMS)})"
        )
    if asked == "log-relative" and not spec.work_feature:
        raise ModelError(
            f"target transform 'log-relative' needs a work estimate, which the {spec.kind.value} "
            "features have only with a hardware profile that knows the GEMM blocks"
        )
    return asked


def _log_work(
    spec: FeatureSpec, raw: npt.NDArray[np.float64], transform: str
) -> npt.NDArray[np.float64] | float:
    """The log work estimate to add back to the regressor's output (0 for ``log``)."""
    if transform != "log-relative" or spec.work_feature is None:
        return 0.0
    work = raw[:, spec.names.index(spec.work_feature)]
    return np.log(np.maximum(work, 1.0))


def _check_kinds(layers: Sequence[LayerConfig], kind: LayerKind) -> None:
    for layer in layers:
        if layer.kind is not kind:
            raise ModelError(
                f"the {kind.value} latency model cannot take the {layer.kind.value} layer "
                f"{layer.label!r}"
            )


def _checked_latencies(
    latency_us: Sequence[float] | npt.NDArray[np.float64], n_layers: int
) -> npt.NDArray[np.float64]:
    y = np.asarray(latency_us, dtype=np.float64).ravel()
    if len(y) != n_layers:
        raise ModelError(f"{n_layers} layers but {len(y)} latencies to fit")
    if n_layers == 0:
        raise ModelError("there are no measured layers to fit")
    bad = ~np.isfinite(y) | (y <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelError(f"latency at row {i} is {y[i]}; latencies must be positive numbers")
    return y


# -- parameter ranges -------------------------------------------------------------------------
def _ranges(spec: FeatureSpec, raw: npt.NDArray[np.float64]) -> dict[str, tuple[float, float]]:
    return {
        name: (float(raw[:, i].min()), float(raw[:, i].max())) for i, name in enumerate(spec.names)
    }


def _warn_outside_ranges(
    spec: FeatureSpec,
    raw: npt.NDArray[np.float64],
    ranges: Mapping[str, tuple[float, float]],
) -> None:
    for i, name in enumerate(spec.names):
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        outside = (raw[:, i] < lo) | (raw[:, i] > hi)
        if outside.any():
            value = raw[int(np.argmax(outside)), i]
            count = int(outside.sum())
            warnings.warn(
                f"{spec.kind.value} {name}={_number(value)} is outside the training range "
                f"{_number(lo)}..{_number(hi)} ({count} of {len(raw)} layers); the latency "
                "is extrapolated",
                ExtrapolationWarning,
                stacklevel=3,
            )


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:g}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = [
    "CARD_FORMAT",
    "PREDICTION_HEADROOM",
    "TARGET_TRANSFORMS",
    "ExtrapolationWarning",
    "LatencyModel",
    "ModelCard",
    "ModelError",
    "chosen_transform",
]
