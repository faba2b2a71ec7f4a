"""MLflow tracking of training runs: parameters, metrics, plots, the Optuna study and the model.

:func:`log_training` logs a :class:`~prmodel.train.training.TrainingReport` after
training, as the caller chooses. One experiment per target (``prmodel/<target_id>``), one
run per trained layer kind, its model registered as a version of
``prmodel.<target_id>.<kind>`` (:mod:`prmodel.train.model_registry`). The experiment is
tagged for MLflow 3's "Machine learning" view (:data:`EXPERIMENT_KIND`). The default store is
SQLite in the workspace (``mlflow.db``, artifacts in ``mlartifacts/``); ``MLFLOW_TRACKING_URI``
overrides it. The model logged here
(XGBoost UBJ or scikit-learn via skops) is for review in the MLflow UI; the authoritative
artifact is the one in ``trained_models/`` with its model card, which is also attached to
the run. MLflow never reaches the network from here: telemetry is off and pip requirements
are given explicitly instead of being inferred. MLflow itself is imported only inside
:func:`mlflow_session`, after :func:`quiet_mlflow`, since it reads those settings when it
is first imported.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from matplotlib.figure import Figure

from prmodel.errors import PrmodelError, first_line
from prmodel.layers import PARAMETERS
from prmodel.metrics import relative_errors
from prmodel.train.artifacts import CARD_NAME, library_versions
from prmodel.train.model import ModelCard
from prmodel.train.model_registry import register_trained_model
from prmodel.train.settings import TrainSettings
from prmodel.train.training import KindResult, TrainingReport
from prmodel.workspace import Workspace

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "_MLFLOW_TELEMETRY_PRE_WARM_DATABRICKS_SDK": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}


def quiet_mlflow() -> None:
    """Turn off MLflow's telemetry and chatter; call before MLflow is imported.

    Settings the user made in the environment are kept.
    """
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    # MLflow sets its loggers' levels from MLFLOW_LOGGING_LEVEL when first imported; these
    # cover a session where it was imported before.
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(os.environ["MLFLOW_LOGGING_LEVEL"])


def tracking_uri_for(workspace: Workspace) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the workspace's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or workspace.mlflow_uri


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The experiment kind "Machine learning" (runs, charts, registered models), set on every
prmodel experiment. MLflow 3 releases that choose an experiment's view by this tag open it
there rather than in the GenAI overview (traces, judges), empty for prmodel; MLflow 3.17
follows the browser's "GenAI | Model training" switch instead, so ``prmodel ui`` also prints
links that open the model-training view (:mod:`prmodel.workflows.ui`)."""
NOTE_TAG = "mlflow.note.content"
"""The tag MLflow shows as a run's (or an experiment's) description."""
STAGE_TAG = "prmodel.stage"
"""What a run is: ``training``, ``calibration``, ``estimate`` or ``evaluation``."""


def experiment_name(target_id: str) -> str:
    """The MLflow experiment of a target's training runs."""
    return f"prmodel/{target_id}"


class TrackingError(PrmodelError, RuntimeError):
    """MLflow could not log a run (the models themselves are saved already)."""


def log_training(
    report: TrainingReport, *, workspace: Workspace, train_set: str | None = None
) -> TrainingReport:
    """Log every kind of a training report as an MLflow run (see :func:`log_training_run`).

    Args:
        report: What :func:`~prmodel.train.training.train_models` returned, with the
            models saved into ``workspace`` (their folders are attached to the runs).
        workspace: Its MLflow store is used unless ``MLFLOW_TRACKING_URI`` is set.
        train_set: The store's training sets were ``<train_set>-<kind>`` (run names say so).

    Returns:
        The report with each result's ``run_id`` and the ``tracking_uri`` filled in.

    Raises:
        TrackingError: MLflow failed (a store it cannot open or reach); the message names
            the store and says that the trained models are saved all the same.
    """
    uri = tracking_uri_for(workspace)
    results = []
    for result in report.results:
        try:
            run_id = log_training_run(
                result,
                workspace=workspace,
                target_id=report.target_id,
                fingerprint_hash=report.fingerprint_hash,
                fingerprint=report.fingerprint,
                settings=report.settings,
                representatives_path=report.representatives_path,
                dataset=f"{train_set}-{result.kind.value}" if train_set else None,
            )
        except Exception as exc:  # MLflow's own, a driver's, an OS error: all end here
            saved = "the trained models are saved (trained_models/) all the same; "
            raise TrackingError(
                f"MLflow could not log the {result.kind.value} run to {uri} "
                f"({type(exc).__name__}: {first_line(exc, period=False)}); {saved}fix the store or "
                "MLFLOW_TRACKING_URI, or train again with --no-track"
            ) from exc
        results.append(replace(result, run_id=run_id))
    return replace(report, results=tuple(results), tracking_uri=uri)


