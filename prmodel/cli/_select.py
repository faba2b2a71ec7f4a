"""Commands of the selection stage: ``select`` (find the PRs) and ``plan`` (sample a plan)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
from prmodel.layers import LayerKind, parse_kind
from prmodel.measure.runner import MeasureSettings
from prmodel.select.spaces import ParameterSpace, default_spaces, load_spaces
from prmodel.targets import get_target
from prmodel.targets.profiles import profile_for
from prmodel.workflows.planning import PlanResult, write_plan
from prmodel.workflows.selection import SelectionResult, run_selection
from prmodel.workspace import Workspace

KindsOption = Annotated[
    str,
    typer.Option("--kinds", "-k", help="Comma-separated layer kinds (conv,dense,...) or 'all'."),
]
DEFAULT_SELECT_KINDS = "conv,dense,maxpool,avgpool,globalavgpool,add,relu"
"""One kind per family: the other element-wise ops and activations sweep like add and relu,
so the default stays at a few minutes on one CPU core (``--kinds all`` sweeps every kind)."""
SpaceOption = Annotated[
    Path | None,
    typer.Option("--space", help="YAML file with parameter spaces replacing the defaults."),
]


class SelectCommandError(PrmodelError, ValueError):
    """A selection or planning request the command cannot serve."""


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    commands: list[tuple[str, Callable[..., None]]] = [("select", select), ("plan", plan)]
    for name, command in commands:
        app.command(name, help=_help(command))(command)


def _help(command: Callable[..., object]) -> str:
    # typer keeps a docstring's line breaks; join each paragraph into one line.
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def parse_kinds(text: str) -> list[LayerKind]:
    """``conv,dense`` -> kinds; ``all`` -> every kind (an unknown kind is a clear error)."""
    if text.strip().lower() == "all":
        return list(LayerKind)
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise SelectCommandError("--kinds names no layer kind")
    return list(dict.fromkeys(parse_kind(name) for name in names))


def parse_budget(text: str) -> tuple[int, dict[LayerKind, int]]:
    """``1000`` or ``conv=2500,400``: the default budget and the per-kind ones."""
    default: int | None = None
    per_kind: dict[LayerKind, int] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, number = item.rpartition("=")
        try:
            value = int(number)
        except ValueError:
            raise SelectCommandError(
                f"--budget {text!r}: {item!r} is not a number of layers (e.g. 400 or conv=2500)"
            ) from None
        if value < 1:
            raise SelectCommandError(f"--budget {text!r}: the budget must be positive, got {value}")
        if name:
            per_kind[parse_kind(name.strip())] = value
        elif default is None:
            default = value
        else:
            raise SelectCommandError(f"--budget {text!r} gives more than one default budget")
    if default is None:
        raise SelectCommandError(f"--budget {text!r} needs a default budget, e.g. conv=2500,400")
    return default, per_kind


def _spaces(path: Path | None) -> dict[LayerKind, ParameterSpace] | None:
    if path is None:
        return None
    return {**default_spaces(), **load_spaces(path)}


def select(
    target: TargetOption = "cpu",
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="Hardware profile YAML instead of the detected one."),
    ] = None,
    kinds: KindsOption = DEFAULT_SELECT_KINDS,
    space: SpaceOption = None,
    workspace: WorkspaceOption = Path("."),
    min_confidence: Annotated[
        float, typer.Option(help="Steps found with a lower confidence are treated as none.")
    ] = 0.25,
    plots: Annotated[bool, typer.Option(help="Write one PNG per swept parameter.")] = True,
    canary: Annotated[
        bool, typer.Option(help="Measure a canary layer every round to spot disturbances.")
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Find a target's Performance Representatives from 1-D sweeps.

    Designs one sweep per parameter from the hardware profile (dense around the periods it
    proposes), writes them to sweeps/initial-<target_id>.yaml, measures what the store
    lacks (interrupt and rerun to resume), detects the steps, and writes the PRs with their
    evidence to representatives/<target_id>.yaml and plots to representatives/<target_id>/.
    By default one kind per family is swept (conv, dense, pooling, add, relu: a few minutes
    on one CPU core); --kinds all sweeps every kind.

    Example: prmodel select --target cpu --kinds conv,dense
    """
    ws = Workspace.at(workspace)
    chosen = get_target(target)
    hardware = profile_for(chosen, override=profile)
    chosen_kinds = parse_kinds(kinds)
    if not json_output:
        console.print(f"profile: [bold]{hardware.name}[/] ({hardware.source})")
    result = run_selection(
        chosen,
        workspace=ws,
        kinds=chosen_kinds,
        profile=hardware,
        spaces=_spaces(space),
        settings=MeasureSettings(canary=canary),
        progress=not json_output,
        plots=plots,
        min_confidence=min_confidence,
    )
    _render_selection(result, json_output=json_output)


