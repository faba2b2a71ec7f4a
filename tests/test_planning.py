"""The ``prmodel plan`` stage as a library call: samplers by name into one plan file."""

from __future__ import annotations

from pathlib import Path

import pytest

from prmodel.layers import LayerKind
from prmodel.measure.plans import load_plans
from prmodel.targets.analytic import AnalyticTarget
from prmodel.workflows.planning import PlanError, network_files, write_plan
from prmodel.workspace import Workspace


def test_network_files_expand_folders_and_name_what_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "nets"
    folder.mkdir()
    for name in ("b.onnx", "a.onnx", "notes.txt"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "c.onnx"
    single.write_bytes(b"")
    assert network_files([folder, single]) == [folder / "a.onnx", folder / "b.onnx", single]
    with pytest.raises(PlanError, match="does not exist"):
        network_files([tmp_path / "missing.onnx"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match=r"no \.onnx files"):
        network_files([tmp_path / "empty"])


def test_write_plan_draws_each_kind_with_its_budget(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").create()
    result = write_plan(
        "random",
        AnalyticTarget(),
        workspace=ws,
        budget=12,
        budgets={LayerKind.DENSE: 5},
        kinds=[LayerKind.CONV, LayerKind.DENSE],
        name="mine",
    )
    assert result.path == ws.sweeps_dir / f"mine-{AnalyticTarget().target_id}.yaml"
    rows = [(r["plan"], r["layers"]) for r in result.rows()]
    assert rows == [("mine-conv", 12), ("mine-dense", 5)]
    assert [p.name for p in load_plans(result.path)] == ["mine-conv", "mine-dense"]
    assert not result.rounds


def test_write_plan_needs_the_pr_file_and_the_networks(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").create()
    with pytest.raises(PlanError, match="run `prmodel select --target analytic` first"):
        write_plan("pr", AnalyticTarget(), workspace=ws, budget=10)
    with pytest.raises(PlanError, match="needs --networks"):
        write_plan("networks", AnalyticTarget(), workspace=ws, budget=10)
