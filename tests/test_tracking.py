"""Tests of MLflow tracking: a logged training report read back with mlflow.search_runs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prmodel.layers import LayerConfig
from prmodel.measure.frames import layers_to_frame
from prmodel.targets.analytic import AnalyticTarget
from prmodel.train.settings import TrainSettings
from prmodel.train.tracking import (
    TrackingError,
    experiment_name,
    log_training,
    mlflow_session,
    tracking_uri_for,
)
from prmodel.train.training import TrainingReport, train_models
from prmodel.workspace import Workspace

TARGET = AnalyticTarget()


def measured(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    layers = [
        LayerConfig.create(
            "dense",
            channels=int(rng.integers(16, 257)),
            out_channels=int(rng.integers(16, 257)),
        )
        for _ in range(n)
    ]
    frame = layers_to_frame(layers)
    frame["latency_us"] = [TARGET.latency_us(layer) for layer in layers]
    frame["target_id"] = TARGET.target_id
    frame["fingerprint_hash"] = "fp0"
    frame["status"] = "ok"
    return frame


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail any socket connection: MLflow must work offline (no telemetry, no lookups)."""
    connections: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        connections.append(address)
        raise OSError("tests must not reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield connections
    assert connections == [], f"MLflow tried to connect to {connections}"


def artifact_paths(client: object, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):  # type: ignore[attr-defined]
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def train(workspace: Workspace, regressor: str, pr_file: Path | None = None) -> TrainingReport:
    report = train_models(
        measured(80, seed=0),
        target_id=TARGET.target_id,
        fingerprint=TARGET.fingerprint(),
        settings=TrainSettings(regressor=regressor, trials=2, folds=2),
        test_frame=measured(30, seed=1),
        workspace=workspace,
        representatives_path=pr_file,
        progress=False,
    )
    return log_training(report, workspace=workspace)


def test_run_is_logged_with_metrics_plots_and_model(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # A user's own tracking store keeps MLflow's default artifact root, ./mlruns: not the repo.
    monkeypatch.chdir(tmp_path)
    pr_file = workspace.representatives_path(TARGET.target_id)
    pr_file.write_text("target_id: analytic-b16-l8\nparameters: []\n")
    report = train(workspace, "xgboost", pr_file)
    (result,) = report.results
    assert report.tracking_uri == uri
    assert not (workspace.root / "mlflow.db").exists()
    assert result.run_id is not None and result.test_metrics is not None

    with mlflow_session(uri) as mlflow:
        runs = mlflow.search_runs(experiment_names=[experiment_name(TARGET.target_id)])
        assert len(runs) == 1
        run = runs.iloc[0]
        assert run["run_id"] == result.run_id
        assert run["metrics.test_mape"] == pytest.approx(result.test_metrics["mape"])
        assert run["metrics.cv_mape"] == pytest.approx(result.cv_mape)
        assert run["params.regressor"] == "xgboost"
        assert run["params.training_digest"] == result.training_digest
        assert run["params.hp_max_depth"] == str(result.params["max_depth"])
        assert run["tags.kind"] == "dense"

        paths = artifact_paths(mlflow.MlflowClient(), result.run_id)
        assert {
            "plots/predicted_vs_measured.png",
            "plots/error_histogram.png",
            "plots/error_by_parameter.png",
            "optuna/trials.csv",
            "optuna/best.json",
            "target_fingerprint.json",
            "training_rows.sha256",
            f"representatives/{pr_file.name}",
            "trained_model/model_card.json",
            "trained_model/model.ubj",
        } <= paths
        logged = mlflow.search_logged_models(
            experiment_ids=[run["experiment_id"]], output_format="list"
        )
        assert len(logged) == 1 and logged[0].source_run_id == result.run_id
        # the MLflow copy loads with MLflow's own flavour and agrees with the saved model
        booster = mlflow.xgboost.load_model(f"models:/{logged[0].model_id}")
    features = np.log1p(result.model.feature_spec_.transform(list(result.test_layers)))
    np.testing.assert_allclose(np.exp(booster.predict(features)), result.test_predicted, rtol=1e-5)


def test_default_store_is_the_workspace(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri_for(workspace) == workspace.mlflow_uri
    (result,) = train(workspace, "ridge").results
    assert (workspace.root / "mlflow.db").is_file()
    assert result.run_id is not None
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        run = mlflow.get_run(result.run_id)
        assert run.data.metrics["test_n"] == 30
        assert run.info.artifact_uri.startswith(workspace.mlflow_artifacts_dir.as_uri())
        paths = artifact_paths(mlflow.MlflowClient(), result.run_id)
    assert "trained_model/model.skops" in paths


def test_a_store_mlflow_cannot_use_is_one_clear_error_and_the_models_stay(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where MLflow's SQLite database should be a folder: it cannot open the store.
    (tmp_path / "blocked").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'blocked' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingError, match="MLflow could not log the dense run") as caught:
        train(workspace, "ridge")
    message = str(caught.value)
    assert uri in message and "--no-track" in message and "saved" in message
    assert "\n" not in message
    assert (workspace.model_dir(TARGET.target_id, "dense") / "model_card.json").is_file()
