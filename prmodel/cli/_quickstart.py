"""The ``prmodel quickstart`` command: a first sweep that shows the target's staircase."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    print_json,
    print_table,
)
from prmodel.cli._sweep import command_help
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.quickstart import QuickstartResult


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("quickstart", help=command_help(quickstart))(quickstart)


def quickstart(
    workspace: WorkspaceOption = Path("quickstart"),
    target: TargetOption = "cpu",
    points: Annotated[
        bool, typer.Option("--points", help="Print every point, not just the plateaus.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Sweep conv output channels 1..96 and show the latency staircase the target has.

    Takes a minute or three on one CPU core. Measurements go to the workspace's store, so
    an interrupted quickstart resumes where it stopped; the plot is saved under
    benchmarks/results/ in the workspace.

    Example: prmodel quickstart --workspace quickstart --target cpu
    """
    from prmodel.quickstart import run_quickstart
    from prmodel.targets import get_target

    chosen = get_target(target)
    ws = Workspace.at(workspace)
    if not json_output:
        console.print(f"quickstart on [bold]{chosen.target_id}[/] in workspace {ws.root}")
    result = run_quickstart(ws, chosen, progress=not json_output)
    if json_output:
        print_json(_as_json(result))
        return
    _print_result(result, every_point=points)


def _print_result(result: QuickstartResult, *, every_point: bool) -> None:
    report = result.report
    console.print(
        f"measured {report.measured}, reused {report.skipped}, failed {report.failed} "
        f"in {report.seconds:.1f} s"
    )
    if every_point:
        rows = [
            {
                "out_channels": p.value,
                "latency_us": p.latency_us,
                "ratio": p.ratio,
                "jump": "jump" if p.jump else "",
            }
            for p in result.points
        ]
        print_table(rows, title="conv output-channel sweep")
    rows = [
        {
            "out_channels": f"{p.first}..{p.last}",
            "latency_us": p.median_us,
            "jump_ratio": p.jump_ratio,
        }
        for p in result.plateaus
    ]
    print_table(rows, title="staircase: plateaus between jumps > 3 %")
    jumps = [p.value for p in result.points if p.jump]
    console.print(f"jumps at out_channels = {', '.join(map(str, jumps)) or 'none'}")
    console.print(f"plot: {result.plot_path}")
    console.print(f"store: {result.store_path}")
    console.print(f"plan: {result.plan_path}")


def _as_json(result: QuickstartResult) -> dict[str, object]:
    from dataclasses import asdict

    return {
        "target_id": result.target_id,
        "report": result.report.as_dict(),
        "points": [asdict(p) for p in result.points],
        "plateaus": [asdict(p) for p in result.plateaus],
        "plot": str(result.plot_path),
        "store": str(result.store_path),
        "plan": str(result.plan_path),
    }
