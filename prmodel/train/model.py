"""Trained latency models: the estimator-like :class:`LatencyModel` and its safe artifacts.

A model predicts the kernel time (``latency_us``) of one layer kind on one target. It is
fitted on a log scale, either of the latency itself (``log``) or of the latency relative to
the hardware's full-efficiency work estimate (``log-relative``: ``log(latency) -
log(gemm_work)``, an ANNETTE-style mixed model in which the trees learn the efficiency, see
:mod:`prmodel.train.features`). A model trained on Performance Representatives predicts each
layer's plateau representative (``plateau_mapping``): every layer of a plateau has the
representative's latency, and the representatives are all the model has seen. It is saved
under ``trained_models/<target_id>/<kind>/`` as

- ``model.ubj`` (XGBoost's own binary JSON format) or ``model.skops`` (scikit-learn models
  through skops, loaded only with an allow-list of types), never pickle;
- ``model_card.json``: the feature schema and the step structure it needs, the parameter
  ranges seen in training, metrics, library versions, target id and fingerprint, the
  sha256 of the model file, the regressor and its hyper-parameters, a digest of the
  training rows and the creation time.

Loading checks the card against the file and the code and refuses anything that does not
match with one sentence (:class:`ModelError`). This module never imports mlflow or optuna:
the estimator loads models through it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.select.representatives import RepresentativeSet
from prmodel.train.features import FeatureSpec
from prmodel.workspace import Workspace

CARD_NAME = "model_card.json"
CARD_FORMAT = 1

REGRESSORS: tuple[str, ...] = (
    "xgboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "knn",
    "ridge",
)
"""Every regressor a :class:`LatencyModel` can use; ``xgboost`` is the default."""

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "n_estimators": 600,
        "max_depth": 6,
        "learning_rate": 0.05,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "min_child_weight": 1.0,
        "reg_lambda": 1.0,
    },
    "random_forest": {"n_estimators": 300, "max_features": 0.6, "min_samples_leaf": 1},
    "extra_trees": {"n_estimators": 300, "max_features": 0.8, "min_samples_leaf": 1},
    "hist_gradient_boosting": {
        "max_iter": 500,
        "learning_rate": 0.05,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 5,
        "l2_regularization": 1e-3,
    },
    "knn": {"n_neighbors": 5, "weights": "distance", "p": 2},
    "ridge": {"alpha": 1.0},
}
"""Hyper-parameters used where none are given (Optuna searches around these)."""

PREDICTION_HEADROOM = 10.0
"""Predictions are kept within the training latency range widened by this factor."""

TARGET_TRANSFORMS: tuple[str, ...] = ("log", "log-relative")
"""What the regressor learns: log latency, or log latency minus log of the work estimate."""

_MODEL_FILES = ("model.ubj", "model.skops")

# skops refuses to load any type it does not know to be safe; these are the only modules a
# prmodel scikit-learn model is built from, so anything else in a file means tampering.
_SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


class ModelError(PrmodelError, ValueError):
    """A model that cannot be trained, saved or loaded as asked (one sentence says why)."""


class ExtrapolationWarning(UserWarning):
    """A prediction for a layer outside the parameter ranges the model was trained on."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to trust, reproduce and review one saved model."""

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
        except (OSError, json.JSONDecodeError) as exc:
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
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card {path} is incomplete or malformed ({exc})") from None


