"""The ``prmodel plan`` stage: draw a benchmark plan with a named sampler and save it.

:func:`write_plan` builds the sampler (:func:`prmodel.select.samplers.make_sampler`) from
what it needs: the target's PR file for ``pr``, the runner and the store for ``adaptive``
(which measures as it plans), the layers that ONNX networks run on the target for
``networks``; it draws a budget of layers per kind and writes them as one plan file that
``prmodel sweep`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prmodel.errors import PrmodelError
from prmodel.estimate.estimator import mapped_layers
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.plans import SweepPlan, plan_from_layers, save_plans
from prmodel.measure.runner import measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.select.pr_file import (
    CheckedRepresentatives,
    MissingRepresentativesError,
    representatives_for,
)
from prmodel.select.samplers import AdaptiveSampler, MeasureFn, make_sampler
from prmodel.select.spaces import ParameterSpace
from prmodel.targets.base import Target
from prmodel.targets.identity import made_for
from prmodel.workspace import Workspace


class PlanError(PrmodelError, ValueError):
    """A plan that cannot be drawn (no PR file, no networks, no layers)."""


@dataclass(frozen=True)
class PlanResult:
    """What :func:`write_plan` drew and wrote."""

    path: Path
    sampler: str
    plans: tuple[SweepPlan, ...]
    rounds: Mapping[LayerKind, tuple[Mapping[str, float], ...]] = field(default_factory=dict)
    """The adaptive sampler's rounds per kind (:attr:`AdaptiveSampler.history_`)."""
    warnings: tuple[str, ...] = ()
    """What the check of the PR file's machine has to say (``pr``)."""
    from_other_machine: str | None = None
    """The target id of the PR file used on purpose from another machine (``pr``)."""

    def rows(self) -> list[dict[str, Any]]:
        """One row per plan: its name, kind and number of layers."""
        return [
            {"plan": plan.name, "kind": plan.kind.value, "layers": len(plan.layers())}
            for plan in self.plans
        ]


