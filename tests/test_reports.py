"""Tests of prmodel.workflows.reports: report files, markdown and the evaluate-and-report call."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from prmodel.layers import LayerKind
from prmodel.targets import get_target
from prmodel.workflows.evaluation_results import EvaluationResult, EvaluationSettings
from prmodel.workflows.reports import (
    EvaluationReport,
    evaluate_and_report,
    markdown_report,
    write_report,
)
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_resnet

SPEC = "analytic:gbps=100000"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> EvaluationReport:
    root = tmp_path_factory.mktemp("reports")
    network = root / "tiny_resnet.onnx"
    network.write_bytes(tiny_resnet().SerializeToString())
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV, LayerKind.DENSE),
        budgets=(20, 40),
        samplers=("pr", "random"),
        seeds=1,
        test_size=20,
    )
    return evaluate_and_report(
        get_target(SPEC),
        workspace=Workspace.at(root / "ws"),
        settings=settings,
        networks=[network],
        track=False,
        progress=False,
    )


def test_report_files_are_written(report: EvaluationReport, tmp_path: Path) -> None:
    result: EvaluationResult = report.result
    files = write_report(result, tmp_path / "report")
    names = {f.name for f in files}
    assert {"curves.csv", "evaluation.json", "evaluation.md", "mape_conv.png"} <= names
    assert len(pd.read_csv(tmp_path / "report" / "curves.csv")) == len(result.curves)
    data = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert {g["kind"] for g in data["goals"]} == {"conv", "dense"}
    assert "## Whole networks" in (tmp_path / "report" / "evaluation.md").read_text()


def test_evaluate_and_report_writes_into_the_workspace_results(report: EvaluationReport) -> None:
    assert report.run_id is None
    assert report.folder.parts[-3:] == ("benchmarks", "results", report.result.target_id)
    assert report.files and all(f.parent == report.folder and f.is_file() for f in report.files)


def test_markdown_report_has_a_section_per_kind_and_the_goals(report: EvaluationReport) -> None:
    text = markdown_report(report.result)
    assert text.startswith(f"# Evaluation on {report.result.target_id}")
    for heading in ("## conv", "## dense", "## Cost (all budgets and seeds)", "## Goals"):
        assert heading in text
    assert "| sampler | budget | mape |" in text