class LatencyModel:
    """A regressor of one layer kind's kernel latency, used like a scikit-learn estimator.

    ``__init__`` only stores the settings; :meth:`fit` learns ``feature_spec_``,
    ``estimator_``, ``feature_ranges_`` and ``n_train_``; :meth:`predict` returns
    microseconds. :meth:`save` and :meth:`load` read and write the safe artifacts.

    Features are clipped to the range seen in training before the regressor sees them, and
    predictions to ``PREDICTION_HEADROOM`` times the training latency range. Tree ensembles
    and k-nearest neighbours cannot extrapolate anyway; for ridge it stops a combination of
    features never seen in training (say, every PR sample sat on a plateau end, so raw and
    rounded dimensions were equal) from blowing a prediction up by orders of magnitude.
    Inputs beyond the training ranges are reported with :class:`ExtrapolationWarning`.

    Args:
        kind: The layer kind the model is for.
        regressor: One of :data:`REGRESSORS`.
        params: Hyper-parameters of the regressor (defaults: :data:`DEFAULT_PARAMS`).
        representatives: The target's PR set, for the architecture-aware features (and the
            hardware profile recorded in it, for the GEMM features).
        seed: Random seed of the regressor, so a fit can be repeated exactly.
        n_jobs: Threads the regressor may use (fixed, so results do not depend on the host).
        plateau_mapping: Fit and predict at each layer's plateau representative (None: on
            when ``representatives`` are given). Right for a model trained on PR samples;
            turn it off for samples drawn inside plateaus on a target whose staircases are
            not exact.
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
    ) -> None:
        self.kind = kind
        self.regressor = regressor
        self.params = params
        self.representatives = representatives
        self.seed = seed
        self.n_jobs = n_jobs
        self.plateau_mapping = plateau_mapping
        self.target_transform = target_transform

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
        spec = FeatureSpec.for_kind(kind, self.representatives)
        _check_kinds(layers, kind)
        mapping = self.representatives is not None and bool(spec.steps)
        if self.plateau_mapping is not None:
            mapping = self.plateau_mapping
        transform = _chosen_transform(self.target_transform, spec)
        raw = spec.transform([spec.plateau_of(x) for x in layers] if mapping else layers)
        estimator = build_regressor(
            self.regressor, self.hyperparameters, seed=self.seed, n_jobs=self.n_jobs
        )
        with _thread_limit(self.n_jobs):
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
            raise ModelError(
                f"unknown regressor {self.regressor!r} (choose from {', '.join(REGRESSORS)})"
            )
        return {**DEFAULT_PARAMS[self.regressor], **dict(self.params or {})}

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        """Predicted kernel latency of each layer in microseconds (vectorised).

        Warns with :class:`ExtrapolationWarning` for every parameter outside its training
        range, naming the parameter and the value.

        Raises:
            ModelError: the model is not fitted, or a layer is of another kind.
        """
        spec = self._fitted_spec()
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
        from prmodel.train.treeforest import TreeForest

        if isinstance(self.estimator_, TreeForest):  # single-threaded numpy: no pools to limit
            return np.asarray(self.estimator_.predict(features), dtype=np.float64)
        with _thread_limit(self.n_jobs):
            return np.asarray(self.estimator_.predict(features), dtype=np.float64)

    @property
    def parameter_ranges(self) -> dict[str, tuple[float, float]]:
        """The training range of every raw parameter and fused flag (a fitted model's)."""
        spec = self._fitted_spec()
        return {k: v for k, v in self.feature_ranges_.items() if k in spec.raw_parameters}

    def _fitted_spec(self) -> FeatureSpec:
        spec: FeatureSpec | None = getattr(self, "feature_spec_", None)
        if spec is None:
            raise ModelError(f"the {self.kind} latency model is not fitted; call fit() first")
        return spec

    # -- artifacts ----------------------------------------------------------------------------
    def save(
        self,
        directory: str | Path,
        *,
        target_id: str,
        fingerprint_hash: str,
        fingerprint: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        training_digest: str = "",
        representatives_sha256: str | None = None,
    ) -> ModelCard:
        """Write the model file and its card into ``directory`` (created; replaced files).

        Returns:
            The card that was written.
        """
        spec = self._fitted_spec()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_file = _write_estimator(self.regressor, self.estimator_, directory)
        for stale in set(_MODEL_FILES) - {model_file.name}:
            # A model of another regressor trained earlier into this folder.
            (directory / stale).unlink(missing_ok=True)
        card = ModelCard(
            kind=spec.kind.value,
            target_id=target_id,
            fingerprint_hash=fingerprint_hash,
            regressor=self.regressor,
            hyperparameters=self.hyperparameters,
            feature_schema=spec.names,
            features=spec.to_dict(),
            parameter_ranges=self.parameter_ranges,
            feature_ranges=self.feature_ranges_,
            latency_range_us=self.latency_range_us_,
            model_file=model_file.name,
            model_sha256=file_sha256(model_file),
            training_rows=self.n_train_,
            training_digest=training_digest,
            seed=self.seed,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            metrics=dict(metrics or {}),
            fingerprint=dict(fingerprint or {}),
            library_versions=library_versions(self.regressor),
            representatives_sha256=representatives_sha256,
            target_transform=self.target_transform_,
            plateau_mapping=self.plateau_mapping_,
        )
        _atomic_write_text(directory / CARD_NAME, card.to_json())
        self.card_ = card
        return card

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        target_id: str | None = None,
        kind: LayerKind | str | None = None,
    ) -> LatencyModel:
        """Load a saved model after checking its card, hash, schema, kind and target.

        Args:
            directory: A ``trained_models/<target_id>/<kind>`` folder.
            target_id: Refuse a model trained for another target.
            kind: Refuse a model of another layer kind.

        Raises:
            ModelError: missing or malformed card, a model file changed since training, a
                feature schema this code does not build, or another kind or target.
        """
        directory = Path(directory)
        card = ModelCard.read(directory / CARD_NAME)
        _check_identity(card, directory, target_id=target_id, kind=kind)
        spec = _checked_spec(card, directory)
        model_path = directory / card.model_file
        _check_hash(card, model_path)
        estimator = _read_estimator(card.regressor, model_path)
        _check_width(estimator, len(spec.names), model_path)
        transform = _checked_transform(card, spec, directory)
        model = cls(
            spec.kind,
            regressor=card.regressor,
            params=card.hyperparameters,
            seed=card.seed,
            plateau_mapping=card.plateau_mapping,
            target_transform=transform,
        )
        model.plateau_mapping_ = card.plateau_mapping
        model.target_transform_ = transform
        model.feature_spec_ = spec
        model.estimator_ = estimator
        model.feature_ranges_ = _checked_ranges(card, spec, directory)
        model.latency_range_us_ = card.latency_range_us
        model.n_train_ = card.training_rows
        model.card_ = card
        return model

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "feature_spec_") else "not fitted"
        return f"LatencyModel(kind={self.kind!s}, regressor={self.regressor!r}, {fitted})"


