"""Optuna tuning of a kind's regressor: seeded k-fold cross-validation minimising MAPE.

:func:`tune` searches the hyper-parameters :func:`suggest_params` proposes, scoring each
trial with :func:`cross_validate`; the regressor's defaults are the first trial, so tuning
never ends worse than them. Studies may be shared between processes through an Optuna
storage (:attr:`~prmodel.train.settings.TrainSettings.study_storage`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import optuna
import pandas as pd
from sklearn.model_selection import KFold

from prmodel.layers import LayerConfig, LayerKind
from prmodel.metrics import summarize
from prmodel.select.representatives import RepresentativeSet
from prmodel.train.model import LatencyModel
from prmodel.train.regressors import DEFAULT_PARAMS, ModelError, unknown_regressor
from prmodel.train.settings import TrainSettings


@dataclass(frozen=True)
class TuningResult:
    """The outcome of an Optuna search: best parameters, their CV MAPE and every trial."""

    best_params: dict[str, Any]
    cv_mape: float
    trials: pd.DataFrame
    """One row per trial: number, state, value (CV MAPE %), seconds, ``params_<name>``."""


ProgressCallback = Callable[[int, int, float | None], None]
"""Called after each trial with (trials done, trials planned, best CV MAPE so far)."""


# -- cross-validation and tuning ---------------------------------------------------------------
def cross_validate(
    layers: Sequence[LayerConfig],
    latency_us: npt.NDArray[np.float64],
    *,
    kind: LayerKind,
    regressor: str,
    params: Mapping[str, Any],
    representatives: RepresentativeSet | None = None,
    folds: int = 4,
    seed: int = 0,
    n_jobs: int = 1,
    report: Callable[[int, float], None] | None = None,
    plateau_mapping: bool | None = None,
    target_transform: str | None = None,
) -> float:
    """Mean MAPE (percent) of ``folds``-fold cross-validation with shuffled, seeded folds.

    ``report(fold, running_mape)`` is called after each fold (Optuna uses it to prune).
    """
    splitter = KFold(n_splits=min(folds, len(layers)), shuffle=True, random_state=seed)
    scores: list[float] = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.arange(len(layers)))):
        model = LatencyModel(
            kind,
            regressor=regressor,
            params=params,
            representatives=representatives,
            seed=seed,
            n_jobs=n_jobs,
            plateau_mapping=plateau_mapping,
            target_transform=target_transform,
        )
        model.fit([layers[i] for i in train_idx], latency_us[train_idx])
        with warnings.catch_warnings():
            # A fold's held-out rows may sit outside its training ranges; that is the point.
            warnings.simplefilter("ignore")
            predicted = model.predict([layers[i] for i in test_idx])
        scores.append(summarize(latency_us[test_idx], predicted)["mape"])
        if report is not None:
            report(fold, float(np.mean(scores)))
    return float(np.mean(scores))


def suggest_params(trial: Any, regressor: str) -> dict[str, Any]:
    """The hyper-parameters Optuna ``trial`` proposes for ``regressor``."""
    if regressor == "xgboost":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 1000, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 10),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 10.0, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }
    if regressor in ("random_forest", "extra_trees"):
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 500, log=True),
            "max_features": trial.suggest_float("max_features", 0.3, 1.0),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 5),
        }
    if regressor == "hist_gradient_boosting":
        return {
            "max_iter": trial.suggest_int("max_iter", 100, 1000, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 128, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 2, 40, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
        }
    if regressor == "knn":
        return {
            "n_neighbors": trial.suggest_int("n_neighbors", 1, 30),
            "weights": trial.suggest_categorical("weights", ["uniform", "distance"]),
            "p": trial.suggest_int("p", 1, 2),
        }
    if regressor == "ridge":
        # Tiny alphas fit PR samples perfectly and extrapolate wildly between them.
        return {"alpha": trial.suggest_float("alpha", 1e-2, 1e3, log=True)}
    raise unknown_regressor(regressor)


def tune(
    layers: Sequence[LayerConfig],
    latency_us: npt.NDArray[np.float64],
    *,
    kind: LayerKind,
    settings: TrainSettings,
    representatives: RepresentativeSet | None = None,
    on_trial: ProgressCallback | None = None,
) -> TuningResult:
    """Search the regressor's hyper-parameters with Optuna, minimising CV MAPE.

    The first trial is the regressor's defaults, so tuning never ends worse than them;
    TPE is seeded and unpromising trials are pruned after a fold by the median rule.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(settings, study_name(layers, latency_us, kind, settings, representatives))
    if not study.trials:  # a shared study gets the defaults' trial once
        study.enqueue_trial(dict(DEFAULT_PARAMS[settings.regressor]))

    def objective(trial: Any) -> float:
        params = suggest_params(trial, settings.regressor)

        def report(fold: int, running: float) -> None:
            trial.report(running, fold)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return cross_validate(
            layers,
            latency_us,
            kind=kind,
            regressor=settings.regressor,
            params=params,
            representatives=representatives,
            folds=settings.folds,
            seed=settings.seed,
            plateau_mapping=settings.plateau_mapping,
            target_transform=settings.target_transform,
            n_jobs=settings.n_jobs,
            report=report,
        )

    def callback(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(len(study.trials), settings.trials, _best_value(study))

    interrupted = False

    def quiet_on_interrupt(trial: Any) -> float:
        # Optuna logs a trial ended by Ctrl-C with its full traceback before re-raising it;
        # end the trial as pruned, stop the study and re-raise here instead, without a trace.
        nonlocal interrupted
        try:
            return objective(trial)
        except KeyboardInterrupt:
            interrupted = True
            study.stop()
            raise optuna.TrialPruned() from None

    shared = [] if settings.study_storage is None else [_trials_in_all(settings.trials)]
    study.optimize(
        quiet_on_interrupt,
        n_trials=settings.trials,
        timeout=settings.timeout_s,
        callbacks=[callback, *shared],
    )
    if interrupted:
        raise KeyboardInterrupt
    best = study.best_trial
    params = {**DEFAULT_PARAMS[settings.regressor], **best.params}
    return TuningResult(
        best_params=params, cv_mape=float(study.best_value), trials=_trial_table(study)
    )


def _best_value(study: Any) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no trial has completed (all pruned or failed so far)
        return None


def study_name(
    layers: Sequence[LayerConfig],
    latency_us: npt.NDArray[np.float64],
    kind: LayerKind,
    settings: TrainSettings,
    representatives: RepresentativeSet | None,
) -> str:
    """The name of the study of one tuning problem: processes that would tune the same
    thing (rows, kind, regressor, folds, seed, mapping, transform) share it in a storage."""
    digest = hashlib.sha256()
    for layer, latency in zip(layers, np.asarray(latency_us, dtype=float), strict=True):
        digest.update(f"{layer.key}={latency!r};".encode())
    problem = (
        settings.folds,
        settings.seed,
        settings.plateau_mapping,
        settings.target_transform,
        None if representatives is None else repr(representatives.for_kind(kind)),
    )
    digest.update(repr(problem).encode())
    return f"prmodel-{kind.value}-{settings.regressor}-{digest.hexdigest()[:12]}"


def _open_study(settings: TrainSettings, name: str) -> Any:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if settings.study_storage is None:
        sampler = optuna.samplers.TPESampler(seed=settings.seed)
        return optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    # Processes sharing a study must not draw the same random start-up trials: each seeds
    # its sampler with its process id (a shared study is not reproducible anyway: which
    # process runs which trial depends on timing).
    sampler = optuna.samplers.TPESampler(seed=settings.seed + os.getpid())
    try:
        return optuna.create_study(
            storage=settings.study_storage,
            study_name=name,
            load_if_exists=True,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
        )
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot open the Optuna study storage {settings.study_storage!r}: {text}"
        ) from None


def _trials_in_all(trials: int) -> Any:
    """Stop once the shared study holds ``trials`` finished trials from all processes."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return optuna.study.MaxTrialsCallback(trials, states=states)


def _trial_table(study: Any) -> pd.DataFrame:
    table = study.trials_dataframe(attrs=("number", "value", "duration", "params", "state"))
    if "duration" in table.columns:
        table["seconds"] = table.pop("duration").dt.total_seconds()
    return table


__all__ = [
    "ProgressCallback",
    "TuningResult",
    "cross_validate",
    "study_name",
    "suggest_params",
    "tune",
]
