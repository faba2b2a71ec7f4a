"""The ``learn`` command: a predictor for this machine from a few minutes of profiled networks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    err_console,
    print_json,
)
from prmodel.cli._format import duration, milliseconds, percent, significant
from prmodel.cli._sweep import command_help
from prmodel.networks import NetworkMeasureSettings
from prmodel.targets import get_target
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.workflows.learn import LearnReport


def register(app: typer.Typer) -> None:
    """Add the ``learn`` command to ``app``."""
    app.command("learn", help=command_help(learn))(learn)


def learn(
    target: TargetOption = "cpu",
    workspace: WorkspaceOption = Path("."),
    minutes: Annotated[
        float,
        typer.Option(
            "--minutes",
            min=0,
            help="Time budget for building and profiling networks; measuring stops adding "
            "networks when it is spent (0: retrain on what this workspace measured before).",
        ),
    ] = 10.0,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds", min=1, help="Interleaved rounds per network (plain and profiled runs)."
        ),
    ] = 5,
    max_rounds: Annotated[
        int,
        typer.Option(
            "--max-rounds",
            min=0,
            help="Rounds a network whose first rounds disagree may get in all, until its "
            "latency is known within 1.5 % (0: exactly --rounds).",
        ),
    ] = 12,
    stop_at: Annotated[
        float,
        typer.Option(
            "--stop-at",
            min=0,
            help="Stop adding tiers of networks once the last tier, predicted before it was "
            "learned, comes within this MAPE (percent), to save time at some cost in "
            "accuracy; 0 measures until the tiers or the budget end.",
        ),
    ] = 0.0,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Another machine's network-profile file (Parquet, e.g. the one this "
            "repository ships in sweeps/network-profiles/) to start from: the models also "
            "learn from its networks not measured here, their kernel times translated to "
            "this machine by what the networks measured here show.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Learn a latency predictor for this machine by profiling whole networks.

    Builds networks without torch (the 15 reference networks, then variants at other
    resolutions, widths and batch sizes; never a held-out one), profiles them within the
    time budget in tiers, trains one model per layer kind on their kernels' in-network times
    and fits the calibration; `prmodel estimate` then uses them with no other step. With
    --stop-at, before each tier it predicts the tier before with models learned without it
    and stops early when that comes within the threshold. With --reference, the models also
    learn from another machine's profiled networks, their kernel times translated to this
    machine (it pays when little is measured here). A rerun reuses every network this
    workspace measured before on this machine.

    Example: prmodel learn -t cpu --minutes 10
    """
    # Function-level: the workflow imports the trainer (Optuna), kept off `prmodel estimate`.
    from prmodel.workflows.learn import learn_target

    def note(message: str) -> None:
        err_console.print(escape(message), highlight=False, soft_wrap=True)

    from prmodel.workflows.transfer import load_reference

    chosen = get_target(target)
    start = None if reference is None else load_reference(reference)
    if start is not None:
        note(
            f"reference: {len(start.networks)} networks of {start.target_id} "
            f"({start.path}); their kernels are translated to this machine"
        )
    report = learn_target(
        chosen,
        workspace=Workspace.at(workspace).create(),
        minutes=minutes,
        stop_pct=stop_at,
        settings=NetworkMeasureSettings(rounds=rounds, max_rounds=max_rounds),
        reference=start,
        on_note=note,
    )
    if json_output:
        print_json(report.to_dict())
        return
    _print_report(report)


def _print_report(report: LearnReport) -> None:
    reused = f"{len(report.reused)} reused from earlier runs, " if report.reused else ""
    now = (
        f"{duration(report.measure_seconds * 1e6)} of measuring now"
        if report.measured
        else "nothing measured now"
    )
    console.print(
        f"learned from {len(report.networks)} networks ({reused}{report.kernels:,} kernels) "
        f"on {report.target_id}: {now}, {duration(report.data_seconds * 1e6)} in all; "
        f"trained in {duration(report.train_seconds * 1e6)}",
        highlight=False,
    )
    if report.stopped_after is not None:
        console.print(
            f"stopped after tier {report.stopped_after!r}: predicted within "
            f"{report.stop_pct:g} % before it was learned; {len(report.skipped)} networks "
            "left unmeasured (--stop-at 0 measures them)",
            highlight=False,
        )
    elif report.skipped:
        console.print(
            f"the budget left {len(report.skipped)} networks unmeasured (--minutes for more)",
            highlight=False,
        )
    if report.translation is not None:
        moved = report.translation
        error = "" if moved.error_pct is None else f", {significant(moved.error_pct, 2)} % off"
        console.print(
            f"translated the kernels of {moved.reference_id}: learned from {moved.pairs:,} "
            f"kernels of {len(moved.paired_networks)} networks measured on both (this "
            f"machine takes {significant(moved.median_ratio, 2)}x the reference's time, "
            f"median{error} out of fold)",
            highlight=False,
        )
    if report.tier_checks:
        _print_tier_checks(report)
    kinds = Table(title=f"models ({report.features})", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("kind", "kernels", "networks", "target", "error %"):
        kinds.add_column(name, justify="left" if name in ("kind", "target") else "right")
    for fitted in report.kinds:
        kinds.add_row(
            fitted.kind.value,
            str(fitted.rows),
            str(fitted.networks),
            fitted.transform,
            significant(fitted.error_pct, 2),
        )
    console.print(kinds)
    console.print(
        "error %: out-of-fold error of the kind's kernels, weighted by time "
        f"({report.folds} folds of networks)",
        highlight=False,
    )
    console.print(f"calibration: {report.calibration.formula}", highlight=False)
    _print_check(report)
    console.print(f"saved to {report.models_dir} (data set: {report.data_set})", highlight=False)


def _print_tier_checks(report: LearnReport) -> None:
    grid = Table(
        title="tiers predicted before they were learned", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for name in ("tier", "networks", "trained on", "MAPE %", "worst", "error %"):
        grid.add_column(name, justify="left" if name in ("tier", "worst") else "right")
    for check in report.tier_checks:
        grid.add_row(
            check.tier,
            str(check.networks),
            str(check.trained_on),
            percent(check.mape),
            check.worst,
            percent(check.worst_error_pct, signed=True),
        )
    console.print(grid)


SHOWN_NETWORKS = 12
"""Training networks the check table shows (the worst first); ``--json`` has them all."""


def _print_check(report: LearnReport) -> None:
    shown = sorted(report.checks, key=lambda c: -abs(c.error_pct))[:SHOWN_NETWORKS]
    part = (
        f"the {len(shown)} worst of {len(report.checks)}, "
        if len(shown) < len(report.checks)
        else ""
    )
    grid = Table(
        title=f"training networks ({part}each predicted without it: see the note)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    grid.add_column("network", no_wrap=True)
    grid.add_column("measured ms", justify="right")
    grid.add_column("predicted ms", justify="right")
    grid.add_column("error %", justify="right")
    for check in shown:
        grid.add_row(
            check.name,
            milliseconds(check.measured_us),
            milliseconds(check.predicted_us),
            percent(check.error_pct, signed=True),
        )
    console.print(grid)
    worst = report.worst
    if worst is not None:
        console.print(
            f"MAPE {percent(report.mape)} %, {report.within_10} of {len(report.checks)} "
            f"within ±10 %, worst {worst.name} {percent(worst.error_pct, signed=True)} %",
            highlight=False,
        )
        console.print(
            f"note: each network's kernels predicted by models fitted on the other "
            f"{report.folds - 1} folds of networks, its total by a calibration fitted without "
            "it (only the per-op costs of kernels without a model saw it)",
            highlight=False,
        )
