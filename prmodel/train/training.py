"""Training latency models: one tuned, tested and saved model per layer kind.

:func:`train_models` takes measured rows (a store frame, see :mod:`prmodel.measure.store`), fits one
:class:`~prmodel.train.model.LatencyModel` per layer kind, tunes its hyper-parameters with
Optuna (:func:`prmodel.train.tuning.tune`: k-fold cross-validation minimising MAPE, seeded
TPE, the defaults as the first trial), tests it on held-out rows that were never used for
training and saves it under ``trained_models/<target_id>/<kind>/``. It returns a
:class:`TrainingReport`; logging that report to MLflow is the caller's choice
(:func:`prmodel.train.tracking.log_training`).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.frames import layers_from_frame
from prmodel.metrics import summarize
from prmodel.select.representatives import RepresentativeSet
from prmodel.train.artifacts import file_sha256, save_model
from prmodel.train.model import ExtrapolationWarning, LatencyModel
from prmodel.train.regressors import DEFAULT_PARAMS, ModelError
from prmodel.train.settings import TrainSettings
from prmodel.train.tuning import (
    ProgressCallback,
    TuningResult,
    cross_validate,
    suggest_params,
    tune,
)
from prmodel.workspace import Workspace


class OverlapWarning(UserWarning):
    """Test rows that are also training rows; they are dropped from the test set."""


@dataclass(frozen=True, eq=False)
class KindResult:
    """One trained kind: the model, its figures and the data it was judged on."""

    kind: LayerKind
    regressor: str
    params: dict[str, Any]
    train_rows: int
    training_digest: str
    cv_mape: float | None
    train_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    seconds: float
    model: LatencyModel
    tuning: TuningResult | None = None
    test_layers: tuple[LayerConfig, ...] = ()
    test_measured: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    test_predicted: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    dropped_overlap: int = 0
    extrapolations: tuple[str, ...] = ()
    """The model's extrapolation warnings on the test set (parameters beyond training)."""
    model_dir: Path | None = None
    run_id: str | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """Every figure, flat: ``cv_mape``, ``train_<metric>``, ``test_<metric>``, ``seconds``."""
        flat = {f"train_{k}": v for k, v in self.train_metrics.items()}
        flat |= {f"test_{k}": v for k, v in (self.test_metrics or {}).items()}
        if self.cv_mape is not None:
            flat["cv_mape"] = self.cv_mape
        flat["fit_seconds"] = self.seconds
        return flat

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (no model, no arrays)."""
        return {
            "kind": self.kind.value,
            "regressor": self.regressor,
            "params": self.params,
            "train_rows": self.train_rows,
            "test_rows": len(self.test_layers),
            "dropped_overlap": self.dropped_overlap,
            "extrapolations": list(self.extrapolations),
            "training_digest": self.training_digest,
            "cv_mape": self.cv_mape,
            "train": self.train_metrics,
            "test": self.test_metrics,
            "seconds": self.seconds,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class TrainingReport:
    """What :func:`train_models` did, kind by kind, and with what.

    ``tracking_uri`` and each result's ``run_id`` are set once the report is logged to
    MLflow (:func:`prmodel.train.tracking.log_training`).
    """

    target_id: str
    fingerprint_hash: str
    results: tuple[KindResult, ...]
    tracking_uri: str | None = None
    settings: TrainSettings = field(default_factory=TrainSettings)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    """The target's fingerprint, as given to :func:`train_models`."""
    representatives_path: Path | None = None
    """The PR file the features came from, as given to :func:`train_models`."""
    warnings: tuple[str, ...] = ()
    """What the checks of the inputs had to say, e.g. a PR file of another machine used
    on purpose."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_id": self.target_id,
            "fingerprint_hash": self.fingerprint_hash,
            "tracking_uri": self.tracking_uri,
            "kinds": [r.as_dict() for r in self.results],
            "warnings": list(self.warnings),
        }


# -- data -------------------------------------------------------------------------------------
def training_digest(frame: pd.DataFrame) -> str:
    """sha256 of the rows a model is fitted on: their target, fingerprint, key and latency.

    Independent of row order, so the same measurements always give the same digest.
    """
    lines = sorted(
        f"{t}|{f}|{k}|{float(y)!r}"
        for t, f, k, y in zip(
            frame.get("target_id", pd.Series([""] * len(frame))),
            frame.get("fingerprint_hash", pd.Series([""] * len(frame))),
            frame["layer_key"],
            frame["latency_us"],
            strict=True,
        )
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def usable_rows(frame: pd.DataFrame, *, kind: LayerKind | str) -> pd.DataFrame:
    """The rows of ``kind`` that were measured fine and have a positive latency."""
    kind = parse_kind(kind)
    rows = frame[frame["kind"] == kind.value]
    if "status" in rows.columns:
        rows = rows[rows["status"] == "ok"]
    latency = pd.to_numeric(rows["latency_us"], errors="coerce")
    rows = rows[latency.notna() & (latency > 0)]
    return rows.drop_duplicates("layer_key").reset_index(drop=True)


def drop_overlap(test: pd.DataFrame, train: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``test`` without the layers that are also in ``train``, and how many were dropped.

    Warns with :class:`OverlapWarning` when it drops any: metrics on training points would
    flatter the model.
    """
    overlap = test["layer_key"].isin(set(train["layer_key"]))
    dropped = int(overlap.sum())
    if dropped:
        kinds = ", ".join(sorted(set(test.loc[overlap, "kind"])))
        warnings.warn(
            f"{dropped} of {len(test)} {kinds} test layers are also training layers; they "
            "were dropped from the test set",
            OverlapWarning,
            stacklevel=2,
        )
    return test[~overlap].reset_index(drop=True), dropped