def write_plan(
    sampler: str,
    target: Target,
    *,
    workspace: Workspace,
    budget: int,
    budgets: Mapping[LayerKind, int] | None = None,
    kinds: Sequence[LayerKind] | None = None,
    seed: int = 0,
    spaces: Mapping[LayerKind, ParameterSpace] | None = None,
    representatives: Path | None = None,
    draw: str = "space",
    networks: Sequence[Path] = (),
    random_share: float = 0.2,
    name: str | None = None,
    out: Path | None = None,
    progress: bool = True,
    from_other_machine: str | None = None,
) -> PlanResult:
    """Draw ``budget`` layers per kind with the sampler ``sampler`` and save them as plans.

    Args:
        sampler: ``pr``, ``random``, ``adaptive`` or ``networks``.
        target: The target the plan is for (its PRs, its network mapping, its runner).
        workspace: Holds the PR file, the store (``adaptive`` measures into it) and
            ``sweeps/``.
        budget: Layers per kind.
        budgets: Budgets of single kinds that differ from ``budget``.
        kinds: Kinds to plan (default: every kind; for ``networks`` the kinds the networks
            hold).
        seed: Seed of the sampler.
        spaces: Parameter spaces per kind (default spaces if None).
        representatives: The PR file for ``pr`` (default ``representatives/<target_id>.yaml``).
        draw: How ``pr`` draws a subset of its product (``space`` or ``balanced``).
        networks: ONNX files or folders of them (``networks`` only).
        random_share: Share of each budget ``networks`` draws at random from the space.
        name: Plan name prefix; plans are named ``<name>-<kind>`` (default: the sampler).
        out: The plan file (default ``sweeps/<name>-<target_id>.yaml``).
        progress: Show the runner's progress bars (``adaptive``).
        from_other_machine: ``pr``: use the PR file of this target id, selected on another
            machine, on purpose (a PR file of another machine is refused otherwise).

    Returns:
        The written plan file and its plans (kinds that gave no layers are left out).

    Raises:
        PlanError: no PR file for ``pr``, no networks for ``networks``, or no layers at all.
        SamplingError: an unknown sampler or a bad budget.
        OtherMachineError: the PR file was selected on another machine (not on purpose).
    """
    budgets = budgets or {}
    checked = None
    if sampler == "pr":
        checked = _pr_set(target, workspace, representatives, from_other_machine)
    prs = checked.representatives if checked is not None else None
    per_network = _mapped_layers(networks, target) if sampler == "networks" else None
    if kinds is None:
        held = {x.kind for layers in (per_network or {}).values() for x in layers}
        kinds = [kind for kind in LayerKind if per_network is None or kind in held]
    prefix = name or sampler
    plans: list[SweepPlan] = []
    rounds: dict[LayerKind, tuple[Mapping[str, float], ...]] = {}
    for kind in kinds:
        measure = None
        if sampler == "adaptive":
            plan_name = f"adaptive-{kind.value}"
            measure = runner_measure(target, workspace, plan_name=plan_name, progress=progress)
        drawer = make_sampler(
            sampler,
            representatives=prs,
            space=spaces,
            draw=draw,
            measure=measure,
            networks=per_network,
            random_share=random_share,
        )
        layers = drawer.sample(kind, budgets.get(kind, budget), seed=seed)
        if isinstance(drawer, AdaptiveSampler):
            rounds[kind] = tuple(drawer.history_)
        if layers:
            plans.append(plan_from_layers(f"{prefix}-{kind.value}", layers, description=sampler))
    if not plans:
        names = ",".join(kind.value for kind in kinds)
        raise PlanError(f"the {sampler} sampler produced no layers for {names}")
    path = save_plans(
        plans,
        out or workspace.sweeps_dir / f"{prefix}-{target.target_id}.yaml",
        made_for=made_for(target),
    )
    return PlanResult(
        path,
        sampler,
        tuple(plans),
        rounds,
        warnings=checked.warnings if checked is not None else (),
        from_other_machine=checked.from_other_machine if checked is not None else None,
    )


def _pr_set(
    target: Target, workspace: Workspace, path: Path | None, from_other_machine: str | None
) -> CheckedRepresentatives:
    try:
        return representatives_for(
            target, workspace, path=path, from_other_machine=from_other_machine
        )
    except MissingRepresentativesError as exc:
        raise PlanError(str(exc)) from None


def network_files(paths: Iterable[Path]) -> list[Path]:
    """The ONNX files named, folders expanded to the ``*.onnx`` files they hold (sorted).

    Raises:
        PlanError: a folder without ONNX files or a file that does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if not found:
                raise PlanError(f"no .onnx files in the folder {path}")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise PlanError(f"network file {path} does not exist")
    return files


def _mapped_layers(paths: Sequence[Path], target: Target) -> dict[str, list[LayerConfig]]:
    files = network_files(paths)
    if not files:
        raise PlanError("--sampler networks needs --networks FILE_OR_FOLDER")
    return mapped_layers(files, target)


def runner_measure(
    target: Target, workspace: Workspace, *, plan_name: str, progress: bool = True
) -> MeasureFn:
    """A measure function for :class:`AdaptiveSampler`: the runner, through the store.

    Each call measures what the store lacks of the layers (recorded under ``plan_name``)
    and returns their latencies in order, NaN where a layer failed.
    """

    def measure(layers: Sequence[LayerConfig]) -> np.ndarray:
        with MeasurementStore(workspace.store_path) as store:
            frame = measure_layers(
                layers, target, store=store, progress=progress, plan_name=plan_name
            )
        latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
        return np.array([latency.get(layer.key, np.nan) for layer in layers], dtype=float)

    return measure


__all__ = ["PlanError", "PlanResult", "network_files", "runner_measure", "write_plan"]