def log_training_run(
    result: KindResult,
    *,
    workspace: Workspace,
    target_id: str,
    fingerprint_hash: str,
    fingerprint: Mapping[str, Any] | None = None,
    settings: TrainSettings | None = None,
    representatives_path: Path | None = None,
    dataset: str | None = None,
) -> str:
    """Log one trained kind as an MLflow run; returns the run id.

    The run holds parameters (regressor, hyper-parameters, settings, row counts, target
    and data identity), metrics (CV, training and test), the target fingerprint, the PR
    file, the training-row digest, plots of the test predictions, the Optuna study (best
    parameters and the trial table as CSV), the model in MLflow's own flavour, and the
    authoritative ``trained_models`` folder. A saved model (``result.model_dir``) is
    registered as a new version of ``prmodel.<target_id>.<kind>`` with its model card
    (:mod:`prmodel.train.model_registry`). The run is named and described in words
    (kind, regressor, data set, budget), as the UI lists it.
    """
    uri = tracking_uri_for(workspace)
    with mlflow_session(uri) as mlflow:
        experiment_id = target_experiment_id(mlflow, target_id, workspace, uri)
        run_name = _run_name(result, settings, dataset)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            note = _run_note(result, target_id, settings, dataset)
            mlflow.set_tags(
                {"target_id": target_id, "kind": result.kind.value, STAGE_TAG: "training"}
            )
            mlflow.set_tag(NOTE_TAG, note)
            mlflow.log_params(_params(result, target_id, fingerprint_hash, settings))
            mlflow.log_metrics(_finite(result.metrics))
            _log_identity(mlflow, result, fingerprint, representatives_path)
            _log_study(mlflow, result)
            _log_plots(mlflow, result)
            logged = _log_flavour(mlflow, result)
            run_id: str = run.info.run_id
            if result.model_dir is not None:
                mlflow.log_artifacts(str(result.model_dir), artifact_path="trained_model")
                card = ModelCard.read(result.model_dir / CARD_NAME)
                version = register_trained_model(
                    mlflow,
                    model_uri=logged.model_uri,
                    model_id=logged.model_id,
                    card=card,
                    run_id=run_id,
                    dataset=dataset,
                )
                mlflow.set_tags(
                    {"registered_model": version.name, "registered_version": version.version}
                )
    return run_id


@contextmanager
def mlflow_session(uri: str) -> Iterator[Any]:
    """The quieted ``mlflow`` module, pointed at ``uri`` inside and at the previous store after.

    Its warnings are silenced inside: MLflow warns about deprecations and missing extras on
    every call, and none of it is actionable for a prmodel user.
    """
    quiet_mlflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Here, not at the top: MLflow reads quiet_mlflow's settings when first imported.
        import mlflow

        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        # MLflow 3 also writes the URI into MLFLOW_TRACKING_URI, which tracking_uri_for reads:
        # put the environment back too, or one workspace's store leaks into the next.
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        try:
            yield mlflow
        finally:
            if previous is not None:
                mlflow.set_tracking_uri(previous)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env