# -- training ---------------------------------------------------------------------------------
def train_kind(
    train: pd.DataFrame,
    *,
    kind: LayerKind | str,
    settings: TrainSettings | None = None,
    test: pd.DataFrame | None = None,
    representatives: RepresentativeSet | None = None,
    on_trial: ProgressCallback | None = None,
) -> KindResult:
    """Tune, fit and test the model of one kind.

    Args:
        train: Measured rows (store frame columns); rows of other kinds, failed rows and
            duplicates are ignored.
        kind: The layer kind.
        settings: Regressor, trials, folds and seed (defaults if None).
        test: Held-out measured rows; rows that are also training rows are dropped.
        representatives: The target's PR set, for the architecture-aware features.
        on_trial: Progress callback after each Optuna trial.

    Raises:
        ModelError: fewer training rows than cross-validation folds.
    """
    kind = parse_kind(kind)
    settings = settings or TrainSettings()
    started = time.perf_counter()
    rows = usable_rows(train, kind=kind)
    if len(rows) < settings.folds:
        raise ModelError(
            f"only {len(rows)} usable {kind.value} training rows; at least {settings.folds} "
            "(the number of cross-validation folds) are needed"
        )
    layers = layers_from_frame(rows)
    latency = rows["latency_us"].to_numpy(dtype=np.float64)
    tuning = None
    params = dict(DEFAULT_PARAMS[settings.regressor])
    if settings.trials > 0:
        tuning = tune(
            layers,
            latency,
            kind=kind,
            settings=settings,
            representatives=representatives,
            on_trial=on_trial,
        )
        params = tuning.best_params
    model = LatencyModel(
        kind,
        regressor=settings.regressor,
        params=params,
        representatives=representatives,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        plateau_mapping=settings.plateau_mapping,
        target_transform=settings.target_transform,
    ).fit(layers, latency)
    train_metrics = summarize(latency, model.predict(layers))
    tested = _test(model, rows, test, kind)
    return KindResult(
        kind=kind,
        regressor=settings.regressor,
        params=params,
        train_rows=len(rows),
        training_digest=training_digest(rows),
        cv_mape=tuning.cv_mape if tuning else None,
        train_metrics=train_metrics,
        test_metrics=tested.metrics,
        seconds=time.perf_counter() - started,
        model=model,
        tuning=tuning,
        test_layers=tuple(tested.layers),
        test_measured=tested.measured,
        test_predicted=tested.predicted,
        dropped_overlap=tested.dropped,
        extrapolations=tested.extrapolations,
    )


@dataclass(frozen=True, eq=False)
class _Tested:
    layers: list[LayerConfig]
    measured: npt.NDArray[np.float64]
    predicted: npt.NDArray[np.float64]
    metrics: dict[str, float] | None
    dropped: int
    extrapolations: tuple[str, ...] = ()


def _test(
    model: LatencyModel, train: pd.DataFrame, test: pd.DataFrame | None, kind: LayerKind
) -> _Tested:
    empty = np.empty(0, dtype=np.float64)
    if test is None:
        return _Tested([], empty, empty, None, 0)
    rows, dropped = drop_overlap(usable_rows(test, kind=kind), train)
    if rows.empty:
        return _Tested([], empty, empty, None, dropped)
    layers = layers_from_frame(rows)
    measured = rows["latency_us"].to_numpy(dtype=np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtrapolationWarning)
        predicted = model.predict(layers)
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning))
    metrics = summarize(measured, predicted)
    return _Tested(layers, measured, predicted, metrics, dropped, notes)


