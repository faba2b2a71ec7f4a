"""Tests of prmodel.workflows.review and accuracy: calibration, estimate and evaluation runs in
MLflow, registered model versions and the links between them (the workspace's SQLite store).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from review_fixtures import (
    NETWORK_OFFSET_US,
    NETWORK_SCALE,
    QUICK,
    NetworkAnalyticTarget,
    Reviewed,
    tiny_networks,
)

from prmodel.cli import main
from prmodel.layers import LayerKind
from prmodel.targets import get_target
from prmodel.train.artifacts import list_model_cards
from prmodel.train.model_registry import find_versions, registered_model_name
from prmodel.train.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    experiment_name,
    mlflow_session,
)
from prmodel.workflows.accuracy import (
    ERROR_BY_GROUP_COLUMNS,
    KERNEL_COLUMNS,
    NETWORK_COLUMNS,
    errors_by_group,
    kernel_table,
    network_table,
)
from prmodel.workflows.calibrate import estimate_network
from prmodel.workflows.evaluation_results import EvaluationSettings
from prmodel.workflows.reports import evaluate_and_report
from prmodel.workflows.review import (
    ReviewLogError,
    calibrate_and_log,
    log_estimate,
    model_tags,
)
from prmodel.workspace import Workspace

TARGET = NetworkAnalyticTarget()
EXPERIMENT = experiment_name(TARGET.target_id)


@pytest.fixture
def no_env_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_network_table_puts_each_measurement_next_to_its_estimates(
    reviewed: Reviewed,
) -> None:
    tracked = reviewed.calibration
    table = network_table(tracked.comparisons, tracked.calibration)
    assert list(table.columns) == list(NETWORK_COLUMNS)
    assert list(table["network"]) == ["tiny_resnet", "tiny_mobilenet", "tiny_vgg"]
    fits = {fit.name: fit for fit in tracked.calibration.networks}
    for row in table.to_dict("records"):
        fit = fits[row["network"]]
        assert row["measured_us"] == pytest.approx(fit.measured_us)
        assert row["estimated_us"] == pytest.approx(fit.calibrated_us)
        assert row["left_out_us"] == pytest.approx(fit.loo_us)
        assert row["error_pct"] == pytest.approx(fit.error_pct)
        # the fake runner's spread: p10 3 % under and p90 5 % over the total
        assert row["p10_us"] == pytest.approx(0.97 * row["measured_us"])
        assert row["spread_pct"] == pytest.approx(8.0)
    # the plain sum misses the fake's per-network overhead (x1.08 + 40 µs): always under
    assert (table["sum_error_pct"] < 0).all()
    assert NETWORK_SCALE > 1 and NETWORK_OFFSET_US > 0


def test_kernel_errors_are_grouped_by_kind_largest_time_first(
    reviewed: Reviewed,
) -> None:
    tracked = reviewed.calibration
    kernels = kernel_table(tracked.comparisons)
    assert list(kernels.columns) == list(KERNEL_COLUMNS)
    assert set(kernels["network"]) == {"tiny_resnet", "tiny_mobilenet", "tiny_vgg"}
    summary = errors_by_group(kernels)
    assert list(summary.columns) == list(ERROR_BY_GROUP_COLUMNS)
    assert list(summary["measured_us"]) == sorted(summary["measured_us"], reverse=True)
    assert summary["time_share_pct"].sum() == pytest.approx(100.0)
    conv = summary.set_index("group").loc["conv"]
    rated = kernels[(kernels["group"] == "conv") & kernels["error_pct"].notna()]
    assert conv["rated"] == len(rated) > 0
    assert conv["mape_pct"] == pytest.approx(rated["error_pct"].abs().mean())
    # kinds without a model are listed with their time, unrated
    unrated = summary[summary["rated"] == 0]
    assert len(unrated) and unrated["mape_pct"].isna().all()


def test_calibration_run_has_tables_plots_coefficients_and_model_links(
    reviewed: Reviewed,
) -> None:
    workspace, tracked = reviewed.workspace, reviewed.calibration
    calibration = tracked.calibration
    cards = {card.kind: card for _, card in list_model_cards(workspace, TARGET.target_id)}
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        run = mlflow.get_run(tracked.run_id)
        experiment = mlflow.get_experiment(run.info.experiment_id)
        paths = artifact_paths(mlflow.MlflowClient(), tracked.run_id)
        networks_csv = mlflow.artifacts.load_text(f"runs:/{tracked.run_id}/tables/networks.csv")
        models_used = mlflow.artifacts.load_dict(f"runs:/{tracked.run_id}/models_used.json")
        versions = {
            kind: mlflow.MlflowClient().search_model_versions(
                f"name = '{registered_model_name(TARGET.target_id, kind)}'"
            )
            for kind in cards
        }
    assert experiment.name == EXPERIMENT
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags["prmodel.stage"] == "calibration"
    assert run.info.run_name == "calibration · 3 networks · 2 rounds"
    assert calibration.formula in tags["mlflow.note.content"]
    assert params["formula"] == calibration.formula
    assert metrics["coef_scale"] == pytest.approx(calibration.scale)
    assert metrics["loo_mape"] == pytest.approx(calibration.loo_mape)
    assert metrics["network.tiny_vgg.measured_ms"] > 0
    digest = hashlib.sha256(tracked.path.read_bytes()).hexdigest()
    assert tags["calibration_sha256"] == digest
    for kind, card in cards.items():
        (version,) = versions[kind]
        assert tags[f"model.{kind}"] == f"{registered_model_name(TARGET.target_id, kind)} v1"
        assert card.model_sha256 == version.tags["model_sha256"]
        assert tags[f"model.{kind}.run_id"] == version.run_id
    assert {m["kind"]: m["sha256"] for m in models_used["models"]} == {
        kind: card.model_sha256 for kind, card in cards.items()
    }
    assert {
        "calibration.json",
        "tables/networks.csv",
        "tables/kernels.csv",
        "tables/kernel_errors_by_kind.csv",
        "tables/unmodelled_ops.csv",
        "plots/networks_estimated_vs_measured.png",
        "plots/kernel_errors_by_kind.png",
        "plots/kernels_predicted_vs_measured.png",
    } <= paths
    assert networks_csv.splitlines()[0] == ",".join(NETWORK_COLUMNS)


def test_registered_versions_carry_the_model_card(
    reviewed: Reviewed,
) -> None:
    workspace = reviewed.workspace
    (card,) = [c for _, c in list_model_cards(workspace, TARGET.target_id) if c.kind == "conv"]
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        client = mlflow.MlflowClient()
        name = registered_model_name(TARGET.target_id, "conv")
        model = client.get_registered_model(name)
        (version,) = client.search_model_versions(f"name = '{name}'")
        run = client.get_run(version.run_id)
    assert model.tags == {"target_id": TARGET.target_id, "kind": "conv"}
    assert version.tags["training_digest"] == card.training_digest
    assert version.tags["dataset"] == "pr-conv"
    assert version.tags["test_mape"] == f"{card.metrics['test_mape']:.4g}"
    assert f"{card.training_rows} measured layers" in version.description
    assert run.data.tags["registered_version"] == str(version.version)
    assert run.info.run_name == "conv · xgboost · pr-conv (120 layers, default parameters)"
    assert "pr-conv" in run.data.tags["mlflow.note.content"]


def test_an_estimate_run_names_its_models_and_calibration(
    reviewed: Reviewed, no_env_store: None
) -> None:
    workspace, tracked = reviewed.workspace, reviewed.calibration
    network = workspace.root / "tiny_vgg.onnx"
    estimate, comparison = estimate_network(
        network, TARGET, workspace=workspace, strict=False, partial=True, measure=QUICK
    )
    measured_id = log_estimate(estimate, comparison, workspace=workspace, model_path=network)
    plain_id = log_estimate(estimate, None, workspace=workspace)
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        measured = mlflow.get_run(measured_id)
        plain = mlflow.get_run(plain_id)
        client = mlflow.MlflowClient()
        measured_paths = artifact_paths(client, measured_id)
        plain_paths = artifact_paths(client, plain_id)
    assert measured.info.run_name == "estimate · tiny_vgg vs measured"
    assert measured.data.tags["calibration_run_id"] == tracked.run_id
    assert measured.data.tags["model.dense"].startswith("prmodel.analytic-b16-l8.dense v")
    assert measured.data.metrics["estimated_us"] == pytest.approx(estimate.total_us)
    assert measured.data.metrics["error_pct"] == pytest.approx(comparison.total_error_pct)  # type: ignore[union-attr]
    assert measured.data.params["model_file"] == str(network)
    assert "plots/kernel_errors_by_kind.png" in measured_paths
    assert plain.info.run_name == "estimate · tiny_vgg"
    assert "error_pct" not in plain.data.metrics
    assert "tables/kernels.csv" in plain_paths
    assert not any(p.startswith("plots/") for p in plain_paths)


def test_a_model_never_registered_is_named_so(
    reviewed: Reviewed,
) -> None:
    workspace = reviewed.workspace
    digests = {"conv": "0" * 64}  # a conv model trained without tracking: no version has it
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        links = find_versions(mlflow, TARGET.target_id, digests)
    assert links == {"conv": None}
    assert model_tags(links, digests) == {"model.conv": "not registered (sha256 000000000000)"}


def test_an_existing_experiment_is_switched_to_the_model_training_view(
    reviewed: Reviewed, no_env_store: None
) -> None:
    workspace = reviewed.workspace
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, "genai_development"
        )
    estimate, _ = estimate_network(
        workspace.root / "tiny_vgg.onnx", TARGET, workspace=workspace, strict=False, partial=True
    )
    log_estimate(estimate, workspace=workspace)
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        tags = mlflow.get_experiment_by_name(EXPERIMENT).tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_an_unreachable_server_keeps_the_calibration_and_says_so(
    reviewed: Reviewed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = reviewed.workspace
    workspace = Workspace.at(tmp_path / "ws").create()
    models = source.models_dir / TARGET.target_id
    for model_dir in models.iterdir():
        if model_dir.is_dir():
            target = workspace.model_dir(TARGET.target_id, model_dir.name)
            target.mkdir(parents=True)
            for item in model_dir.iterdir():
                (target / item.name).write_bytes(item.read_bytes())
    # a closed loopback port, and no retries: the failure comes at once
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(ReviewLogError) as error:
        calibrate_and_log(tiny_networks(tmp_path), TARGET, workspace=workspace, settings=QUICK)
    path = workspace.models_dir / TARGET.target_id / "calibration.json"
    assert str(error.value).startswith(f"the calibration is saved to {path}, but logging")
    assert "http://127.0.0.1:9" in str(error.value)
    assert json.loads(path.read_text())["target_id"] == TARGET.target_id


def test_the_commands_log_on_request(
    reviewed: Reviewed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_env_store: None,
) -> None:
    workspace = reviewed.workspace
    spec = "review_fixtures.NetworkAnalyticTarget"
    assert get_target(spec).target_id == TARGET.target_id
    network = str(workspace.root / "tiny_resnet.onnx")
    base = ["-t", spec, "-w", str(workspace.root), "--rounds", "1", "--json"]

    def run(*args: str) -> dict[str, Any]:
        monkeypatch.setattr(sys, "argv", ["prmodel", *args])
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        data: dict[str, Any] = json.loads(capsys.readouterr().out)
        return data

    logged = run("estimate", network, "--measure", "--partial", "--log", *base)
    quiet = run("estimate", network, "--partial", *base)
    untracked = run("calibrate", network, "--no-track", *base)
    with mlflow_session(workspace.mlflow_uri) as mlflow:
        run_info = mlflow.get_run(logged["run_id"])
    assert run_info.data.tags["prmodel.stage"] == "estimate"
    assert quiet["run_id"] is None
    assert untracked["run_id"] is None


def test_an_evaluation_run_has_the_reviewers_plots(
    reviewed: Reviewed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Logged into the reviewed workspace's store (a new SQLite store costs seconds).
    store = reviewed.workspace.mlflow_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    network = tmp_path / "tiny_resnet.onnx"
    tiny_networks(tmp_path)
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV, LayerKind.DENSE),
        budgets=(20, 40),
        samplers=("pr", "random"),
        seeds=1,
        test_size=20,
    )
    workspace = Workspace.at(tmp_path / "ws")
    report = evaluate_and_report(
        get_target("analytic:gbps=100000"),
        workspace=workspace,
        settings=settings,
        networks=[network],
        progress=False,
    )
    assert report.run_id is not None
    with mlflow_session(store) as mlflow:
        run = mlflow.get_run(report.run_id)
        paths = artifact_paths(mlflow.MlflowClient(), report.run_id)
        table = mlflow.artifacts.load_text(f"runs:/{report.run_id}/tables/networks.csv")
    assert run.info.run_name == "evaluation · pr, random · conv, dense · N 20-40 · 1 seeds"
    assert run.data.tags["prmodel.stage"] == "evaluation"
    assert "tiny_resnet" in run.data.tags["mlflow.note.content"]
    assert {"plots/error_by_kind.png", "plots/networks_error.png"} <= paths
    frame = pd.read_csv(pd.io.common.StringIO(table))
    assert set(frame["sampler"]) == {"pr", "random"}
    assert np.isfinite(frame["error_pct"]).all()
