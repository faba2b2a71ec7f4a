"""Commands of the estimating stage: estimate (optionally against a measurement) and calibrate."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    err_console,
    print_json,
    print_table,
)
from prmodel.estimate.calibration import MAX_SUM_RATIO, Calibration, calibration_path
from prmodel.estimate.compare import Comparison
from prmodel.estimate.estimator import NetworkEstimate
from prmodel.networks import NetworkMeasureSettings, parse_input_shapes
from prmodel.targets import get_target
from prmodel.workflows.calibrate import calibrate_workspace, estimate_network
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
    all_rows: Annotated[
        bool, typer.Option("--all", help="Show free kernels (Reshape, Flatten, ...) too.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    json_output: JsonOption = False,
) -> None:
    """Estimate a network's latency on a target, kernel by kernel, from the trained models.

    The network is mapped to the kernels the target's runtime executes (for ONNX Runtime:
    its own optimizer at the target's optimization level, so fused Conv+Add+Relu is one
    kernel). The total is the sum of kernel predictions, corrected by the target's
    calibration where `prmodel calibrate` fitted one.

    Example: prmodel estimate resnet50.onnx --target cpu --measure
    """
    shapes = parse_input_shapes(input_shape or ())
    resolved = get_target(target)
    settings = NetworkMeasureSettings(rounds=rounds) if measure else None
    waiting = err_console.status(f"measuring {model.stem} on {resolved.target_id} ...")
    with waiting if measure else nullcontext():
        result, comparison = estimate_network(
            model,
            resolved,
            workspace=workspace,
            input_shapes=shapes,
            strict=not allow_unmapped,
            measure=settings,
        )
    table = comparison.layers if comparison is not None else result.layers
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
    if json_output:
        print_json(comparison.to_dict() if comparison is not None else result.to_dict())
        return
    _print_estimate(result, table, all_rows=all_rows)
    if comparison is not None:
        _print_comparison(comparison)
    if csv is not None:
        console.print(f"per-kernel table written to {csv}")


def calibrate(
    networks: Annotated[
        list[Path],
        typer.Argument(help="Networks to measure (ONNX files).", show_default=False),
    ],
    target: TargetOption = "cpu",
    input_shape: InputShapeOption = None,
    rounds: RoundsOption = 10,
    workspace: WorkspaceOption = Path("."),
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
    ws = Workspace.at(workspace)
    resolved = get_target(target)
    settings = NetworkMeasureSettings(rounds=rounds)
    shapes = parse_input_shapes(input_shape or ())

    def progress(comparison: Comparison) -> None:
        err_console.print(
            f"measured {comparison.estimate.network}: "
            f"{comparison.measurement.total_us / 1e3:.2f} ms, "
            f"kernel sum {comparison.estimate.sum_us / 1e3:.2f} ms "
            f"({comparison.sum_error_pct:+.1f} %)",
            highlight=False,
        )

    with err_console.status(f"measuring {len(networks)} network(s) on {resolved.target_id}"):
        result = calibrate_workspace(
            networks,
            resolved,
            workspace=ws,
            input_shapes=shapes,
            settings=settings,
            on_network=progress,
        )
    path = calibration_path(ws, result.target_id)
    if json_output:
        print_json({**result.to_dict(), "path": str(path)})
        return
    _print_calibration(result, settings)
    console.print(f"saved to {path}")


# -- rendering ----------------------------------------------------------------------------------


def _print_estimate(result: NetworkEstimate, table: pd.DataFrame, *, all_rows: bool) -> None:
    shown = table if all_rows else table[table["status"] != "free"]
    measured = "measured_us" in table.columns
    grid = Table(title=f"{result.network} on {result.target_id}")
    for name in ("#", "node", "kernel", "layer / shape", "µs", "%"):
        grid.add_column(name, justify="right" if name in ("#", "µs", "%") else "left")
    if measured:
        grid.add_column("measured µs", justify="right")
        grid.add_column("error %", justify="right")
    grid.add_column("note")
    for index, record in shown.iterrows():
        grid.add_row(*_cells(int(str(index)), record.to_dict(), measured=measured))
    console.print(grid)
    free = len(table) - len(shown)
    if free:
        console.print(f"{free} free kernels (Reshape, Flatten, ...) not shown; --all shows them")
    console.print(f"kernels from: {result.runtime}")
    console.print(
        f"[bold]estimated latency: {result.total_us:,.1f} µs[/] ({result.total_note}); "
        f"kernel sum {result.sum_us:,.1f} µs",
        highlight=False,
    )
    console.print(
        f"unmodelled kernels: {result.unmodelled_us:,.1f} µs = "
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
    cells = [
        str(index),
        _shorten(str(record["node"]), _NODE_WIDTH),
        str(record["fused"] if modelled else record["op"]),
        layer,
        _micros(record["predicted_us"]),
        f"{record['share_pct']:.1f}",
    ]
    if measured:
        cells.append(_micros(record.get("measured_us")))
        error = record.get("error_pct")
        cells.append(f"{error:+.1f}" if error is not None and error == error else "-")
    return [*cells, "; ".join(notes)]


def _shorten(text: str, width: int) -> str:
    """Node names of exported graphs are long paths: keep their informative end."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _micros(value: Any) -> str:
    if value is None or value != value:  # NaN
        return "-"
    return f"{value:,.1f}" if value >= 100 else f"{value:.2f}"


def _print_comparison(comparison: Comparison) -> None:
    measurement = comparison.measurement
    console.print(
        f"[bold]measured latency: {measurement.total_us:,.1f} µs[/] (median of "
        f"{measurement.settings.rounds} round medians; all {measurement.runs} runs: median "
        f"{measurement.median_us:,.1f} µs, p10-p90 spread {measurement.spread_pct:.1f} %)",
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
    rows = [
        {
            "network": n.name,
            "measured µs": n.measured_us,
            "kernel sum µs": n.sum_us,
            "sum error %": n.sum_error_pct,
            "calibrated µs": n.calibrated_us,
            "error %": n.error_pct,
            "left-out error %": (
                100 * (n.loo_us - n.measured_us) / n.measured_us if n.loo_us is not None else None
            ),
        }
        for n in result.networks
    ]
    print_table(rows, title=f"calibration of {result.target_id} ({settings.rounds} rounds)")
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
        print_table(
            [
                {
                    "op": f.op,
                    "kernels": f.samples,
                    "fixed µs": f.fixed_us,
                    "GB/s": f.gbps,
                    "fit MAPE %": f.mape,
                }
                for f in result.unmodelled
            ],
            title="unmodelled ops: fixed + bytes / bandwidth",
        )
