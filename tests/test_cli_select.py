"""`prmodel select` and `prmodel plan`, end to end through the runner on the analytic target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmodel.cli import app, main
from prmodel.measure.plans import load_plans
from prmodel.measure.store import MeasurementStore
from prmodel.select.representatives import RepresentativeSet
from prmodel.workspace import Workspace

runner = CliRunner()


def invoke_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The real entry point, with its error handling (exit 2, one line, no traceback)."""
    monkeypatch.setattr(sys, "argv", ["prmodel", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def selected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, object]]:
    ws = Workspace.at(tmp_path_factory.mktemp("select") / "ws").create()
    data = invoke_json(
        "select", "--target", "analytic", "--kinds", "conv,dense", "--workspace", str(ws.root)
    )
    return ws, data


def _rows(data: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    rows = data["parameters"]
    assert isinstance(rows, list)
    return {(r["kind"], r["parameter"]): r for r in rows}


def test_select_recovers_the_analytic_blocks_through_the_runner(
    selected: tuple[Workspace, dict[str, object]],
) -> None:
    _, data = selected
    rows = _rows(data)
    assert rows[("conv", "out_channels")]["steps"] == "period 16"
    assert rows[("conv", "channels")]["steps"] == "period 8"
    assert rows[("conv", "out_channels")]["profile"] == "agreed (16)"
    assert rows[("conv", "height")]["steps"] == "no steps"
    assert set(rows) == {
        ("conv", "channels"),
        ("conv", "height"),
        ("conv", "out_channels"),
        ("dense", "channels"),
        ("dense", "out_channels"),
    }
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows.values())  # type: ignore[arg-type]
    assert data["measured"] and not data["failed"]


def test_select_writes_the_pr_file_plan_file_plots_and_plan_membership(
    selected: tuple[Workspace, dict[str, object]],
) -> None:
    ws, _ = selected
    pr = RepresentativeSet.load(ws.representatives_path("analytic-b16-l8"))
    assert pr.for_kind("conv")["out_channels"].representatives[:3] == (16, 32, 48)
    plans = load_plans(ws.sweeps_dir / "initial-analytic-b16-l8.yaml")
    assert {p.name for p in plans} >= {"initial-conv-out_channels", "initial-dense-channels"}
    plots = sorted(p.name for p in ws.plots_dir("analytic-b16-l8").iterdir())
    assert "conv-out_channels.png" in plots and len(plots) == 5
    with MeasurementStore(ws.store_path) as store:
        members = store.frame(target_id="analytic-b16-l8", plan="initial-conv-out_channels")
    assert sorted(members["out_channels"]) == list(range(1, 65))


def test_select_again_reuses_the_store(selected: tuple[Workspace, dict[str, object]]) -> None:
    ws, first = selected
    again = invoke_json(
        "select", "--target", "analytic", "--kinds", "conv,dense", "--workspace", str(ws.root)
    )
    assert again["measured"] == 0 and again["skipped"]
    assert _rows(again) == _rows(first)


@pytest.mark.parametrize(
    ("sampler", "budget", "extra"),
    [
        ("pr", 100, []),
        ("pr", 100, ["--draw", "balanced"]),
        ("random", 40, []),
        ("adaptive", 30, []),
    ],
)
def test_plan_writes_a_sweepable_plan(
    selected: tuple[Workspace, dict[str, object]], sampler: str, budget: int, extra: list[str]
) -> None:
    ws, _ = selected
    out = ws.sweeps_dir / f"{sampler}-{len(extra)}-test.yaml"
    data = invoke_json(
        "plan",
        "--sampler", sampler,
        "--budget", str(budget),
        "--target", "analytic",
        "--kinds", "conv",
        "--out", str(out),
        "--workspace", str(ws.root),
        *extra,
    )  # fmt: skip
    (plan,) = load_plans(out)
    assert plan.name == f"{sampler}-conv" and data["file"] == str(out)
    layers = plan.layers()
    assert len(layers) == budget and len({x.key for x in layers}) == budget
    if sampler == "adaptive":  # it measured as it planned
        with MeasurementStore(ws.store_path) as store:
            done = store.measured_keys("analytic-b16-l8", store.frame().fingerprint_hash.iloc[0])
        assert {x.key for x in layers} <= done


def test_plan_without_representatives_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_main(
        monkeypatch, "plan", "--target", "analytic", "--workspace", str(tmp_path / "empty")
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "run `prmodel select --target analytic` first" in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--sampler", "bogus", "--target", "analytic"], "unknown sampler 'bogus'"),
        (["plan", "--sampler", "random", "--budget", "0", "--target", "analytic"], "budget"),
        (["select", "--target", "analytic", "--kinds", "softmax"], "unknown layer kind"),
        (["select", "--target", "analytic", "--kinds", " , "], "names no layer kind"),
        (["select", "--target", "analytic", "--profile", "missing.yaml"], "cannot read"),
    ],
)
def test_bad_requests_get_one_clear_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code = run_main(monkeypatch, *args, "--workspace", str(tmp_path / "ws"))
    err = capsys.readouterr().err
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err