def load_models(workspace: Workspace, target_id: str) -> dict[LayerKind, LatencyModel]:
    """Every trained model of ``target_id`` in ``workspace``, by layer kind.

    Returns an empty dict where the target has no trained models yet.

    Raises:
        ModelError: a model folder whose model is broken, tampered or mismatched.
    """
    models: dict[LayerKind, LatencyModel] = {}
    for directory in _model_dirs(workspace.models_dir / target_id):
        kind = parse_kind(directory.name)
        models[kind] = LatencyModel.load(directory, target_id=target_id, kind=kind)
    return models


def list_model_cards(
    workspace: Workspace, target_id: str | None = None
) -> list[tuple[Path, ModelCard]]:
    """The cards of every saved model (of one target, or all), with their folders.

    Raises:
        ModelError: a malformed card.
    """
    roots = (
        [workspace.models_dir / target_id]
        if target_id
        else sorted(p for p in workspace.models_dir.glob("*") if p.is_dir())
    )
    return [(d, ModelCard.read(d / CARD_NAME)) for root in roots for d in _model_dirs(root)]


def _model_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / CARD_NAME).is_file())


# -- regressors -------------------------------------------------------------------------------
def build_regressor(name: str, params: Mapping[str, Any], *, seed: int, n_jobs: int) -> Any:
    """A fresh, unfitted regressor ``name`` with ``params``; features arrive log1p-scaled.

    k-nearest neighbours and ridge get a standard scaler in front, since both depend on
    the scale of each feature; the tree ensembles do not.

    Raises:
        ModelError: an unknown regressor or a hyper-parameter it does not take.
    """
    builders = {
        "xgboost": _xgboost,
        "random_forest": _random_forest,
        "extra_trees": _extra_trees,
        "hist_gradient_boosting": _hist_gradient_boosting,
        "knn": _knn,
        "ridge": _ridge,
    }
    if name not in builders:
        raise ModelError(f"unknown regressor {name!r} (choose from {', '.join(REGRESSORS)})")
    try:
        return builders[name](dict(params), seed, n_jobs)
    except TypeError as exc:
        raise ModelError(f"regressor {name!r} does not accept these settings ({exc})") from None


