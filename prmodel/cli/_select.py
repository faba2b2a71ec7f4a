"""Commands of the selection stage: ``select`` (find the PRs) and ``plan`` (sample a plan)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    print_json,
    print_table,
)
from prmodel.errors import PrmodelError
from prmodel.layers import LayerKind, parse_kind
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.layers import LayerConfig
    from prmodel.select.representatives import SelectionResult
    from prmodel.select.spaces import ParameterSpace
    from prmodel.targets.base import Target

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


def _spaces(path: Path | None) -> dict[LayerKind, ParameterSpace] | None:
    if path is None:
        return None
    from prmodel.select.spaces import default_spaces, load_spaces

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
    from prmodel.measure.runner import MeasureSettings
    from prmodel.select.representatives import run_selection
    from prmodel.targets import get_target
    from prmodel.targets.profiles import profile_for

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
    """
    from prmodel.measure.plans import plan_from_layers, save_plans
    from prmodel.targets import get_target

    ws = Workspace.at(workspace)
    default_budget, budgets = parse_budget(budget)
    chosen = get_target(target)
    chosen_kinds = parse_kinds(kinds)
    spaces = _spaces(space)
    if sampler == "networks":
        sample, held = _network_sampler(networks, chosen, spaces, random_share)
        if kinds == "all":
            chosen_kinds = [kind for kind in LayerKind if kind in held]
    elif networks:
        raise SelectCommandError("--networks only applies to --sampler networks")
    else:
        sample = _sampler(
            sampler, chosen, ws, spaces, representatives, draw=draw, progress=not json_output
        )
    prefix = name or sampler
    plans = []
    for kind in chosen_kinds:
        layers = sample(kind, budgets.get(kind, default_budget), seed)
        if layers:
            plans.append(plan_from_layers(f"{prefix}-{kind.value}", layers, description=sampler))
    if not plans:
        raise SelectCommandError(f"the {sampler} sampler produced no layers for {kinds}")
    path = save_plans(plans, out or ws.sweeps_dir / f"{prefix}-{chosen.target_id}.yaml")
    rows = [{"plan": p.name, "kind": p.kind.value, "layers": len(p.layers())} for p in plans]
    if json_output:
        by_kind = {kind.value: n for kind, n in budgets.items()}
        print_json(
            {
                "file": str(path),
                "sampler": sampler,
                "budget": default_budget,
                "budget_by_kind": by_kind,
                "plans": rows,
            }
        )
        return
    print_table(rows, title=f"{sampler} plan, budget {budget} per kind")
    console.print(f"plan file: {path}  (run it: prmodel sweep {path} --target {target})")


DrawFn = Callable[[LayerKind, int, int], "list[LayerConfig]"]


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


def _network_sampler(
    paths: list[Path] | None,
    target: Target,
    spaces: dict[LayerKind, ParameterSpace] | None,
    random_share: float,
) -> tuple[DrawFn, set[LayerKind]]:
    """The networks sampler over the ONNX files named (folders expanded) and their kinds."""
    from prmodel.estimate.estimator import network_layers
    from prmodel.select.network_prior import NetworkSampler

    files: list[Path] = []
    for path in paths or []:
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if not found:
                raise SelectCommandError(f"no .onnx files in the folder {path}")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise SelectCommandError(f"network file {path} does not exist")
    if not files:
        raise SelectCommandError("--sampler networks needs --networks FILE_OR_FOLDER")
    layers = network_layers(files, target)
    sampler = NetworkSampler(layers, spaces, random_share=random_share)
    held = {layer.kind for found in layers.values() for layer in found}
    return (lambda kind, budget, seed: sampler.sample(kind, budget, seed=seed)), held


def _sampler(
    name: str,
    target: Target,
    ws: Workspace,
    spaces: dict[LayerKind, ParameterSpace] | None,
    pr_file: Path | None,
    *,
    draw: str,
    progress: bool,
) -> DrawFn:
    from prmodel.select.samplers import SAMPLERS, PRSampler, RandomSampler

    if name == "pr":
        from prmodel.select.representatives import RepresentativeSet

        path = pr_file or ws.representatives_path(target.target_id)
        if not path.exists():
            raise SelectCommandError(
                f"no Performance Representatives at {path}: run "
                f"`prmodel select --target {target.name}` first or pass --representatives"
            )
        pr = PRSampler(RepresentativeSet.load(path), spaces, draw=draw)
        return lambda kind, budget, seed: pr.sample(kind, budget, seed=seed)
    if name == "random":
        random = RandomSampler(spaces)
        return lambda kind, budget, seed: random.sample(kind, budget, seed=seed)
    if name == "adaptive":
        return _adaptive(target, ws, spaces, progress=progress)
    choices = ", ".join((*SAMPLERS, "networks"))
    raise SelectCommandError(f"unknown sampler {name!r} (samplers: {choices})")


def _adaptive(
    target: Target,
    ws: Workspace,
    spaces: dict[LayerKind, ParameterSpace] | None,
    *,
    progress: bool,
) -> DrawFn:
    from prmodel.select.samplers import AdaptiveSampler, log_feature_fit_predict

    def draw(kind: LayerKind, budget: int, seed: int) -> list[LayerConfig]:
        measure = _runner_measure(target, ws, plan_name=f"adaptive-{kind.value}", progress=progress)
        sampler = AdaptiveSampler(spaces, measure=measure, fit_predict=log_feature_fit_predict)
        layers = sampler.sample(kind, budget, seed=seed)
        if progress:
            for number, step in enumerate(sampler.history_, start=1):
                console.print(
                    f"{kind.value} round {number}: batch MAPE {step['batch_mape']:.1f} %, "
                    f"{100 * step['above_threshold']:.0f} % above 10 %, "
                    f"{int(step['neighbours'])} neighbours added"
                )
        return layers

    return draw


def _runner_measure(
    target: Target, ws: Workspace, *, plan_name: str, progress: bool
) -> Callable[[Any], Any]:
    import numpy as np

    from prmodel.measure.runner import measure_layers
    from prmodel.measure.store import MeasurementStore

    def measure(layers: list[LayerConfig]) -> np.ndarray:
        with MeasurementStore(ws.store_path) as store:
            frame = measure_layers(
                layers, target, store=store, progress=progress, plan_name=plan_name
            )
        latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
        return np.array([latency.get(layer.key, np.nan) for layer in layers], dtype=float)

    return measure
