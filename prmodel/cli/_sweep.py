"""Commands of the measuring stage: sweep, recheck, export, show, targets and init."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from prmodel.cli._common import (
    FromOtherMachineOption,
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    print_json,
    print_table,
    warn,
)
from prmodel.errors import PrmodelError
from prmodel.measure.cluster import ClusterSettings, sweep_plans_on_cluster
from prmodel.measure.machines import check_plans, stored_targets
from prmodel.measure.plans import DEFAULT_MAX_POINTS, SweepPlan, copy_shipped_plans
from prmodel.measure.recheck import RecheckReport, recheck_store, remeasure_stretches
from prmodel.measure.runner import MeasureSettings, run_sweep
from prmodel.measure.sizing import load_sweep
from prmodel.measure.store import MeasurementStore
from prmodel.targets import get_target, list_targets
from prmodel.workspace import Workspace

PlanArguments = Annotated[
    list[Path],
    typer.Argument(
        help="Plan files (YAML) or folders of them; a bare name is also looked up in the "
        "workspace's sweeps/ folder, then among the plans shipped with prmodel.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    commands: list[tuple[str, Callable[..., None]]] = [
        ("sweep", sweep),
        ("recheck", recheck),
        ("export", export),
        ("show", show),
        ("targets", targets),
        ("init", init),
    ]
    for name, command in commands:
        app.command(name, help=command_help(command))(command)


def command_help(command: Callable[..., object]) -> str:
    """The command's docstring with each paragraph on one line (typer keeps line breaks)."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def sweep(
    plans: PlanArguments,
    target: TargetOption = "cpu",
    workspace: WorkspaceOption = Path("."),
    canary: Annotated[
        bool, typer.Option(help="Measure a canary layer every round to spot disturbances.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the round order.")] = 0,
    max_rounds: Annotated[
        int,
        typer.Option(
            help="Most interleaved rounds per point (3 to 15); a point stops earlier once its "
            "95 % interval is within 1 %. Fewer rounds: a large plan goes several times faster, "
            "noisy points keep a wider interval."
        ),
    ] = 15,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Measure on a Ray cluster instead of here: 'local' (Ray on this machine, "
            "--workers of them), 'auto', HEAD:6379 or ray://HEAD:10001. Needs "
            "pip install 'prmodel\\[cluster]'; see docs/farm.md.",  # \\[: not rich markup
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="With --cluster: the most workers to start (local: default one per CPU for "
            "simulators, 1 for a measured target).",
            show_default=False,
        ),
    ] = None,
    from_other_machine: FromOtherMachineOption = None,
    max_points: Annotated[
        int,
        typer.Option(
            "--max-points",
            min=1,
            help="Refuse a sweep of more points than this (counted before any is built).",
        ),
    ] = DEFAULT_MAX_POINTS,
    yes: Annotated[
        bool, typer.Option("--yes", help="Measure a sweep of any size (no --max-points limit).")
    ] = False,
    reference: Annotated[
        str,
        typer.Option(
            help="With --cluster: workers must match the target as built 'here' (where this "
            "command runs) or as most of the 'cluster' devices report it (for a driver on "
            "another kind of machine, e.g. a laptop with ray://).",
        ),
    ] = "here",
    json_output: JsonOption = False,
) -> None:
    """Measure the layers of sweep plans on a target, resuming what is already stored.

    Every point is committed to the workspace's store (sweeps/measurements.sqlite) the
    moment it is measured: interrupt at any time and run the same command again to resume.
    A bare name finds a plan in the workspace's sweeps/ or among those shipped with prmodel.
    The points are counted first: the sweep says how many and about how long they take, and
    refuses more than --max-points unless confirmed. A plan run again after its file was
    edited keeps only its new points as members (export --plan). Sweeps running at the same
    time on one store claim their points, so none is measured twice.

    Example: prmodel sweep conv_out_channels --target cpu

    Example: prmodel sweep sweeps/networks-<target_id>.yaml --max-rounds 7

    Example: prmodel sweep sweeps/pr.yaml -t scalesim:mode=full --cluster local --workers 2

    Example: prmodel sweep sweeps/pr.yaml -t cpu --cluster ray://HEAD:10001
    """
    ws = Workspace.at(workspace)
    chosen = get_target(target)
    limit = None if yes else max_points
    asked = MeasureSettings(canary=canary, seed=seed, max_rounds=max_rounds)
    loaded, size = load_sweep(plans, ws, chosen, settings=asked, max_points=limit)
    # A plan drawn for another machine (its PRs, its fusions) is refused unless on purpose.
    machine_notes = check_plans(loaded, chosen, from_other_machine=from_other_machine)
    for message in machine_notes:
        warn(message)
    defaults = MeasureSettings()
    if not defaults.min_rounds <= max_rounds <= defaults.max_rounds:
        raise PrmodelError(
            f"--max-rounds must be between {defaults.min_rounds} and {defaults.max_rounds}, "
            f"got {max_rounds}"
        )
    settings = MeasureSettings(canary=canary, seed=seed, max_rounds=max_rounds)
    if not json_output:
        console.print(f"{size.describe()} (points already stored are skipped)")
    if cluster is not None or workers is not None or reference != "here":
        chosen_cluster = _cluster_settings(cluster, workers, reference)
        _sweep_on_cluster(loaded, target, ws, settings, chosen_cluster, json_output)
        return
    reports = []
    with MeasurementStore(ws.store_path, check=True) as store:
        for plan in loaded:
            if not json_output:
                console.print(f"[bold]{plan.name}[/] ({plan.kind.value}, {plan.mode})")
            layers = plan.layers()
            reports.append(
                run_sweep(
                    layers,
                    chosen,
                    store=store,
                    settings=settings,
                    progress=not json_output,
                    plan_name=plan.name,
                    replace_plan=True,
                )
            )
    rows = [report.as_dict() for report in reports]
    if json_output:
        print_json(
            {
                "store": str(ws.store_path),
                "target_id": chosen.target_id,
                "plans": rows,
                "warnings": machine_notes,
            }
        )
        return
    columns = ["plan_name", "requested", "measured", "skipped", "failed", "seconds"]
    print_table(rows, title=f"sweep on {chosen.target_id}", columns=columns)
    console.print(f"store: {ws.store_path}")


