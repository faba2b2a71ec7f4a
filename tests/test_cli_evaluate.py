"""Tests of ``prmodel evaluate`` on the deterministic analytic target."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.cli._evaluate import EvaluateCommandError
from prmodel.workflows.evaluation_results import EvaluationError
from prmodel.zoo import tiny_vgg

runner = CliRunner()


def _args(workspace: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--target",
        "analytic",
        "--budgets",
        "20,40",
        "--kinds",
        "dense",
        "--samplers",
        "pr,random",
        "--seeds",
        "1",
        "--test-size",
        "20",
        "--workspace",
        str(workspace),
        *extra,
    ]


def test_json_output_and_report_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, _args(tmp_path, "--no-track", "--json"), catch_exceptions=False)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["target_id"] == "analytic-b16-l8"
    assert {(r["sampler"], r["budget"]) for r in data["curves"]} == {
        ("pr", 20),
        ("pr", 40),
        ("random", 20),
        ("random", 40),
    }
    folder = tmp_path / "benchmarks" / "results" / "analytic-b16-l8"
    assert {"curves.csv", "evaluation.md", "mape_dense.png"} <= {p.name for p in folder.iterdir()}
    assert data["run_id"] is None


def test_table_output_names_the_report(tmp_path: Path) -> None:
    result = runner.invoke(
        app, _args(tmp_path, "--no-track", "--out", str(tmp_path / "r")), catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "Learning curves" in result.output
    assert (tmp_path / "r" / "evaluation.json").is_file()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--budgets", "20,x"), "'x' is not an integer"),
        (("--networks", "missing.onnx"), "missing.onnx does not exist"),
    ],
)
def test_bad_values_are_one_sentence_errors(
    tmp_path: Path, extra: tuple[str, ...], fragment: str
) -> None:
    args = _args(tmp_path, "--no-track")
    index = args.index(extra[0]) if extra[0] in args else len(args)
    if extra[0] in args:
        args[index + 1] = extra[1]
    else:
        args += list(extra)
    with pytest.raises(EvaluateCommandError, match=fragment):
        runner.invoke(app, args, catch_exceptions=False)


def test_the_network_prior_from_the_command_line(tmp_path: Path) -> None:
    """--prior-networks feeds the networks sampler; without it the sampler is refused."""
    prior = tmp_path / "tiny_vgg.onnx"
    onnx.save(tiny_vgg(), str(prior))
    args = _args(tmp_path, "--no-track", "--json")
    args[args.index("pr,random")] = "random,networks"
    with pytest.raises(EvaluationError, match="needs prior networks"):
        runner.invoke(app, args, catch_exceptions=False)
    assert not (tmp_path / "sweeps" / "measurements.sqlite").exists()  # refused before measuring
    result = runner.invoke(app, [*args, "--prior-networks", str(prior)], catch_exceptions=False)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert {r["sampler"] for r in data["curves"]} == {"random", "networks"}
