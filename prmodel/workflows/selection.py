"""The ``prmodel select`` stage: measure the designed 1-D sweeps, then select the PRs.

:func:`run_selection` designs the initial sweeps (:func:`prmodel.select.selection.initial_sweeps`),
measures what the store lacks through the sweep runner, selects the representatives
(:func:`prmodel.select.selection.select_representatives`) and writes the PR file and its
plots. :func:`ensure_representatives` reads a target's saved PR file or runs the selection
when it is missing. The stages below never measure; this module is where selection does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from prmodel.layers import LayerKind
from prmodel.measure.plans import save_plans
from prmodel.measure.runner import MeasureSettings, run_sweep
from prmodel.measure.store import MeasurementStore
from prmodel.select.plots import save_plots
from prmodel.select.pr_file import check_representatives, refuse_old_pr_file
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.select.selection import (
    InitialSweep,
    ParameterSweep,
    initial_sweeps,
    profile_record,
    select_representatives,
)
from prmodel.select.spaces import ParameterSpace
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.targets.identity import made_for
from prmodel.targets.profiles import HardwareProfile, profile_for
from prmodel.workspace import Workspace

# -- the selection stage ----------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`run_selection` did and wrote."""

    representatives: RepresentativeSet
    path: Path
    plan_path: Path
    plots: tuple[Path, ...]
    sweeps: tuple[ParameterSweep, ...]
    profile: HardwareProfile
    measured: int
    skipped: int
    failed: int
    seconds: float

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "kind",
        "parameter",
        "steps",
        "offset",
        "start",
        "confidence",
        "prs",
        "points",
        "profile",
    )
    """The columns of :meth:`rows` that a summary table shows, in order."""

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per analysed parameter (the CLI's and the benchmark's table)."""
        return [_summary_row(steps) for steps in self.representatives.steps]


def _summary_row(steps: ParameterSteps) -> dict[str, Any]:
    evidence = steps.evidence if isinstance(steps.evidence, Mapping) else {}
    sweep = evidence.get("sweep") or {}
    return {
        "kind": steps.kind.value,
        "parameter": steps.parameter,
        "steps": steps.label if sweep else "not swept",
        "period": steps.period,
        "offset": steps.offset if steps.period else None,
        "start": steps.start or None,
        "confidence": round(float(steps.confidence), 3),
        "prs": len(steps.representatives),
        "points": len(sweep.get("values", [])),
        "profile": _profile_column(evidence),
    }


def _profile_column(evidence: Mapping[str, Any]) -> str:
    verdict = str(evidence.get("profile_verdict", "none"))
    proposed = evidence.get("profile_periods") or []
    if verdict == "none" or not proposed:
        return "no proposal"
    return f"{verdict} ({'/'.join(str(p) for p in proposed)})"


def run_selection(
    target: Target,
    *,
    workspace: Workspace,
    kinds: Iterable[LayerKind | str] | None = None,
    profile: HardwareProfile | None = None,
    spaces: Mapping[LayerKind, ParameterSpace] | None = None,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plots: bool = True,
    min_confidence: float = 0.25,
) -> SelectionResult:
    """Sweep, detect and select on ``target``: the whole ``prmodel select`` stage.

    Designs the initial 1-D sweeps from the profile and the spaces
    (:func:`prmodel.select.selection.initial_sweeps`), writes them as the plan file
    ``sweeps/initial-<target_id>.yaml``, measures what the store lacks through the sweep
    runner (plans ``initial-<kind>-<parameter>``; already measured points are reused), detects
    the steps, selects the representatives and writes ``representatives/<target_id>.yaml``
    and one plot per swept parameter into ``representatives/<target_id>/``.

    Args:
        target: The target to measure (a :class:`~prmodel.targets.base.Target`).
        workspace: The :class:`~prmodel.workspace.Workspace` to read and write.
        kinds: Layer kinds to analyse (default: every kind).
        profile: The hardware profile (default: :func:`prmodel.targets.profiles.profile_for`).
        spaces: Parameter spaces per kind (default: the default spaces).
        settings: :class:`prmodel.measure.runner.MeasureSettings` for noisy targets.
        progress: Show the runner's progress bars.
        plots: Write the PNG plots.
        min_confidence: Steps below this confidence are treated as none.
    """
    started = time.perf_counter()
    profile = profile or profile_for(target)
    designs = initial_sweeps(list(kinds or LayerKind), profile=profile, spaces=spaces)
    plan_path = save_plans(
        [d.plan for d in designs],
        workspace.sweeps_dir / f"initial-{target.target_id}.yaml",
        made_for=made_for(target),
    )
    sweeps, counts = _measure_sweeps(designs, target, workspace, settings, progress=progress)
    metadata = {
        "profile": profile_record(profile),
        "fingerprint_hash": fingerprint_hash(target.fingerprint()),
        "fingerprint": target.fingerprint(),
        "plan_file": _relative(plan_path, workspace.root),
        "min_confidence": min_confidence,
    }
    representatives = select_representatives(
        sweeps,
        target_id=target.target_id,
        profile=profile,
        spaces=spaces,
        min_confidence=min_confidence,
        deterministic=bool(getattr(target, "deterministic", False)),
        metadata=metadata,
    )
    path = representatives.save(workspace.representatives_path(target.target_id))
    written = save_plots(representatives, workspace.plots_dir(target.target_id)) if plots else []
    return SelectionResult(
        representatives=representatives,
        path=path,
        plan_path=plan_path,
        plots=tuple(written),
        sweeps=tuple(sweeps),
        profile=profile,
        seconds=time.perf_counter() - started,
        **counts,
    )


def _measure_sweeps(
    designs: Sequence[InitialSweep],
    target: Target,
    workspace: Workspace,
    settings: MeasureSettings | None,
    *,
    progress: bool,
) -> tuple[list[ParameterSweep], dict[str, int]]:
    """Measure what the store lacks of every designed sweep, in random order (plan
    membership recorded)."""
    sweeps: list[ParameterSweep] = []
    counts = {"measured": 0, "skipped": 0, "failed": 0}
    rng = np.random.default_rng(0)
    with MeasurementStore(workspace.store_path) as store:
        for design in designs:
            # Measured in sweep order, a drift of the machine (or the runner's chunks of
            # neighbouring values) would look like plateaus; a random order turns it into
            # noise that detection averages out.
            shuffled = [design.layers[i] for i in rng.permutation(len(design.layers))]
            report = run_sweep(
                shuffled,
                target,
                store=store,
                settings=settings,
                progress=progress,
                plan_name=design.plan.name,
            )
            for name in counts:
                counts[name] += getattr(report, name)
            frame = store.frame(
                target_id=target.target_id,
                fingerprint_hash=report.fingerprint_hash,
                layer_keys=[layer.key for layer in design.layers],
            )
            if len(frame):  # a kind the target cannot run has no rows
                plan = design.plan.name
                sweeps.append(
                    ParameterSweep.from_frame(
                        frame, kind=design.kind, parameter=design.parameter, plan=plan
                    )
                )
    return sweeps, counts


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# -- the PR set of a target -------------------------------------------------------------------


def ensure_representatives(
    target: Target,
    *,
    workspace: Workspace,
    kinds: Sequence[LayerKind],
    measure: MeasureSettings | None = None,
    progress: bool = True,
) -> tuple[RepresentativeSet, Path]:
    """The target's PR set: read from the workspace, or selected from fresh 1-D sweeps.

    Selection follows ``prmodel select`` (:func:`run_selection`): the initial sweeps designed
    from the hardware profile are measured through the store, the plateaus are found, and the
    set is saved to ``representatives/<target_id>.yaml`` with its plots. A saved set lacking
    one of ``kinds`` is selected again for all of them.

    Args:
        target: The target whose PRs are wanted.
        workspace: Where the PR file, the store and the sweep plans live.
        kinds: Layer kinds the set must cover.
        measure: Runner settings for noisy targets (default: the runner's).
        progress: Show the runner's progress bars.

    Returns:
        The PR set and the path of its file.
    """
    path = workspace.representatives_path(target.target_id)
    if path.is_file():
        saved = RepresentativeSet.load(path)
        check_representatives(saved, path, target, workspace=workspace)
        if all(kind in saved.kinds for kind in kinds):
            return saved, path
    else:
        refuse_old_pr_file(target, workspace)
    result = run_selection(
        target, workspace=workspace, kinds=kinds, settings=measure, progress=progress
    )
    return result.representatives, result.path


__all__ = [
    "SelectionResult",
    "ensure_representatives",
    "run_selection",
]
