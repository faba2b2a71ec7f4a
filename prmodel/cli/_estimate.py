"""Commands of the estimating stage: estimate (optionally against a measurement) and calibrate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from prmodel.cli._common import (
    FromOtherMachineOption,
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    err_console,
    print_json,
)
from prmodel.cli._format import duration, percent, progress_bar, significant
from prmodel.estimate.calibration import MAX_SUM_RATIO, Calibration
from prmodel.estimate.compare import Comparison
from prmodel.estimate.estimator import UNPRICED, NetworkEstimate
from prmodel.networks import NetworkMeasureSettings, parse_input_shapes
from prmodel.targets import get_target
from prmodel.workflows.calibrate import estimate_network
from prmodel.workspace import Workspace

InputShapeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input-shape",
        "-s",
        help="Static shape of a graph input, name=1x3x224x224 (repeatable; a bare shape "
        "names the only input). Required for inputs with dynamic dimensions.",
        show_default=False,
    ),
]
RoundsOption = Annotated[
    int, typer.Option("--rounds", min=1, help="Measurement rounds (interleaved, 10 runs each).")
]
_SHOWN_WARNINGS = 3
_NODE_WIDTH = 32
_NODES_FROM_WIDTH = 120
"""Terminals at least this wide show the node column of the estimate table."""
_KERNEL_WIDTH = 14
_LAYER_WIDTH = 18


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("estimate")(estimate)
    app.command("calibrate")(calibrate)


def estimate(
    model: Annotated[Path, typer.Argument(help="The ONNX model file.", show_default=False)],
    target: TargetOption = "cpu",
    input_shape: InputShapeOption = None,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure", help="Also run the network on the target and compare per kernel."
        ),
    ] = False,
    rounds: RoundsOption = 5,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the per-kernel table to this CSV file.", dir_okay=False),
    ] = None,
    allow_unmapped: Annotated[
        bool,
        typer.Option(
            "--allow-unmapped",
            help="List compute-heavy ops without a layer kind (ConvTranspose, LSTM, ...) as "
            "unmodelled instead of refusing the model.",
        ),
    ] = False,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Accept kernels that no model prices (kinds not trained, ops without a "
            "kind): they count 0 µs and the total is a lower bound ('at least'). Without "
            "it such an estimate is refused (exit 2).",
        ),
    ] = False,
    all_rows: Annotated[
        bool, typer.Option("--all", help="Show free kernels (Reshape, Flatten, ...) too.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    from_other_machine: FromOtherMachineOption = None,
    log: Annotated[
        bool,
        typer.Option(
            "--log",
            help="Log the estimate (with --measure: and its errors, tables and plots) as an "
            "MLflow run in the target's experiment, naming the model versions it used.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Estimate a network's latency on a target, kernel by kernel, from the trained models.

    The network is mapped to the kernels the target's runtime executes (for ONNX Runtime:
    its own optimizer at the target's optimization level, so fused Conv+Add+Relu is one
    kernel). The total is the sum of kernel predictions, corrected by the target's
    calibration where `prmodel calibrate` fitted one. A kernel that nothing prices (a kind
    without a trained model, an op without a layer kind and no calibration fit) makes the
    estimate refused unless --partial is given.

    Example: prmodel estimate resnet50.onnx --target cpu --measure

    Models trained on another machine (another CPU, ISA or ONNX Runtime) are refused;
    --from-other-machine TARGET_ID estimates with that target's models on purpose.
    """
    shapes = parse_input_shapes(input_shape or ())
    resolved = get_target(target)
    settings = NetworkMeasureSettings(rounds=rounds) if measure else None
    description = f"measuring {model.stem}, {rounds} rounds"
    with progress_bar(description, rounds, console=err_console, enabled=measure) as update:
        result, comparison = estimate_network(
            model,
            resolved,
            workspace=workspace,
            input_shapes=shapes,
            strict=not allow_unmapped,
            partial=partial,
            measure=settings,
            from_other_machine=from_other_machine,
            on_round=update,
        )
    run_id = None
    if log:
        # Function-level: review imports MLflow's helpers, kept off a plain `prmodel estimate`.
        from prmodel.workflows.review import log_estimate

        run_id = log_estimate(result, comparison, workspace=workspace, model_path=model)
    table = comparison.layers if comparison is not None else result.layers
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
    if json_output:
        data = comparison.to_dict() if comparison is not None else result.to_dict()
        print_json({**data, "from_other_machine": from_other_machine, "run_id": run_id})
        return
    _print_estimate(result, table, all_rows=all_rows)
    if comparison is not None:
        _print_comparison(comparison)
    if csv is not None:
        console.print(f"per-kernel table written to {csv}")
    if run_id is not None:
        console.print(f"MLflow run {run_id} (browse with 'prmodel ui')")


