"""The ``prmodel quickstart`` command: the whole pipeline on one target with a small budget."""

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
from prmodel.cli._select import parse_kinds
from prmodel.cli._sweep import command_help
from prmodel.targets import get_target
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.workflows.quickstart_results import QuickstartResult, StaircaseResult

NetworksOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--networks",
        "-n",
        help="Extra ONNX network to estimate and measure (repeatable), e.g. "
        "benchmarks/networks/resnet18.onnx.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("quickstart", help=command_help(quickstart))(quickstart)


def quickstart(
    workspace: WorkspaceOption = Path("quickstart"),
    target: TargetOption = "cpu",
    kinds: Annotated[
        str, typer.Option("--kinds", "-k", help="Comma-separated layer kinds to model.")
    ] = "conv,dense,relu",
    budget: Annotated[int, typer.Option(help="PR-sampled training layers per kind.")] = 200,
    test_size: Annotated[int, typer.Option(help="Random held-out test layers per kind.")] = 50,
    trials: Annotated[
        int, typer.Option(help="Optuna trials per kind (0: default hyper-parameters).")
    ] = 5,
    networks: NetworksOption = None,
    track: Annotated[bool, typer.Option(help="Log the training runs to MLflow.")] = True,
    points: Annotated[
        bool, typer.Option("--points", help="Print every point of the staircase sweep.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Run the whole pipeline on one target with a small budget and summarise it.

    Stages: a conv output-channel sweep that shows the latency staircase; Performance
    Representative selection from 1-D sweeps (with plots); PR benchmarks and a random test
    set; training (logged to MLflow); estimates of three tiny reference networks (and any
    --networks) compared with their measured latency. Every measurement goes to the
    workspace's store, so an interrupted quickstart resumes and a second run measures
    nothing new. About 2.5-3 minutes on two CPU cores with the defaults; scale up with
    --budget, --test-size, --trials and --kinds.

    Example: prmodel quickstart --target cpu --networks benchmarks/networks/resnet18.onnx
    """
    # Function-level: the quickstart imports optuna and matplotlib (training, tracking), which
    # `prmodel estimate` must not load just because every command is registered.
    from prmodel.workflows.quickstart import run_quickstart
    from prmodel.workflows.quickstart_results import QuickstartSettings

    settings = QuickstartSettings(
        kinds=tuple(parse_kinds(kinds)),
        budget=budget,
        test_size=test_size,
        trials=trials,
        networks=tuple(networks or ()),
        track=track,
    )
    chosen = get_target(target)
    ws = Workspace.at(workspace)
    if not json_output:
        console.print(
            f"quickstart on [bold]{chosen.target_id}[/] in workspace {ws.root}", soft_wrap=True
        )
    result = run_quickstart(
        ws,
        chosen,
        settings=settings,
        progress=not json_output,
        on_stage=None if json_output else _stage_header,
    )
    if json_output:
        print_json(result.to_dict())
        return
    _print_result(result, every_point=points)


def _stage_header(name: str, text: str) -> None:
    console.rule(f"[bold]{text}", align="left")


def _print_result(result: QuickstartResult, *, every_point: bool) -> None:
    console.rule("[bold]summary", align="left")
    _print_staircase(result.staircase, every_point=every_point)
    print_table(result.period_rows(), title="PR periods found (initial 1-D sweeps)")
    print_table(
        result.model_rows(),
        title="models: held-out test accuracy (MAPE, RMSPE, ±10 % in percent)",
    )
    print_table(_network_table(result), title="reference networks: estimate vs measured (µs)")
    console.print(
        "mod.: kernels priced by a trained model, of all; m.: those kernels alone (their "
        "truth is the profiled kernel time on ONNX Runtime, the target's own layer latency "
        "elsewhere); err in %",
        style="dim",
    )
    missing = sorted({name for row in result.networks for name in row.missing})
    if missing:
        console.print(
            f"[yellow]≥: partial estimates[/]: no model prices {', '.join(missing)} (the "
            "quickstart trains only --kinds), so those kernels count 0 µs, the total is a "
            "lower bound and has no error %; compare the modelled columns (modelled: kernels "
            "priced of all), or add kinds (relu also prices reorders and pools by proxy)",
            highlight=False,
        )
    counts = result.counts
    console.print(
        f"measured {counts.measured} new points, reused {counts.reused}, failed "
        f"{counts.failed}; {result.seconds:.0f} s in all"
    )
    for name, path in result.paths().items():
        if path:
            console.print(f"{name}: {path}", soft_wrap=True)
    if result.tracking_uri:
        console.print(
            f"open the MLflow UI: [bold]prmodel ui --workspace {result.workspace.root}[/]",
            soft_wrap=True,
        )


def _print_staircase(stairs: StaircaseResult, *, every_point: bool) -> None:
    if every_point:
        rows = [
            {
                "out_channels": p.value,
                "latency_us": p.latency_us,
                "ratio": p.ratio,
                "jump": "jump" if p.jump else "",
            }
            for p in stairs.points
        ]
        print_table(rows, title="conv output-channel sweep")
    rows = [
        {
            "out_channels": f"{p.first}..{p.last}",
            "latency_us": p.median_us,
            "jump_ratio": p.jump_ratio,
        }
        for p in stairs.plateaus
    ]
    print_table(rows, title="staircase: plateaus between jumps > 3 %")
    console.print(f"jumps at out_channels = {', '.join(map(str, stairs.jumps)) or 'none'}")


def _network_table(result: QuickstartResult) -> list[dict[str, object]]:
    # Short headers so the table fits an 80-column terminal; the JSON has the long names.
    return [
        {
            "network": row["network"],
            "mod.": f"{row['modelled']}/{row['kernels']}",
            "est µs": f"≥{row['estimated_us']:.4g}" if row["partial"] else row["estimated_us"],
            "meas µs": row["measured_us"],
            "err %": row["error_pct"],
            "m.est": row["modelled_estimated_us"],
            "m.meas": row["modelled_measured_us"],
            "m.err": row["modelled_error_pct"],
        }
        for row in result.network_rows()
    ]