def train_models(
    frame: pd.DataFrame,
    *,
    target_id: str,
    fingerprint_hash: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    kinds: Sequence[LayerKind | str] | None = None,
    settings: TrainSettings | None = None,
    test_frame: pd.DataFrame | None = None,
    representatives: RepresentativeSet | None = None,
    representatives_path: Path | None = None,
    workspace: Workspace | None = None,
    progress: bool = True,
) -> TrainingReport:
    """Train, test and save one model per layer kind of ``target_id``.

    The report can then be logged to MLflow with :func:`prmodel.train.tracking.log_training`.

    Args:
        frame: Measured training rows (store frame columns).
        target_id: The target the rows were measured on (other targets' rows are ignored).
        fingerprint_hash: Only rows of this exact hardware/software (needed where ``frame``
            mixes several).
        fingerprint: The target's fingerprint, for the model card (and MLflow).
        kinds: Kinds to train (default: every kind in ``frame``).
        settings: Regressor, Optuna trials, folds, seed.
        test_frame: Held-out measured rows (random configurations, never training rows).
        representatives: The target's PR set (architecture-aware features).
        representatives_path: The file it came from (hashed into the card, logged to MLflow).
        workspace: Save models under its ``trained_models/``; without it nothing is written.
        progress: Show a progress bar per kind on stderr.

    Returns:
        The report: one :class:`KindResult` per kind, with the settings, fingerprint and PR
        file it was trained with.

    Raises:
        ModelError: no rows for the target, mixed fingerprints, too few rows of a kind.
    """
    settings = settings or TrainSettings()
    rows, digest = _target_rows(frame, target_id, fingerprint_hash)
    test_rows = None if test_frame is None else _test_rows(test_frame, target_id, digest)
    chosen = [parse_kind(k) for k in kinds] if kinds else _kinds_in(rows)
    pr_sha = file_sha256(representatives_path) if representatives_path else None
    results = []
    for kind in chosen:
        with _progress(kind, settings, enabled=progress) as on_trial:
            result = train_kind(
                rows,
                kind=kind,
                settings=settings,
                test=test_rows,
                representatives=representatives,
                on_trial=on_trial,
            )
        if workspace is not None:
            result = _save(result, workspace, target_id, digest, fingerprint, pr_sha)
        results.append(result)
    return TrainingReport(
        target_id,
        digest,
        tuple(results),
        settings=settings,
        fingerprint=dict(fingerprint or {}),
        representatives_path=representatives_path,
    )


def _target_rows(
    frame: pd.DataFrame, target_id: str, fingerprint_hash: str | None
) -> tuple[pd.DataFrame, str]:
    rows = frame
    if "target_id" in rows.columns:
        rows = rows[rows["target_id"] == target_id]
    if fingerprint_hash is not None and "fingerprint_hash" in rows.columns:
        rows = rows[rows["fingerprint_hash"] == fingerprint_hash]
    if rows.empty:
        raise ModelError(f"there are no measured rows of target {target_id!r} to train on")
    digests = sorted(set(rows["fingerprint_hash"])) if "fingerprint_hash" in rows else [""]
    if len(digests) > 1:
        raise ModelError(
            f"the rows of target {target_id!r} come from {len(digests)} hardware/software "
            f"fingerprints ({', '.join(digests)}); choose one with fingerprint_hash"
        )
    return rows, fingerprint_hash or str(digests[0])


def _test_rows(frame: pd.DataFrame, target_id: str, fingerprint_hash: str) -> pd.DataFrame | None:
    if frame.empty:
        return None
    rows = frame
    if "target_id" in rows.columns:
        rows = rows[rows["target_id"] == target_id]
    if "fingerprint_hash" in rows.columns:
        rows = rows[rows["fingerprint_hash"] == fingerprint_hash]
    return rows


def _kinds_in(rows: pd.DataFrame) -> list[LayerKind]:
    return [parse_kind(k) for k in sorted(set(rows["kind"]))]


def _save(
    result: KindResult,
    workspace: Workspace,
    target_id: str,
    fingerprint_hash: str,
    fingerprint: Mapping[str, Any] | None,
    representatives_sha256: str | None,
) -> KindResult:
    directory = workspace.model_dir(target_id, result.kind.value)
    save_model(
        result.model,
        directory,
        target_id=target_id,
        fingerprint_hash=fingerprint_hash,
        fingerprint=fingerprint,
        metrics=result.metrics,
        training_digest=result.training_digest,
        representatives_sha256=representatives_sha256,
    )
    return replace(result, model_dir=directory)


@contextmanager
def _progress(
    kind: LayerKind, settings: TrainSettings, *, enabled: bool
) -> Iterator[ProgressCallback | None]:
    if not enabled or settings.trials == 0:
        yield None
        return
    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "{task.fields[best]}",
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(
            f"tuning {kind.value} ({settings.regressor})", total=settings.trials, best=""
        )

        def on_trial(done: int, total: int, best: float | None) -> None:
            text = "" if best is None or math.isnan(best) else f"best CV MAPE {best:.2f} %"
            bar.update(task, completed=done, best=text)

        yield on_trial


# TrainSettings (prmodel.train.settings) and the Optuna tuning (prmodel.train.tuning) stay
# importable from here, where users have always found them.
__all__ = [
    "KindResult",
    "OverlapWarning",
    "TrainSettings",
    "TrainingReport",
    "TuningResult",
    "cross_validate",
    "drop_overlap",
    "suggest_params",
    "train_kind",
    "train_models",
    "training_digest",
    "tune",
    "usable_rows",
]
