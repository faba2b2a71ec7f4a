from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.plans import load_plans
from prmodel.quickstart import QUICKSTART_PLAN, plateaus, run_quickstart, staircase
from prmodel.targets.analytic import AnalyticTarget
from prmodel.workspace import Workspace


def test_staircase_marks_jumps_over_three_percent() -> None:
    points = staircase([1, 2, 3, 4], [10.0, 10.2, 11.0, 11.0])
    assert [p.ratio for p in points] == pytest.approx([None, 1.02, 11.0 / 10.2, 1.0])
    assert [p.jump for p in points] == [False, False, True, False]


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        # a clean staircase of period 4
        ([10, 10, 10, 10, 20, 20, 20, 20, 30, 30], [(1, 4), (5, 8), (9, 10)]),
        # a lone slow point and a lone fast point do not split a plateau
        ([10, 10, 10, 13, 10, 10, 20, 20, 17, 20, 20], [(1, 6), (7, 11)]),
        # no steps at all
        ([10, 10.1, 10.2, 10.1], [(1, 4)]),
    ],
)
def test_plateaus(latencies: list[float], expected: list[tuple[int, int]]) -> None:
    points = staircase(list(range(1, len(latencies) + 1)), latencies)
    found = plateaus(points)
    assert [(p.first, p.last) for p in found] == expected
    assert found[0].jump_ratio is None


def test_run_quickstart_on_analytic_target(workspace: Workspace) -> None:
    target = AnalyticTarget()
    result = run_quickstart(workspace, target, progress=False)
    assert result.report.measured == 96
    assert [p.value for p in result.points] == list(range(1, 97))
    # the analytic target steps at multiples of its block (16)
    assert [p.value for p in result.points if p.jump] == [17, 33, 49, 65, 81]
    assert [(p.first, p.last) for p in result.plateaus][:2] == [(1, 16), (17, 32)]
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert load_plans(result.plan_path) == [QUICKSTART_PLAN]
    again = run_quickstart(workspace, target, progress=False)
    assert (again.report.measured, again.report.skipped) == (0, 96)


def test_quickstart_command(tmp_path: Path) -> None:
    ws = tmp_path / "qs"
    result = CliRunner().invoke(app, ["quickstart", "-w", str(ws), "-t", "analytic", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["target_id"] == "analytic-b16-l8" and len(data["plateaus"]) == 6
    assert Path(data["plot"]).exists()
    table = CliRunner().invoke(app, ["quickstart", "-w", str(ws), "-t", "analytic", "--points"])
    assert table.exit_code == 0
    assert "jumps at out_channels = 17, 33, 49, 65, 81" in table.output
    assert "reused 96" in table.output