def _cluster_settings(address: str | None, workers: int | None, reference: str) -> ClusterSettings:
    if address is None:
        given = "--workers" if workers is not None else "--reference"
        raise PrmodelError(f"{given} needs --cluster (e.g. --cluster local --workers 2)")
    return ClusterSettings(address=address, workers=workers, reference=reference)


def _sweep_on_cluster(
    plans: list[SweepPlan],
    target: str,
    ws: Workspace,
    settings: MeasureSettings,
    chosen: ClusterSettings,
    json_output: bool,
) -> None:

    def announce(plan: SweepPlan) -> None:
        if not json_output:
            console.print(f"[bold]{plan.name}[/] ({plan.kind.value}, {plan.mode})")

    with MeasurementStore(ws.store_path, check=True) as store:
        reports = sweep_plans_on_cluster(
            plans,
            target,
            store=store,
            cluster=chosen,
            settings=settings,
            progress=not json_output,
            on_plan=announce,
        )
    rows = [report.as_dict() for report in reports]
    pool = [asdict(w) for w in reports[-1].workers] if reports else []
    for row in rows:
        row.pop("workers")
    target_id = reports[0].sweep.target_id if reports else None
    if json_output:
        data = {"store": str(ws.store_path), "target_id": target_id, "plans": rows}
        print_json({**data, "workers": pool})
        return
    columns = ["plan_name", "requested", "measured", "skipped", "failed", "requeued", "seconds"]
    print_table(rows, title=f"sweep on {target_id} ({chosen.address})", columns=columns)
    columns = ["worker", "host", "state", "points", "failed", "points_per_s"]
    print_table(pool, title="workers (points since the cluster was opened)", columns=columns)
    if reports:
        first = reports[0].sweep
        console.print(
            f"workers had to match {first.target_id} fingerprint {first.fingerprint_hash}: "
            f"{reports[0].reference}"
        )
    console.print(f"store: {ws.store_path}")


