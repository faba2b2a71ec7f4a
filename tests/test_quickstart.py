from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from prmodel import zoo
from prmodel.cli import app
from prmodel.layers import LayerKind
from prmodel.measure.plans import load_plans
from prmodel.targets import get_target
from prmodel.targets.analytic import AnalyticTarget
from prmodel.workflows.quickstart import (
    QUICKSTART_PLAN,
    TINY_NETWORKS,
    run_quickstart,
    sweep_staircase,
)
from prmodel.workflows.quickstart_results import QuickstartError, QuickstartSettings, summary_path
from prmodel.workspace import Workspace

SMALL = ["--budget", "24", "--test-size", "8", "--trials", "0"]


def test_sweep_staircase_on_analytic_target(workspace: Workspace) -> None:
    target = AnalyticTarget()
    result = sweep_staircase(workspace, target, progress=False)
    assert result.report.measured == 96
    assert [p.value for p in result.points] == list(range(1, 97))
    # the analytic target steps at multiples of its block (16)
    assert result.jumps == [17, 33, 49, 65, 81]
    assert [(p.first, p.last) for p in result.plateaus][:2] == [(1, 16), (17, 32)]
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert load_plans(result.plan_path) == [QUICKSTART_PLAN]
    again = sweep_staircase(workspace, target, progress=False)
    assert (again.report.measured, again.report.skipped) == (0, 96)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kinds": ()}, "at least one layer kind"),
        ({"budget": 3}, "--budget"),
        ({"test_size": 2}, "--test-size"),
        ({"trials": -1}, "--trials"),
        ({"networks": (Path("missing.onnx"),)}, "missing.onnx"),
    ],
)
def test_settings_reject_unworkable_values(options: dict[str, object], message: str) -> None:
    with pytest.raises(QuickstartError, match=message):
        QuickstartSettings(**options)  # type: ignore[arg-type]


def _store_rows(ws: Path) -> int:
    with sqlite3.connect(ws / "sweeps" / "measurements.sqlite") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM measurements").fetchone()
    return int(count)


def test_quickstart_command_end_to_end(tmp_path: Path) -> None:
    ws = tmp_path / "qs"
    extra = tmp_path / "extra_vgg.onnx"
    onnx.save(zoo.tiny_vgg(width=8), str(extra))
    # conv and dense only (the default adds relu): the partial estimates are part of the test
    args = ["quickstart", "-w", str(ws), "-t", "analytic", "--kinds", "conv,dense", *SMALL]
    args += ["--networks", str(extra)]
    first = CliRunner().invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["target_id"] == "analytic-b16-l8"
    # the staircase stage: the analytic target's block of 16
    assert data["staircase"]["jumps"] == [17, 33, 49, 65, 81]
    assert len(data["staircase"]["plateaus"]) == 6
    # PR periods: one row per swept parameter of conv and dense; conv out_channels at 16
    periods = {(r["kind"], r["parameter"]): r for r in data["periods"]}
    assert {kind for kind, _ in periods} == {"conv", "dense"}
    assert periods[("conv", "out_channels")]["period"] == 16
    # models: one per kind, tested on held-out layers
    models = {r["kind"]: r for r in data["models"]}
    assert set(models) == {"conv", "dense"}
    for row in models.values():
        assert row["train_rows"] == 24 and 0 < row["test_rows"] <= 8
        assert row["test_mape"] >= 0 and -1 <= row["spearman"] <= 1
    # networks: the three tiny ones written into the workspace, then the extra one
    names = [r["network"] for r in data["networks"]]
    assert len(names) == 4 and names[-1] == "extra_vgg"
    for row in data["networks"]:
        assert row["modelled"] > 0 and row["modelled_measured_us"] > 0
        assert row["measured_us"] is None  # no whole-network run on a simulated target
        # conv and dense only: the pools are unpriced, so the total is a lower bound
        assert row["partial"] and row["unpriced"] > 0 and row["error_pct"] is None
        assert set(row["missing"]) <= {"maxpool", "avgpool", "globalavgpool", "op Softmax"}
    assert sorted(p.name for p in (ws / "networks").iterdir()) == sorted(
        f"{n}.onnx" for n in TINY_NETWORKS
    )
    paths = data["paths"]
    assert paths["mlflow"].startswith("sqlite:///") and (ws / "mlflow.db").is_file()
    assert data["mlflow_ui"] == f"prmodel ui --workspace {ws.resolve()}"
    assert Path(paths["staircase_plot"]).is_file()
    assert list(Path(paths["representative_plots"]).glob("*.png"))
    assert list(Path(paths["models"]).glob("*/model_card.json"))
    assert json.loads(Path(paths["summary"]).read_text())["periods"] == data["periods"]
    assert data["measured"]["measured"] > 0
    rows = _store_rows(ws)

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    # the second run measures nothing: everything comes from the store
    assert _store_rows(ws) == rows
    assert "measured 0 new points" in second.output
    for title in ("staircase", "PR periods", "held-out test accuracy", "reference networks"):
        assert title in second.output
    assert f"prmodel ui --workspace {ws.resolve()}" in second.output
    assert f"mlflow: sqlite:///{ws.resolve()}/mlflow.db" in second.output


def test_run_quickstart_on_scalesim_resumes(tmp_path: Path) -> None:
    target = get_target("scalesim")
    ws = Workspace.at(tmp_path / "ss")
    settings = QuickstartSettings(
        kinds=(LayerKind.DENSE,), budget=12, test_size=6, trials=0, track=False
    )
    stages: list[str] = []
    result = run_quickstart(
        ws, target, settings=settings, progress=False, on_stage=lambda n, _: stages.append(n)
    )
    assert stages == ["staircase", "select", "benchmark", "train", "estimate"]
    assert [r.kind for r in result.training.results] == [LayerKind.DENSE]
    assert result.tracking_uri is None and not (ws.root / "mlflow.db").exists()
    assert [r.network for r in result.networks] == list(TINY_NETWORKS)
    assert summary_path(ws).is_file()
    again = run_quickstart(ws, target, settings=settings, progress=False)
    first = result.counts
    assert first.measured > 0
    assert (again.counts.measured, again.counts.reused) == (0, first.measured + first.reused)
