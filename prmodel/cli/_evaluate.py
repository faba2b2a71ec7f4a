"""The ``evaluate`` command: PR vs random vs adaptive learning curves on one target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    err_console,
    print_json,
    print_table,
)
from prmodel.errors import PrmodelError
from prmodel.layers import parse_kind
from prmodel.targets import get_target
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.workflows.evaluation_results import EvaluationResult


class EvaluateCommandError(PrmodelError, ValueError):
    """A command-line value that ``prmodel evaluate`` cannot use."""


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("evaluate")(evaluate)


def evaluate(
    target: TargetOption = "cpu",
    budgets: Annotated[
        str, typer.Option(help="Comma-separated training-set sizes of the learning curves.")
    ] = "100,300,1000",
    kinds: Annotated[str, typer.Option(help="Comma-separated layer kinds.")] = "conv,dense",
    seeds: Annotated[int, typer.Option(help="Repetitions per (kind, sampler, budget).")] = 3,
    samplers: Annotated[
        str,
        typer.Option(
            help="Comma-separated samplers: pr, random, adaptive, networks (the network "
            "prior: needs --prior-networks)."
        ),
    ] = "pr,random,adaptive",
    test_size: Annotated[int, typer.Option(help="Random test layers per kind.")] = 200,
    networks: Annotated[
        list[Path] | None,
        typer.Option(
            "--networks",
            help="Reference ONNX networks (repeat the option); their layers join the test "
            "sets and their whole-network error is reported.",
        ),
    ] = None,
    prior_networks: Annotated[
        list[Path] | None,
        typer.Option(
            "--prior-networks",
            help="ONNX networks the networks sampler draws around (repeat the option); "
            "never the same as --networks.",
        ),
    ] = None,
    network_budget: Annotated[
        int | None, typer.Option(help="Budget of the whole-network comparison (default: largest).")
    ] = None,
    trials: Annotated[int, typer.Option(help="Optuna trials per fit (0: defaults).")] = 0,
    noise_points: Annotated[
        int | None, typer.Option(help="Test layers re-measured for the noise floor (default all).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (default: <workspace>/benchmarks/results/<target_id>)."),
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the evaluation as an MLflow run.")] = True,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Compare PR, random, adaptive and network-prior sampling: accuracy against benchmarks.

    Measurements go through the workspace's store, so a rerun reuses them. The PR set is read
    from representatives/<target_id>.yaml, or selected first when missing.

    Example: prmodel evaluate --target cpu --budgets 100,300,1000 --kinds conv,dense --seeds 3
    """
    # Function-level: the evaluation workflow imports optuna (through training) and MLflow's
    # helpers, which `prmodel estimate` must not load just because every command is registered.
    from prmodel.workflows.evaluation_results import EvaluationSettings
    from prmodel.workflows.reports import evaluate_and_report

    settings = EvaluationSettings(
        kinds=tuple(parse_kind(k) for k in _split(kinds, "kinds")),
        budgets=tuple(_integers(budgets, "budgets")),
        samplers=tuple(_split(samplers, "samplers")),
        seeds=seeds,
        test_size=test_size,
        network_budget=network_budget,
        trials=trials,
        noise_points=noise_points,
    )
    resolved = get_target(target)
    for path in [*(networks or []), *(prior_networks or [])]:
        if not path.is_file():
            raise EvaluateCommandError(f"network file {path} does not exist")
    report = evaluate_and_report(
        resolved,
        workspace=Workspace.at(workspace),
        settings=settings,
        networks=networks or [],
        prior_networks=prior_networks or [],
        folder=out,
        track=track,
        progress=not as_json,
    )
    if as_json:
        files = [str(f) for f in report.files]
        print_json({**report.result.to_dict(), "files": files, "run_id": report.run_id})
        return
    _render(report.result, report.folder, report.run_id)


def _split(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise EvaluateCommandError(f"--{option} needs at least one comma-separated value")
    return items


def _integers(text: str, option: str) -> list[int]:
    values = []
    for item in _split(text, option):
        try:
            values.append(int(item))
        except ValueError:
            raise EvaluateCommandError(f"--{option} value {item!r} is not an integer") from None
    return values


def _render(result: EvaluationResult, folder: Path, run_id: str | None) -> None:
    summary = result.summary()
    rows = summary[summary["test_set"] == "random"]
    table = [
        {
            "kind": r["kind"],
            "sampler": r["sampler"],
            "N": int(r["budget"]),
            "MAPE %": r["mape"],
            "± std": r["mape_std"],
            "RMSPE %": r["rmspe"],
            "±10 % share": r["within_10"],
            "Spearman": r["spearman"],
            "noise floor %": result.noise_floor(r["kind"]),
        }
        for r in rows.to_dict("records")
    ]
    print_table(table, title=f"Learning curves on {result.target_id} (random test set)")
    if not result.networks.empty:
        print_table(
            result.network_summary().to_dict("records"),
            title=f"Whole networks ({result.networks['truth'].iloc[0]})",
        )
    print_table(result.costs.to_dict("records"), title="Benchmarking cost")
    print_table(_goal_rows(result.goals()), title="Goals (random test set)")
    console.print(f"report written to {folder}")
    if run_id:
        err_console.print(f"MLflow run {run_id}")


def _goal_rows(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per goal figure and one column per kind (the figures read down, not across)."""
    names = list(dict.fromkeys(name for goal in goals for name in goal if name != "kind"))
    return [{"figure": name, **{g["kind"]: g.get(name) for g in goals}} for name in names]