def calibrate(
    networks: Annotated[
        list[Path],
        typer.Argument(help="Networks to measure (ONNX files).", show_default=False),
    ],
    target: TargetOption = "cpu",
    input_shape: InputShapeOption = None,
    rounds: RoundsOption = 10,
    workspace: WorkspaceOption = Path("."),
    track: Annotated[
        bool,
        typer.Option(
            help="Log the calibration as an MLflow run: per-network and per-kernel errors, "
            "coefficients, plots, the model versions used."
        ),
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Fit the target's whole-network calibration from real measurements of networks.

    Each network is estimated (plain sum) and measured on the target with per-kernel
    profiles, all networks together with their rounds interleaved; the costs of unmodelled
    ops and the correction from the kernel sum to the network latency are fitted and saved
    to trained_models/<target_id>/calibration.json, which `prmodel estimate` then uses. Use
    several different networks: terms are kept only where they improve
    leave-one-network-out error.

    Example: prmodel calibrate --target cpu benchmarks/networks/*.onnx
    """
    # Function-level: review imports MLflow's helpers, kept off `prmodel estimate`.
    from prmodel.workflows.review import calibrate_and_log

    ws = Workspace.at(workspace)
    resolved = get_target(target)
    settings = NetworkMeasureSettings(rounds=rounds)
    shapes = parse_input_shapes(input_shape or ())

    def progress(comparison: Comparison) -> None:
        err_console.print(
            f"measured {comparison.estimate.network}: "
            f"{duration(comparison.measurement.total_us)}, "
            f"kernel sum {duration(comparison.estimate.sum_us)} "
            f"({percent(comparison.sum_error_pct, signed=True)} %)",
            highlight=False,
        )

    description = f"measuring {len(networks)} networks, {rounds} rounds"
    with progress_bar(description, rounds, console=err_console) as update:
        tracked = calibrate_and_log(
            networks,
            resolved,
            workspace=ws,
            input_shapes=shapes,
            settings=settings,
            on_network=progress,
            on_round=update,
            track=track,
        )
    result, path = tracked.calibration, tracked.path
    if json_output:
        print_json({**result.to_dict(), "path": str(path), "run_id": tracked.run_id})
        return
    _print_calibration(result, settings)
    console.print(f"saved to {path}")
    if tracked.run_id is not None:
        console.print(f"MLflow run {tracked.run_id} (browse with 'prmodel ui')")


# -- rendering ----------------------------------------------------------------------------------


def _print_estimate(result: NetworkEstimate, table: pd.DataFrame, *, all_rows: bool) -> None:
    shown = table if all_rows else table[table["status"] != "free"]
    measured = "measured_us" in table.columns
    nodes = console.width >= _NODES_FROM_WIDTH  # node names: --csv and --json always have them
    grid = Table(
        title=f"{result.network} on {result.target_id}", box=box.SIMPLE_HEAD, pad_edge=False
    )
    grid.add_column("#", justify="right")
    if nodes:
        grid.add_column("node")
    grid.add_column("kernel", max_width=None if nodes else _KERNEL_WIDTH)
    grid.add_column("layer / shape", min_width=_LAYER_WIDTH)
    grid.add_column("time", justify="right", no_wrap=True)
    grid.add_column("%", justify="right")
    if measured:
        grid.add_column("measured", justify="right", no_wrap=True)
        grid.add_column("error %", justify="right")
    if nodes:
        grid.add_column("note")
    for index, record in shown.iterrows():
        cells = _cells(int(str(index)), record.to_dict(), measured=measured)
        if nodes:
            grid.add_row(*cells)
            continue
        # narrow: no node column, ops without their domain (nchwc.), the note under the layer
        layer = Text(cells[3])
        if cells[-1]:
            layer.append("\n" + cells[-1], style="dim")
        grid.add_row(cells[0], cells[2].rpartition(".")[2], layer, *cells[4:-1])
    console.print(grid)
    free = len(table) - len(shown)
    if free:
        console.print(f"{free} free kernels (Reshape, Flatten, ...) not shown; --all shows them")
    console.print(f"kernels from: {result.runtime}")
    bound = "at least " if result.partial else ""
    console.print(
        f"[bold]estimated latency: {bound}{duration(result.total_us)}[/] "
        f"({result.total_note}); kernel sum {bound}{duration(result.sum_us)}",
        highlight=False,
    )
    if result.partial:
        err_console.print(
            f"[bold yellow]partial estimate:[/] {result.unpriced_kernels} unpriced kernels "
            f"({100 * result.unpriced_count_share:.1f} % of the kernels, "
            f"{100 * result.unpriced_bytes_share:.1f} % of the bytes moved) count 0 µs",
            highlight=False,
        )
    console.print(
        f"unmodelled kernels: {duration(result.unmodelled_us)} = "
        f"{100 * result.unmodelled_share:.1f} % of the sum (priced by fallbacks, see notes)",
        highlight=False,
    )
    for message in result.warnings[:_SHOWN_WARNINGS]:
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)
    if len(result.warnings) > _SHOWN_WARNINGS:
        err_console.print(
            f"[yellow]warning:[/] {len(result.warnings) - _SHOWN_WARNINGS} more warnings "
            "(--json lists them all)"
        )


def _cells(index: int, record: dict[str, Any], *, measured: bool) -> list[str]:
    modelled = record["status"] == "modelled"
    layer = record["params"]
    if record["kind"] is None or record["kind"] != record["kind"]:  # no layer: just the shape
        layer = layer.removeprefix(str(record["op"])).strip()
    notes = [] if record["source"] in ("model", "free") else [str(record["source"])]
    notes += [record["note"]] if record["note"] else []
    unpriced = record["source"] == UNPRICED
    cells = [
        str(index),
        _shorten(str(record["node"]), _NODE_WIDTH),
        str(record["fused"] if modelled else record["op"]),
        layer,
        "?" if unpriced else duration(record["predicted_us"]),
        "?" if unpriced else percent(record["share_pct"]),
    ]
    if measured:
        cells.append(duration(record.get("measured_us")))
        cells.append(percent(record.get("error_pct"), signed=True))
    return [*cells, "; ".join(notes)]


def _shorten(text: str, width: int) -> str:
    """Node names of exported graphs are long paths: keep their informative end."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _print_comparison(comparison: Comparison) -> None:
    measurement = comparison.measurement
    console.print(
        f"[bold]measured latency: {duration(measurement.total_us)}[/] (median of "
        f"{measurement.settings.rounds} round medians; all {measurement.runs} runs: median "
        f"{duration(measurement.median_us)}, p10-p90 spread {measurement.spread_pct:.1f} %)",
        highlight=False,
    )
    errors = comparison.layer_errors()
    layer_mape = f"{abs(errors).mean():.1f} %" if len(errors) else "n/a"
    console.print(
        f"total error {comparison.total_error_pct:+.1f} % (kernel sum "
        f"{comparison.sum_error_pct:+.1f} %); per-kernel MAPE of modelled kernels {layer_mape} "
        "(profiled times, a few µs profiler floor per kernel)",
        highlight=False,
    )
    if comparison.unmatched:
        console.print(f"profiled kernels not in the estimate: {', '.join(comparison.unmatched)}")


def _print_calibration(result: Calibration, settings: NetworkMeasureSettings) -> None:
    grid = Table(
        title=f"calibration of {result.target_id} ({settings.rounds} rounds)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    longest = max((len(n.name) for n in result.networks), default=7)
    grid.add_column("network", overflow="fold", min_width=min(longest, 30))
    for name in (
        "measured",
        "kernel\nsum",
        "sum\nerror %",
        "calibr.\nerror %",
        "left-out\nerror %",
    ):
        grid.add_column(name, justify="right", no_wrap=True)
    for n in result.networks:
        left_out = (
            100 * (n.loo_us - n.measured_us) / n.measured_us if n.loo_us is not None else None
        )
        grid.add_row(
            n.name,
            duration(n.measured_us),
            duration(n.sum_us),
            percent(n.sum_error_pct, signed=True),
            percent(n.error_pct, signed=True),
            percent(left_out, signed=True),
        )
    console.print(grid)
    console.print(f"[bold]total = {result.formula}[/]", highlight=False)
    if result.loo_mape is not None:
        console.print(f"leave-one-network-out MAPE: {result.loo_mape:.2f} %", highlight=False)
    else:
        console.print("one network: only the scale is fitted and nothing is left out to test it")
    if result.excluded:
        console.print(
            f"[yellow]left out of the fit, kernel sum more than {MAX_SUM_RATIO:g}x off: "
            f"{', '.join(result.excluded)}[/] (retrain the models for such layers)",
            highlight=False,
        )
    if result.unmodelled:
        ops = Table(title="unmodelled ops: fixed + bytes / bandwidth", box=box.SIMPLE_HEAD)
        ops.add_column("op", overflow="fold")
        for name in ("kernels", "fixed", "GB/s", "fit MAPE %"):
            ops.add_column(name, justify="right", no_wrap=True)
        for f in result.unmodelled:
            ops.add_row(
                f.op, str(f.samples), duration(f.fixed_us), significant(f.gbps), percent(f.mape)
            )
        console.print(ops)