def recheck(
    target: TargetOption = "cpu",
    workspace: WorkspaceOption = Path("."),
    sample: Annotated[
        int, typer.Option(help="Stored points to measure again, spread over the stretches.")
    ] = 120,
    minutes: Annotated[int, typer.Option(help="Length of a stretch of measuring time.")] = 30,
    tolerance: Annotated[
        float, typer.Option(help="Flag a stretch measured more than this much slower or faster.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    fix: Annotated[
        bool, typer.Option("--fix", help="Measure every point of the flagged stretches again.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Check that the store was measured on an equally fast machine throughout.

    Measures a sample of the stored points of the target again (into a temporary store),
    spread over the time they were measured in, and shows per stretch of measuring time how
    much slower than the rest of the store its points were measured (each point judged
    against the others of its layer kind), and per kind how the machine compares now.
    Stretches beyond the tolerance are flagged; --fix measures all their points again,
    replacing them one by one (interrupt and rerun to continue).

    Example: prmodel recheck --target cpu --sample 200 --minutes 10

    Example: prmodel recheck --fix
    """
    ws = Workspace.at(workspace)
    _require_store(ws)
    chosen = get_target(target)
    with MeasurementStore(ws.store_path) as store:
        report = recheck_store(
            store,
            chosen,
            sample=sample,
            bin_minutes=minutes,
            tolerance=tolerance,
            seed=seed,
            progress=not json_output,
        )
        fixed = None
        if fix and report.flagged:
            fixed = remeasure_stretches(
                store, chosen, report.flagged, bin_minutes=minutes, progress=not json_output
            )
    if json_output:
        data = report.as_dict()
        data["remeasured"] = fixed.as_dict() if fixed is not None else None
        print_json(data)
        return
    _print_recheck(report)
    if fixed is not None:
        console.print(
            f"measured {fixed.measured} points of the flagged stretches again "
            f"({fixed.failed} failed and kept their stored point) in {fixed.seconds:.0f} s"
        )
    elif report.flagged:
        console.print("run again with --fix to measure every point of the flagged stretches")


def _print_recheck(report: RecheckReport) -> None:
    stretches = [
        {
            "stretch (UTC)": s.start,
            "stored": s.stored,
            "checked": s.checked,
            "slowdown": s.slowdown,
            "±": s.spread,
            "flagged": "yes" if s.flagged else "",
        }
        for s in report.stretches
    ]
    print_table(
        stretches,
        title=f"{report.target_id}: {report.bin_minutes}-minute stretches (slowdown: how much "
        "slower the machine was when they were measured than for the rest of the store)",
    )
    kinds = [
        {"kind": k.kind, "checked": k.checked, "median": k.median, "p10": k.p10, "p90": k.p90}
        for k in report.by_kind
    ]
    print_table(kinds, title="latency now / stored, by layer kind")
    console.print(
        f"{report.checked} points measured again ({report.failed} could not be): now / stored "
        f"median {report.median:.3f} [p10 {report.p10:.3f}, p90 {report.p90:.3f}]; "
        f"flagged stretches: {', '.join(report.flagged) or 'none'}"
    )
    if len(report.stretches) == 1:
        console.print(
            "the store was measured within one stretch, so no stretch can be judged against "
            "another; now / stored says how the machine compares today"
        )


def export(
    out: Annotated[Path, typer.Argument(help="Output file: .parquet or .csv.")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target", "-t", help="Only this target: a stored target_id or a target spec."
        ),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this layer kind, e.g. conv.")] = None,
    plan: Annotated[str | None, typer.Option(help="Only layers requested by this plan.")] = None,
    include_errors: Annotated[
        bool, typer.Option("--include-errors", help="Also rows of layers that failed.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Export measurements from the store to Parquet or CSV (columns: see prmodel.measure.store).

    Example: prmodel export conv.parquet --target cpu --kind conv
    """
    ws = Workspace.at(workspace)
    _require_store(ws)
    with MeasurementStore(ws.store_path, readonly=True) as store:
        target_id = _resolve_target_id(store, target) if target else None
        if plan is not None and plan not in (known := store.plan_names()):
            raise PrmodelError(
                f"the store has no plan named {plan!r} (plans: {', '.join(known) or 'none'})"
            )
        rows = store.export(
            out, target_id=target_id, kind=kind, plan=plan, include_errors=include_errors
        )
    console.print(f"wrote {rows} rows to {out}")


def _require_store(ws: Workspace) -> None:
    if not ws.store_path.exists():
        raise PrmodelError(f"no measurement store at {ws.store_path}; run 'prmodel sweep' first")


def _resolve_target_id(store: MeasurementStore, target: str) -> str:

    if target in set(store.targets()["target_id"]):
        return target
    return get_target(target).target_id


def show(
    workspace: WorkspaceOption = Path("."),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="First run SQLite's integrity check on the store (exit 2 if it is damaged).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Summarise the measurement store: layers per target and kind, the plans recorded,
    how fast the machine was in each hour of measuring (from the sweep's canary), and which
    cluster worker measured what (sweeps run with --cluster). The store is only read, so
    this works on a read-only workspace.

    Example: prmodel show --workspace my_ws

    Example: prmodel show --check
    """
    ws = Workspace.at(workspace)
    _require_store(ws)
    with MeasurementStore(ws.store_path, readonly=True) as store:
        if check:
            store.check_integrity()
            if not json_output:
                console.print(f"integrity check of {ws.store_path}: ok")
        rows = store.summary().to_dict("records")
        plans = store.plan_names()
        speed = store.machine_speed().round({"canary_us": 1, "relative": 3}).to_dict("records")
        found = store.workers().round({"canary_us": 1}).to_dict("records")
        machines = [
            {"target_id": t.target_id, "fingerprint": t.fingerprint_hash, "rows": t.rows}
            | {"measured on": t.describe().removeprefix(f"{t.target_id} on ")}
            for t in stored_targets(store)
        ]
    # NaN (no canary: a deterministic target) is shown as "-" and written as JSON null
    workers = [{k: (None if v != v else v) for k, v in row.items()} for row in found]
    if json_output:
        print_json(
            {
                "store": str(ws.store_path),
                "layers": rows,
                "plans": plans,
                "machine_speed": speed,
                "measured_by": workers,
                "machines": machines,
            }
        )
        return
    print_table(rows, title=f"measurements in {ws.store_path}")
    if machines:
        print_table(machines, title="the machines the rows were measured on")
    console.print(f"plans: {', '.join(plans) if plans else '(none)'}")
    if speed:
        print_table(
            speed,
            title="machine speed by hour (the sweep canary's median wall time; relative to the "
            "fastest hour of the same target)",
        )
    if workers:
        print_table(
            workers,
            title="measured by cluster workers (canary_us: the median canary time of their "
            "points; a host slower than its peers shows a higher one)",
        )


def targets(json_output: JsonOption = False) -> None:
    """List the targets this installation knows and whether they can run here.

    Example: prmodel targets --json
    """

    rows = [asdict(info) for info in list_targets()]
    if json_output:
        print_json(rows)
        return
    print_table(rows, title="targets", columns=["name", "available", "description", "note"])


def init(
    directory: Annotated[Path, typer.Argument(help="Folder of the new workspace.")],
) -> None:
    """Create a workspace with the shipped sweep plans copied into its sweeps/ folder.

    Existing files are kept, so running it on a workspace again only adds missing plans.

    Example: prmodel init my_ws && prmodel sweep my_ws/sweeps/conv_out_channels.yaml -w my_ws
    """
    ws = Workspace.at(directory).create()
    copied = copy_shipped_plans(ws)
    console.print(f"workspace {ws.root}: copied {len(copied)} plans into {ws.sweeps_dir}")
