"""Tests of the training commands: train, models and ui."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.layers import LayerConfig
from prmodel.measure.runner import measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.targets.analytic import AnalyticTarget
from prmodel.train.artifacts import load_models
from prmodel.workspace import Workspace

runner = CliRunner()
TARGET = AnalyticTarget()


def dense(n: int, seed: int) -> list[LayerConfig]:
    rng = np.random.default_rng(seed)
    return [
        LayerConfig.create(
            "dense", channels=int(rng.integers(8, 257)), out_channels=int(rng.integers(8, 257))
        )
        for _ in range(n)
    ]


def measure(workspace: Workspace, plan: str, layers: list[LayerConfig]) -> None:
    with MeasurementStore(workspace.store_path) as store:
        measure_layers(layers, TARGET, store=store, plan_name=plan, progress=False)


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_train_then_list_models(workspace: Workspace) -> None:
    measure(workspace, "pr-dense", dense(60, seed=0))
    measure(workspace, "test-dense", dense(20, seed=1) + dense(5, seed=0))  # 5 overlap
    common = ("--target", "analytic", "--workspace", str(workspace.root))
    result = invoke("train", *common, "--trials", "2", "--folds", "2", "--no-track", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (kind,) = report["kinds"]
    assert kind["kind"] == "dense"
    assert kind["train_rows"] == 60
    assert kind["test_rows"] == 20 and kind["dropped_overlap"] == 5
    assert kind["test"]["n"] == 20
    assert report["tracking_uri"] is None
    assert set(load_models(workspace, TARGET.target_id)) == {"dense"}

    listed = json.loads(invoke("models", *common, "--json").output)
    assert [(m["kind"], m["rows"]) for m in listed] == [("dense", 60)]
    assert listed[0]["test MAPE %"] == pytest.approx(kind["test"]["mape"])
    table = invoke("models", "--workspace", str(workspace.root)).output
    assert "dense" in table and "xgboost" in table and "trained models" in table


def test_train_prints_a_table(workspace: Workspace) -> None:
    measure(workspace, "pr-dense", dense(30, seed=0))
    measure(workspace, "test-dense", dense(10, seed=1))
    result = invoke(
        "train",
        *("--target", "analytic", "--workspace", str(workspace.root)),
        *("--regressor", "ridge", "--trials", "0", "--no-track"),
    )
    assert result.exit_code == 0, result.output
    assert "trained models for analytic-b16-l8" in result.output
    assert "models: " in result.output


def test_missing_test_set_is_drawn_and_measured(workspace: Workspace) -> None:
    pytest.importorskip("prmodel.select.samplers")
    measure(workspace, "pr-dense", dense(30, seed=0))
    args = ("--target", "analytic", "--workspace", str(workspace.root), "--test-size", "12")
    result = invoke("train", *args, "--trials", "0", "--no-track", "--json")
    assert result.exit_code == 0, result.output
    with MeasurementStore(workspace.store_path) as store:
        assert len(store.frame(plan="test-dense")) == 12
        assert "test-dense" in store.plan_names()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, (), "no measurement store"),
        ("pr-conv", ("--kinds", "dense"), "plan 'pr-dense' has no measurements"),
        ("random-dense", (), "no training set 'pr-<kind>'"),
        ("pr-dense", ("--regressor", "svm"), "unknown regressor 'svm'"),
    ],
)
def test_train_errors_name_the_problem(
    workspace: Workspace, setup: str | None, args: tuple[str, ...], message: str
) -> None:
    if setup:
        kind = setup.split("-")[1]
        layer = LayerConfig.create(kind, channels=4, out_channels=4)
        measure(workspace, setup, [layer])
    result = runner.invoke(
        app, ["train", "--target", "analytic", "--workspace", str(workspace.root), *args]
    )
    assert result.exit_code != 0
    assert message in str(result.exception)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ui_serves_the_workspace_store_locally(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    popen = subprocess.Popen

    def fake_popen(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # A real child that exits at once, started as the UI is (its own process group).
        calls.append(command)
        return popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    result = invoke("ui", "--port", str(free_port()), "--workspace", str(workspace.root))
    assert "http://127.0.0.1:" in result.output
    (command,) = calls
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--backend-store-uri") + 1] == workspace.mlflow_uri
    assert Path(workspace.root).name in command[command.index("--default-artifact-root") + 1]
