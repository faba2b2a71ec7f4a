"""The MLflow UI and remote tracking, for real: servers on loopback, read over HTTP.

`prmodel ui` is started on a free loopback port against a workspace with training,
calibration and estimate runs; the runs, the registered models and a plot are read back
through MLflow's REST API (urllib to 127.0.0.1 only), then SIGTERM to `prmodel ui` must leave
no process of the UI's tree and nothing listening. A local `mlflow server` (SQLite and
artifacts in a temporary folder) stands in for a team's tracking server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from review_fixtures import QUICK, NetworkAnalyticTarget, Reviewed, tiny_networks, train_and_log

from prmodel.cli import main
from prmodel.train.artifacts import list_model_cards
from prmodel.train.model_registry import registered_model_name
from prmodel.train.tracking import (
    EXPERIMENT_KIND,
    QUIET_ENV,
    experiment_name,
    mlflow_session,
)
from prmodel.workflows.review import calibrate_and_log
from prmodel.workflows.ui import group_members, stop_group
from prmodel.workspace import Workspace

TARGET = NetworkAnalyticTarget()
EXPERIMENT = experiment_name(TARGET.target_id)
STARTUP_S = 120.0
"""A loaded two-core machine takes 5-30 s to start an MLflow server."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as client:
        client.settimeout(1.0)
        return client.connect_ex(("127.0.0.1", port)) == 0


def rest(base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST ``body`` to) MLflow's REST API at ``base``; the decoded JSON answer."""
    assert base.startswith("http://127.0.0.1:")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.loads(answer.read() or b"{}")
    return result


def wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            rest(base, "/api/2.0/mlflow/experiments/search?max_results=1")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"no answer from {base} within {STARTUP_S:g} s:\n{log.read_text()}")


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**QUIET_ENV, **env}


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local `mlflow server` on loopback: SQLite and proxied artifacts in a temp folder."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as sink:
        server = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, log)
        yield base
    finally:
        stop_group(server.pid)
        server.wait(timeout=30)


def test_ui_serves_the_runs_and_stops_with_nothing_left(reviewed: Reviewed, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "ui.log"
    prmodel = [sys.executable, "-c", "from prmodel.cli import main; main()"]
    with log.open("wb") as sink:
        ui = subprocess.Popen(
            [*prmodel, "ui", "-w", str(reviewed.workspace.root), "--port", str(port)],
            env=clean_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, ui, log)
        (mlflow_ui,) = children(ui.pid)
        tree = descendants(ui.pid)
        assert len(tree) >= 2, "mlflow ui runs uvicorn in a child process"
        pgid = os.getpgid(mlflow_ui)
        assert pgid == mlflow_ui != os.getpgid(ui.pid), "the UI leads a process group of its own"
        assert {os.getpgid(pid) for pid in tree} == {pgid}

        name = urllib.parse.quote(EXPERIMENT, safe="")
        experiment = rest(base, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
        tags = {t["key"]: t["value"] for t in experiment["experiment"]["tags"]}
        assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND
        # once it answers, prmodel ui prints the link to the runs in the model-training view
        experiment_id = experiment["experiment"]["experiment_id"]
        link = (
            f"{EXPERIMENT}: {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        )
        deadline = time.monotonic() + 30
        while link not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert link in log.read_text()
        runs = rest(
            base,
            "/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 50},
        )["runs"]
        by_stage: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            run_tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            run["tags"] = run_tags
            run["metrics"] = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
            by_stage.setdefault(run_tags["prmodel.stage"], []).append(run)
        # other tests may add estimate and evaluation runs to the shared workspace
        assert {"calibration", "estimate", "training"} <= set(by_stage)
        assert len(by_stage["training"]) == 2
        (calibration,) = by_stage["calibration"]
        (estimate,) = [
            r for r in by_stage["estimate"] if r["info"]["run_id"] == reviewed.estimate_run_id
        ]
        assert calibration["info"]["run_name"].startswith("calibration · 3 networks")
        assert "leave-one-network-out MAPE" in calibration["tags"]["mlflow.note.content"]
        assert calibration["metrics"]["loo_mape"] >= 0
        assert {"network.tiny_vgg.error_pct", "coef_scale"} <= set(calibration["metrics"])
        # the estimate names the model versions and the calibration it used
        conv_model = registered_model_name(TARGET.target_id, "conv")
        assert estimate["tags"]["model.conv"] == f"{conv_model} v1"
        training_ids = {run["info"]["run_id"] for run in by_stage["training"]}
        assert estimate["tags"]["model.conv.run_id"] in training_ids
        assert estimate["tags"]["calibration_run_id"] == calibration["info"]["run_id"]

        run_id = calibration["info"]["run_id"]
        listed = rest(base, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=plots")
        plots = {item["path"] for item in listed["files"]}
        assert "plots/networks_estimated_vs_measured.png" in plots
        assert "plots/kernel_errors_by_kind.png" in plots
        url = f"{base}/get-artifact?path=plots/networks_estimated_vs_measured.png&run_uuid={run_id}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read(8) == b"\x89PNG\r\n\x1a\n"

        listed_cards = list_model_cards(reviewed.workspace, TARGET.target_id)
        cards = {card.kind: card for _, card in listed_cards}
        query = urllib.parse.quote(f"name = '{conv_model}'")
        (version,) = rest(base, f"/api/2.0/mlflow/model-versions/search?filter={query}")[
            "model_versions"
        ]
        version_tags = {t["key"]: t["value"] for t in version["tags"]}
        assert version_tags["model_sha256"] == cards["conv"].model_sha256
        assert "test MAPE" in version["description"]
    finally:
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output
    assert "MLflow UI stopped" in output
    assert "Traceback" not in output
    assert not [pid for pid in tree if running(pid)], "a process of the UI survived"
    assert group_members(pgid) == []
    assert not listening(port)


def test_a_busy_port_is_one_clear_error(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["prmodel", "ui", "-w", str(workspace.root), "--port", str(port)]
        monkeypatch.setattr(sys, "argv", args)
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "Traceback" not in err


def test_runs_reach_a_remote_tracking_server(
    tracking_server: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    report = train_and_log(workspace)
    tracked = calibrate_and_log(
        tiny_networks(workspace.root), TARGET, workspace=workspace, settings=QUICK
    )
    assert report.tracking_uri == tracking_server
    assert not (workspace.root / "mlflow.db").exists(), "nothing goes to the workspace store"
    with mlflow_session(tracking_server) as mlflow:
        runs = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
        stages = sorted(run.data.tags["prmodel.stage"] for run in runs)
        assert stages == ["calibration", "training", "training"]
        client = mlflow.MlflowClient()
        versions = client.search_model_versions(
            f"name = '{registered_model_name(TARGET.target_id, 'dense')}'"
        )
        assert [v.run_id for v in versions] == [report.results[1].run_id]
        calibration = client.get_run(tracked.run_id)
        assert calibration.data.tags["model.dense"].endswith(" v1")
        assert calibration.data.metrics["loo_mape"] == pytest.approx(tracked.calibration.loo_mape)
        # artifacts go through the server's proxy, not to a local path
        assert calibration.info.artifact_uri.startswith("mlflow-artifacts:")
        table = mlflow.artifacts.load_text(f"runs:/{tracked.run_id}/tables/networks.csv")
    assert table.splitlines()[0].startswith("network,measured_us,estimated_us,error_pct")
    assert len(table.splitlines()) == 4