def _render_selection(result: SelectionResult, *, json_output: bool) -> None:
    rows = result.rows()
    if json_output:
        print_json(
            {
                "target_id": result.representatives.target_id,
                "profile": result.profile.name,
                "representatives": str(result.path),
                "plan_file": str(result.plan_path),
                "plots": [str(p) for p in result.plots],
                "measured": result.measured,
                "skipped": result.skipped,
                "failed": result.failed,
                "seconds": round(result.seconds, 1),
                "parameters": rows,
            }
        )
        return
    print_table(
        rows,
        title=f"Performance Representatives of {result.representatives.target_id}",
        columns=result.TABLE_COLUMNS,
    )
    console.print(
        f"measured {result.measured}, reused {result.skipped}, failed {result.failed} "
        f"points in {result.seconds:.0f} s"
    )
    console.print(f"representatives: {result.path}")
    console.print(f"sweep plans: {result.plan_path}")
    if result.plots:
        console.print(f"plots: {result.plots[0].parent}/ ({len(result.plots)} files)")


def plan(
    sampler: Annotated[
        str, typer.Option("--sampler", "-s", help="pr, random, adaptive or networks.")
    ] = "pr",
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            "-n",
            help="Layers per kind: a number, or per kind with a default, e.g. conv=2500,400.",
        ),
    ] = "1000",
    target: TargetOption = "cpu",
    kinds: KindsOption = "all",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Plan file (default sweeps/<sampler>-<target_id>.yaml)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Plan name prefix; plans are named <name>-<kind> (default: sampler)."),
    ] = None,
    representatives: Annotated[
        Path | None,
        typer.Option(help="PR file for the pr sampler (default representatives/<target_id>.yaml)."),
    ] = None,
    space: SpaceOption = None,
    draw: Annotated[
        str,
        typer.Option(
            help="pr only: 'space' draws layers on the space's scale and moves them to their "
            "plateau's PR; 'balanced' uses every PR value equally often (Latin-hypercube style)."
        ),
    ] = "space",
    networks: Annotated[
        list[Path] | None,
        typer.Option(
            "--networks",
            help="networks only: ONNX files or folders of them whose layers the plan is "
            "drawn around (repeat the option for several).",
        ),
    ] = None,
    random_share: Annotated[
        float,
        typer.Option(help="networks only: share of each budget drawn at random from the space."),
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    workspace: WorkspaceOption = Path("."),
    from_other_machine: FromOtherMachineOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a benchmark plan of BUDGET layers per kind that `prmodel sweep` runs.

    pr combines the target's Performance Representatives (run `prmodel select` first);
    random draws from the parameter spaces; adaptive measures as it plans: it starts random,
    fits a small model (extra trees on log features) and adds layers around the points it
    predicts worst, measuring through the sweep runner into the store, so sweeping its plan
    afterwards finds everything measured; networks takes the layers that the given ONNX
    networks run on the target (fused as the runtime fuses them), adds neighbours of them
    (sizes moved by up to 2x) and a share of random layers: a training set close to the
    networks you will estimate (--kinds all: the kinds those networks hold).

    Example: prmodel plan --sampler pr --budget 1000 --target cpu --kinds conv,dense

    Example: prmodel plan --sampler networks --networks benchmarks/networks --budget conv=2500,400

    A PR file selected on another machine (another CPU, ISA or ONNX Runtime) is refused;
    --from-other-machine TARGET_ID uses that target's PR file on purpose.
    """
    default_budget, budgets = parse_budget(budget)
    chosen = get_target(target)
    chosen_kinds = parse_kinds(kinds)
    if networks and sampler != "networks":
        raise SelectCommandError("--networks only applies to --sampler networks")
    result = write_plan(
        sampler,
        chosen,
        workspace=Workspace.at(workspace),
        budget=default_budget,
        budgets=budgets,
        # networks with --kinds all: the kinds the networks hold
        kinds=None if sampler == "networks" and kinds == "all" else chosen_kinds,
        seed=seed,
        spaces=_spaces(space),
        representatives=representatives,
        draw=draw,
        networks=networks or [],
        random_share=random_share,
        name=name,
        out=out,
        progress=not json_output,
        from_other_machine=from_other_machine,
    )
    if json_output:
        print_json(
            {
                "file": str(result.path),
                "sampler": result.sampler,
                "budget": default_budget,
                "budget_by_kind": {kind.value: n for kind, n in budgets.items()},
                "plans": result.rows(),
                "from_other_machine": result.from_other_machine,
                "warnings": list(result.warnings),
            }
        )
        return
    for message in result.warnings:
        warn(message)
    _render_plan(result, budget_text=budget, target=target)


def _render_plan(result: PlanResult, *, budget_text: str, target: str) -> None:
    for kind, rounds in result.rounds.items():
        for number, step in enumerate(rounds, start=1):
            console.print(
                f"{kind.value} round {number}: batch MAPE {step['batch_mape']:.1f} %, "
                f"{100 * step['above_threshold']:.0f} % above 10 %, "
                f"{int(step['neighbours'])} neighbours added"
            )
    print_table(result.rows(), title=f"{result.sampler} plan, budget {budget_text} per kind")
    console.print(
        f"plan file: {result.path}  (run it: prmodel sweep {result.path} --target {target})"
    )
