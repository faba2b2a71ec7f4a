"""Evaluation: learning curves of PR vs random vs adaptive sampling, noise floor, whole networks.

:func:`evaluate` reproduces, on one target, the claim prmodel exists for: Performance
Representatives reach a given accuracy with far fewer benchmarks than random sampling.

1. The target's PR set is loaded from ``representatives/<target_id>.yaml`` or selected from
   the initial 1-D sweeps (as ``prmodel select`` does) and saved there.
2. Held-out test sets per kind (:mod:`prmodel.workflows.datasets`): ``test_size`` random
   layers of the kind's space (plan ``test-<kind>``, drawn with the one test seed) plus every
   layer of that kind in the reference networks (plan ``testnet-<kind>``). Sampled training
   layers that are also test layers are dropped (by layer key), so every sampler is judged on
   the same points.
3. For each kind, sampler, budget and seed: sample, measure through the store (resumable),
   fit the regressor with fixed hyper-parameters (``trials`` Optuna trials, 0 by default so
   the curves take bounded time) and score it on the test sets.
4. The noise floor: the random test layers measured again into a temporary store; the MAPE
   of the repeat against the first measurement is the accuracy no model can beat (0 on
   deterministic targets).
5. Whole networks at ``network_budget``: for deterministic targets the truth is the sum of
   the target's latency over the network's mapped layers of the evaluated kinds and the
   prediction the sum of the model's; for ONNX Runtime targets the network is run and the
   profiled time of its modelled kernels is compared with their predictions.

Every figure lands in :class:`~prmodel.workflows.evaluation_results.EvaluationResult` frames
(curve rows have the columns of its :data:`CURVE_COLUMNS`), the learning-curve fits are in
:mod:`prmodel.workflows._curves`; :mod:`prmodel.workflows.reports` writes them as CSV,
markdown, JSON and plots and logs the run to MLflow.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.runner import MeasureSettings, measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.metrics import summarize
from prmodel.select.dimensions import Limits
from prmodel.select.samplers import space_for
from prmodel.targets.cpu import machine_info
from prmodel.workflows._curves import CurveContext, Fit, fit_one, network_rows
from prmodel.workflows.datasets import TestSet, build_test_sets, network_layers_by_kind
from prmodel.workflows.evaluation_results import (
    CURVE_COLUMNS,
    METRICS,
    NETWORK_COLUMNS,
    EvaluationError,
    EvaluationResult,
    EvaluationSettings,
)
from prmodel.workflows.selection import ensure_representatives
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    import onnx

    from prmodel.targets.base import Target


# -- the noise floor --------------------------------------------------------------------------


def noise_floor(
    target: Target,
    test_sets: Mapping[LayerKind, TestSet],
    *,
    points: int | None = None,
    measure: MeasureSettings | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Per kind, the error of a repeat measurement of the random test layers.

    The repeat goes into a temporary store, so nothing of the first measurement is reused or
    replaced. Deterministic targets get zeros without measuring: a repeat is identical.
    """
    rows = []
    for kind, tests in test_sets.items():
        first = tests.random.head(points) if points is not None else tests.random
        if target.deterministic or first.empty:
            zeros = dict.fromkeys(("mape", "rmspe"), 0.0)
            rows.append(
                {
                    "kind": kind.value,
                    **zeros,
                    "within_5": 100.0,
                    "within_10": 100.0,
                    "spearman": 1.0,
                    "points": len(first),
                    "repeated": False,
                }
            )
            continue
        with (
            tempfile.TemporaryDirectory(prefix="prmodel-noise-") as folder,
            MeasurementStore(Path(folder) / "repeat.sqlite") as repeat_store,
        ):
            again = measure_layers(
                layers_from_frame(first),
                target,
                store=repeat_store,
                settings=measure,
                progress=progress,
            )
        joined = first.merge(again, on="layer_key", suffixes=("", "_repeat"))
        figures = summarize(joined["latency_us"], joined["latency_us_repeat"])
        rows.append(
            {
                "kind": kind.value,
                **{m: figures[m] for m in METRICS},
                "points": len(joined),
                "repeated": True,
            }
        )
    return pd.DataFrame(rows)


# -- the whole evaluation ---------------------------------------------------------------------