def target_experiment_id(mlflow: Any, target_id: str, workspace: Workspace, uri: str) -> str:
    """The id of the target's experiment, created (artifacts beside a workspace store) if new."""
    name = experiment_name(target_id)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            # Experiments made before prmodel set the tag open in MLflow 3's GenAI view.
            mlflow.MlflowClient().set_experiment_tag(
                existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        return str(existing.experiment_id)
    location = None
    if uri == workspace.mlflow_uri:
        # Keep the workspace self-contained: artifacts next to the SQLite store.
        location = (workspace.mlflow_artifacts_dir / target_id).as_uri()
    return str(
        mlflow.create_experiment(name, artifact_location=location, tags=_experiment_tags(target_id))
    )


def _experiment_tags(target_id: str) -> dict[str, str]:
    return {
        EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
        NOTE_TAG: (
            f"Latency models of target `{target_id}`. Runs, by the tag `{STAGE_TAG}`: "
            "`training` (one per layer kind: test and CV error, plots, the registered model), "
            "`calibration` (whole networks measured against the estimate, the fitted "
            "coefficients), `estimate` (one network estimated, and measured where asked) and "
            "`evaluation` (samplers compared). docs/review.md says where to look."
        ),
    }


def _run_name(result: KindResult, settings: TrainSettings | None, dataset: str | None) -> str:
    """``conv · xgboost · pr-conv (412 layers, 25 trials)``: what the run list shows."""
    budget = f"{result.train_rows} layers"
    if settings is not None:
        budget += f", {settings.trials} trials" if settings.trials else ", default parameters"
    return f"{result.kind.value} · {result.regressor} · {dataset or 'training set'} ({budget})"


def _run_note(
    result: KindResult, target_id: str, settings: TrainSettings | None, dataset: str | None
) -> str:
    """The run's description in the UI: what was trained on what, and how it scored."""
    source = f"the set `{dataset}`" if dataset else "the training set"
    lines = [
        f"Latency model of **{result.kind.value}** layers on target `{target_id}`: "
        f"{result.regressor} fitted on {result.train_rows} measured layers of {source}."
    ]
    if settings is not None:
        tuning = (
            f"Optuna, {settings.trials} trials of {settings.folds}-fold cross-validation"
            if settings.trials
            else "the regressor's default hyper-parameters (no tuning)"
        )
        lines.append(f"Hyper-parameters: {tuning}; seed {settings.seed}.")
    test = result.test_metrics
    if test:
        lines.append(
            f"Held-out test: {len(result.test_layers)} random layers, MAPE "
            f"{test.get('mape', float('nan')):.2f} %, "
            f"{test.get('within_10', float('nan')):.0f} % within ±10 %. "
            "Plots: `plots/predicted_vs_measured.png`, `plots/error_by_parameter.png`."
        )
    else:
        lines.append("No held-out test layers: no test figures.")
    return "\n\n".join(lines)


def _params(
    result: KindResult, target_id: str, fingerprint_hash: str, settings: TrainSettings | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "target_id": target_id,
        "fingerprint_hash": fingerprint_hash,
        "kind": result.kind.value,
        "regressor": result.regressor,
        "train_rows": result.train_rows,
        "test_rows": len(result.test_layers),
        "dropped_overlap": result.dropped_overlap,
        "training_digest": result.training_digest,
        "features": len(result.model.feature_spec_.names),
    }
    if settings is not None:
        params |= {f"setting_{k}": v for k, v in asdict(settings).items()}
    params |= {f"hp_{k}": v for k, v in result.params.items()}
    return params


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    # MLflow stores NaN but the UI's charts choke on it; an undefined metric is left out.
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def _log_identity(
    mlflow: Any,
    result: KindResult,
    fingerprint: Mapping[str, Any] | None,
    representatives_path: Path | None,
) -> None:
    mlflow.log_dict(dict(fingerprint or {}), "target_fingerprint.json")
    mlflow.log_text(result.training_digest + "\n", "training_rows.sha256")
    mlflow.log_dict(library_versions(result.regressor), "library_versions.json")
    mlflow.log_dict({"feature_schema": list(result.model.feature_spec_.names)}, "features.json")
    if representatives_path is not None and representatives_path.is_file():
        mlflow.log_artifact(str(representatives_path), artifact_path="representatives")


def _log_study(mlflow: Any, result: KindResult) -> None:
    if result.tuning is None:
        return
    mlflow.log_dict(
        {"best_params": result.tuning.best_params, "cv_mape": result.tuning.cv_mape},
        "optuna/best.json",
    )
    mlflow.log_text(result.tuning.trials.to_csv(index=False), "optuna/trials.csv")


def _log_plots(mlflow: Any, result: KindResult) -> None:
    if len(result.test_layers) == 0:
        mlflow.set_tag("plots", "none: no held-out test rows")
        return
    # Plain Figures (not pyplot's): no GUI backend, and nothing to close afterwards.
    for name, figure in plot_test_predictions(result).items():
        mlflow.log_figure(figure, f"plots/{name}.png")


def plot_test_predictions(result: KindResult) -> dict[str, Figure]:
    """Figures of the held-out predictions: predicted vs measured, errors, errors by parameter."""
    measured, predicted = result.test_measured, result.test_predicted
    errors = relative_errors(measured, predicted) * 100
    title = f"{result.kind.value}, {result.regressor}, {len(measured)} test layers"

    scatter = Figure(figsize=(5, 5), layout="constrained")
    ax = scatter.subplots()
    ax.loglog(measured, predicted, ".", alpha=0.6)
    lo, hi = (
        float(min(measured.min(), predicted.min())),
        float(max(measured.max(), predicted.max())),
    )
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="exact")
    ax.set(xlabel="measured latency (µs)", ylabel="predicted latency (µs)", title=title)
    ax.legend()

    histogram = Figure(figsize=(6, 4), layout="constrained")
    ax = histogram.subplots()
    ax.hist(errors, bins=40)
    for bound in (-10, 10):
        ax.axvline(bound, color="grey", ls=":")
    ax.set(xlabel="relative error (%)", ylabel="layers", title=title)

    return {
        "predicted_vs_measured": scatter,
        "error_histogram": histogram,
        "error_by_parameter": _error_by_parameter(result, errors, title),
    }