def _xgboost(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(**params, tree_method="hist", n_jobs=n_jobs, random_state=seed, verbosity=0)


def _random_forest(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(**params, random_state=seed, n_jobs=n_jobs)


def _extra_trees(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(**params, random_state=seed, n_jobs=n_jobs)


def _hist_gradient_boosting(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    # No early stopping: it would hold out a random 10 % and make small fits unstable.
    return HistGradientBoostingRegressor(**params, random_state=seed, early_stopping=False)


def _knn(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsRegressor(**params, n_jobs=n_jobs))


def _ridge(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(**params))


@contextmanager
def _thread_limit(n_jobs: int) -> Iterator[None]:
    # Histogram gradient boosting (and BLAS under ridge) use OpenMP with every core by
    # default; on a shared machine that is slower and makes timings depend on neighbours.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(n_jobs, 1)):
        yield


def _write_estimator(regressor: str, estimator: Any, directory: Path) -> Path:
    if regressor == "xgboost":
        path = directory / _MODEL_FILES[0]
        with _temporary_sibling(path) as tmp:
            estimator.save_model(str(tmp))
        return path
    import skops.io

    path = directory / _MODEL_FILES[1]
    with _temporary_sibling(path) as tmp:
        skops.io.dump(estimator, tmp)
    return path


def _read_estimator(regressor: str, path: Path) -> Any:
    if regressor not in REGRESSORS:
        raise ModelError(f"model card in {path.parent} names an unknown regressor {regressor!r}")
    try:
        if regressor == "xgboost":
            return _read_xgboost(path)
        return _read_skops(path)
    except ModelError:
        raise
    except Exception as exc:  # any parse failure of a file that passed the hash check
        raise ModelError(f"model file {path} cannot be read ({type(exc).__name__})") from None


def _read_xgboost(path: Path) -> Any:
    # A numpy evaluator first: importing xgboost (with scipy and scikit-learn) costs more than
    # a whole `prmodel estimate` may take. xgboost reads whatever the evaluator refuses.
    from prmodel.train.treeforest import TreeForest, TreeForestError

    try:
        return TreeForest.load(path)
    except TreeForestError:
        from xgboost import XGBRegressor

        estimator = XGBRegressor()
        estimator.load_model(str(path))
        return estimator


def _read_skops(path: Path) -> Any:
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not t.startswith(_SKOPS_TRUSTED_PREFIXES)]
    if unsafe:
        raise ModelError(f"model file {path} contains types prmodel does not trust: {unsafe[0]}")
    return skops.io.load(path, trusted=untrusted)


# -- checks -----------------------------------------------------------------------------------
def _check_identity(
    card: ModelCard, directory: Path, *, target_id: str | None, kind: LayerKind | str | None
) -> None:
    if kind is not None and card.kind != parse_kind(kind).value:
        raise ModelError(
            f"model in {directory} is a {card.kind} model, not a {parse_kind(kind).value} model"
        )
    if target_id is not None and card.target_id != target_id:
        raise ModelError(
            f"model in {directory} was trained for target {card.target_id!r}, not {target_id!r}"
        )


def _checked_spec(card: ModelCard, directory: Path) -> FeatureSpec:
    try:
        spec = FeatureSpec.from_dict(card.features)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card in {directory} has unusable features ({exc})") from None
    if spec.kind.value != card.kind:
        raise ModelError(f"model card in {directory} mixes {card.kind} and {spec.kind} features")
    if spec.names != tuple(card.feature_schema):
        diff = _first_difference(tuple(card.feature_schema), spec.names)
        raise ModelError(
            f"model in {directory} was trained on a feature schema this prmodel does not "
            f"build ({diff}); retrain it"
        )
    return spec


def _chosen_transform(asked: str | None, spec: FeatureSpec) -> str:
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


def _checked_transform(card: ModelCard, spec: FeatureSpec, directory: Path) -> str:
    try:
        return _chosen_transform(card.target_transform, spec)
    except ModelError as exc:
        raise ModelError(f"model card in {directory}: {exc}") from None


def _log_work(
    spec: FeatureSpec, raw: npt.NDArray[np.float64], transform: str
) -> npt.NDArray[np.float64] | float:
    """The log work estimate to add back to the regressor's output (0 for ``log``)."""
    if transform != "log-relative" or spec.work_feature is None:
        return 0.0
    work = raw[:, spec.names.index(spec.work_feature)]
    return np.log(np.maximum(work, 1.0))


def _checked_ranges(
    card: ModelCard, spec: FeatureSpec, directory: Path
) -> dict[str, tuple[float, float]]:
    if set(card.feature_ranges) != set(spec.names):
        raise ModelError(
            f"model card in {directory} has feature ranges that do not match its schema"
        )
    return dict(card.feature_ranges)


def _first_difference(saved: tuple[str, ...], built: tuple[str, ...]) -> str:
    for i, (a, b) in enumerate(zip(saved, built, strict=False)):
        if a != b:
            return f"feature {i} is {a!r} in the card but {b!r} here"
    return f"{len(saved)} features in the card but {len(built)} here"


def _check_hash(card: ModelCard, path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"model file {path} named by its model card is missing")
    actual = file_sha256(path)
    if actual != card.model_sha256:
        raise ModelError(
            f"model file {path} has sha256 {actual[:12]}… but its card records "
            f"{card.model_sha256[:12]}…, so it was changed after training"
        )


def _check_width(estimator: Any, width: int, path: Path) -> None:
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and int(n_in) != width:
        raise ModelError(f"model file {path} takes {n_in} features but its card lists {width}")


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


# -- files ------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions(regressor: str) -> dict[str, str]:
    """Versions of the libraries a saved model depends on (without importing them)."""
    names = ["prmodel", "numpy", "scikit-learn", "skops"]
    if regressor == "xgboost":
        names = ["prmodel", "numpy", "xgboost"]
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@contextmanager
def _temporary_sibling(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` atomically on success."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    with _temporary_sibling(path) as tmp:
        tmp.write_text(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = [
    "CARD_NAME",
    "DEFAULT_PARAMS",
    "PREDICTION_HEADROOM",
    "REGRESSORS",
    "TARGET_TRANSFORMS",
    "ExtrapolationWarning",
    "LatencyModel",
    "ModelCard",
    "ModelError",
    "build_regressor",
    "file_sha256",
    "library_versions",
    "list_model_cards",
    "load_models",
]