def evaluate(
    target: Target,
    *,
    workspace: Workspace,
    settings: EvaluationSettings | None = None,
    networks: Sequence[str | Path | onnx.ModelProto] = (),
    prior_networks: Sequence[str | Path | onnx.ModelProto] = (),
    progress: bool = True,
) -> EvaluationResult:
    """Learning curves, noise floor, whole-network errors and costs of every sampler.

    Args:
        target: The target to evaluate on.
        workspace: Its store holds every measurement (a rerun reuses them) and its
            ``representatives/`` the PR set (selected and saved there when missing).
        settings: Kinds, budgets, samplers, seeds, test size, regressor.
        networks: Test networks (paths or ModelProtos) whose layers join the test sets
            and whose whole-network error is reported.
        prior_networks: Networks whose layers the ``networks`` sampler draws around (the
            network prior); they must not be test networks, so that the network-like test
            layers come from networks no sampler saw.
        progress: Progress bars on stderr.

    Raises:
        EvaluationError: bad settings or nothing measurable, the ``networks`` sampler
            without prior networks, or a network both a prior and a test network.
    """
    settings = settings or EvaluationSettings()
    started = time.perf_counter()
    prior = prior_layers(target, settings, prior_networks)
    with MeasurementStore(workspace.store_path) as store:
        digest = store.register_target(target.target_id, target.fingerprint())
        representatives, pr_path = ensure_representatives(
            target,
            workspace=workspace,
            kinds=settings.kinds,
            measure=settings.measure,
            progress=progress,
        )
        per_network = network_layers_by_kind(networks, target, settings.kinds)
        shared = sorted(set(per_network) & set(prior))
        if shared:
            raise EvaluationError(
                f"network {shared[0]!r} is both a prior network and a test network; "
                "test networks must be networks no sampler saw"
            )
        tests = build_test_sets(
            target,
            store=store,
            kinds=settings.kinds,
            size=settings.test_size,
            networks=per_network,
            measure=settings.measure,
            progress=progress,
            spaces=settings.spaces,
        )
        noise = noise_floor(
            target, tests, points=settings.noise_points, measure=settings.measure, progress=progress
        )
        ctx = CurveContext(target, store, settings, representatives, tests, progress, prior=prior)
        fits = _run_curves(ctx)
        final = [f for f in fits if f.budget == settings.whole_network_budget]
        compare_whole = per_network and settings.whole_networks
        whole_rows = network_rows(ctx, final, networks, {}) if compare_whole else []
    curve_rows = [row for fit in fits for row in fit.rows]
    return EvaluationResult(
        target_id=target.target_id,
        fingerprint_hash=digest,
        deterministic=target.deterministic,
        settings=settings,
        curves=pd.DataFrame(curve_rows, columns=list(CURVE_COLUMNS)),
        networks=pd.DataFrame(whole_rows, columns=list(NETWORK_COLUMNS)),
        noise=noise,
        costs=ctx.costs.frame(),
        test_sizes={
            kind.value: {"random": len(t.random), "networks": len(t.networks)}
            for kind, t in tests.items()
        },
        representatives_path=pr_path,
        network_names=tuple(per_network),
        seconds=time.perf_counter() - started,
        machine=machine_info(libraries=("onnxruntime", "xgboost-cpu")),
    )


def prior_layers(
    target: Target,
    settings: EvaluationSettings,
    networks: Sequence[str | Path | onnx.ModelProto],
) -> dict[str, tuple[LayerConfig, ...]]:
    """Each prior network's layers of the evaluated kinds that the target supports.

    With ``settings.spaces``, layers beyond a space's limits are left out, as from the test
    networks: every sampler draws within the same bound of work.
    """
    if "networks" in settings.samplers and not networks:
        raise EvaluationError(
            "the networks sampler needs prior networks to draw around "
            "(prior_networks=..., or --prior-networks on the command line)"
        )
    if "networks" not in settings.samplers:
        return {}
    spaces = settings.spaces
    limits = {k: space_for(spaces, k).limits if spaces else Limits() for k in settings.kinds}
    by_kind = network_layers_by_kind(networks, target, settings.kinds)
    return {
        name: tuple(x for k in settings.kinds for x in kinds[k] if limits[k].allows(x))
        for name, kinds in by_kind.items()
    }


def _run_curves(ctx: CurveContext) -> list[Fit]:
    s = ctx.settings
    budgets = list(s.budgets)
    if s.whole_network_budget not in budgets:
        budgets.append(s.whole_network_budget)
    jobs = [
        (kind, sampler, budget, seed)
        for kind in s.kinds
        for sampler in s.samplers
        for budget in budgets
        for seed in range(s.seeds)
    ]
    fits = []
    with _progress(len(jobs), enabled=ctx.progress) as advance:
        for kind, sampler, budget, seed in jobs:
            advance(f"{kind.value} {sampler} N={budget} seed {seed}")
            fit = fit_one(ctx, kind, sampler, budget, seed)
            if budget not in s.budgets:  # fitted only for the whole-network comparison
                fit = replace(fit, rows=[])
            fits.append(fit)
    return fits


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda _label: None
        return
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("learning curves", total=total)
        started = [False]

        def advance(label: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=f"learning curves: {label}")

        yield advance
        bar.update(task, completed=total, description="learning curves")


# The settings and result types live in prmodel.workflows.evaluation_results; they stay
# importable from here, where the notebooks and users have always found them.
__all__ = [
    "CURVE_COLUMNS",
    "METRICS",
    "NETWORK_COLUMNS",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSettings",
    "evaluate",
    "noise_floor",
    "prior_layers",
]