def _error_by_parameter(result: KindResult, errors: np.ndarray, title: str) -> Figure:
    names = PARAMETERS[result.kind]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    figure = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        values = [getattr(layer, name) for layer in result.test_layers]
        ax.plot(values, errors, ".", alpha=0.5)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel=name, ylabel="error (%)")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure


def _log_flavour(mlflow: Any, result: KindResult) -> Any:
    """Log the estimator in MLflow's flavour; returns MLflow's ``ModelInfo``."""
    spec = result.model.feature_spec_
    estimator = result.model.estimator_
    layers = list(result.test_layers) or None
    signature = None
    if layers:
        features = np.log1p(spec.frame(layers[:20]))
        signature = mlflow.models.infer_signature(features, np.log(result.test_predicted[:20]))
    requirements = [f"{name}=={v}" for name, v in library_versions(result.regressor).items()]
    requirements = [r for r in requirements if not r.startswith("prmodel")]
    metadata = {"prmodel_note": "inputs are log1p(features); output is log(latency_us)"}
    # mlflow.xgboost and mlflow.sklearn are loaded by the mlflow module on first use.
    if result.regressor == "xgboost":
        info = mlflow.xgboost.log_model(
            estimator,
            name="model",
            model_format="ubj",
            signature=signature,
            pip_requirements=requirements,
            metadata=metadata,
        )
    else:
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            serialization_format="skops",
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(estimator)),
            signature=signature,
            pip_requirements=requirements,
            metadata=metadata,
        )
    return info


__all__ = [
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "NOTE_TAG",
    "QUIET_ENV",
    "STAGE_TAG",
    "TrackingError",
    "experiment_name",
    "log_training",
    "log_training_run",
    "mlflow_session",
    "plot_test_predictions",
    "quiet_mlflow",
    "target_experiment_id",
    "tracking_uri_for",
]
