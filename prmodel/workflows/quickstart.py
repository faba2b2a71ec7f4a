"""The quickstart: the whole PR pipeline on one target with a small budget, in one call.

Stages, each a small function so notebooks and the CLI can reuse them:

1. a conv output-channel sweep that shows the target's latency staircase (table and PNG);
2. Performance Representative selection from the initial 1-D sweeps, with its plots
   (:func:`prmodel.workflows.selection.run_selection`);
3. PR benchmarks (plans ``pr-<kind>``) and random held-out test sets (plans ``test-<kind>``),
   the named sets of :mod:`prmodel.workflows.datasets`;
4. training one model per kind (:func:`prmodel.train.training.train_models`), logged to
   MLflow (:func:`prmodel.train.tracking.log_training`);
5. estimates of reference networks (the tiny networks of :mod:`prmodel.zoo`, written as
   ONNX files into the workspace, plus any the user adds), compared with their measured
   latency on ONNX Runtime targets, or with the target's own layer latencies elsewhere.

Every measurement goes through the workspace's store, so an interrupted quickstart resumes
and a second run measures nothing new. The settings and result types, and the summary they
render, are in :mod:`prmodel.workflows.quickstart_results`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx
import pandas as pd

from prmodel import zoo
from prmodel.estimate.estimator import Estimator, NetworkEstimate
from prmodel.estimate.kernels import NetworkKernels
from prmodel.layers import LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.plans import SweepPlan, save_plans
from prmodel.measure.runner import MeasureSettings, SweepReport, run_sweep
from prmodel.measure.store import MeasurementStore
from prmodel.networks import load_network
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.staircase import JUMP_RATIO, StaircasePoint, plateaus, staircase
from prmodel.targets.base import NetworkRunner, Target, fingerprint_hash
from prmodel.train.settings import TrainSettings
from prmodel.train.tracking import log_training
from prmodel.train.training import OverlapWarning, TrainingReport, train_models
from prmodel.workflows.calibrate import measure_network
from prmodel.workflows.datasets import (
    PR_SET,
    TEST_SET,
    Counts,
    NetworkTruth,
    draw_pr_layers,
    draw_test_layers,
    layer_sum_truth,
    measure_network_set,
    measure_sets,
    profiled_truth,
)
from prmodel.workflows.quickstart_results import (
    QUICK_MEASURE,
    MeasuredCounts,
    NetworkRow,
    QuickstartError,
    QuickstartResult,
    QuickstartSettings,
    StaircaseResult,
    networks_dir,
    summary_path,
    ui_command,
)
from prmodel.workflows.selection import SelectionResult, run_selection
from prmodel.workspace import Workspace

QUICKSTART_PLAN = SweepPlan(
    name="quickstart_conv_out_channels",
    kind=LayerKind.CONV,
    description="conv output channels 1..96 at 32x56x56, k3 p1 (the quickstart)",
    fixed={"channels": 32, "height": 56, "width": 56, "kernel": 3, "padding": 1},
    sweep={"out_channels": tuple(range(1, 97))},
)
"""The quickstart's first sweep: a minute or so on one CPU core."""

TINY_NETWORKS: tuple[str, ...] = ("tiny_resnet", "tiny_mobilenet", "tiny_vgg")
"""The reference networks of :mod:`prmodel.zoo` the quickstart always estimates."""

StageCallback = Callable[[str, str], None]
"""Called when a stage starts, with its short name and a one-line description."""


# -- the whole pipeline -----------------------------------------------------------------------


def run_quickstart(
    workspace: Workspace,
    target: Target,
    *,
    settings: QuickstartSettings | None = None,
    progress: bool = True,
    on_stage: StageCallback | None = None,
) -> QuickstartResult:
    """Run every stage of the pipeline on ``target`` into ``workspace``.

    Args:
        workspace: Where the store, PRs, models, MLflow runs and results go (created).
        target: The target to benchmark.
        settings: Kinds, budgets, trials and extra networks (defaults if None).
        progress: Show the sweep runner's and the tuner's progress bars.
        on_stage: Called as each stage starts (the CLI prints a header).

    Returns:
        The figures of every stage; also written to ``benchmarks/results/quickstart_summary.json``.
    """
    settings = settings or QuickstartSettings()
    announce = on_stage or (lambda name, text: None)
    started = time.perf_counter()
    workspace.create()
    clock = _StageClock()
    announce("staircase", f"1/5 staircase: {QUICKSTART_PLAN.description}")
    with clock("staircase"):
        stairs = sweep_staircase(workspace, target, settings=settings.measure, progress=progress)
    counts = MeasuredCounts().plus(
        stairs.report.measured, stairs.report.skipped, stairs.report.failed
    )
    kinds = ", ".join(k.value for k in settings.kinds)
    announce("select", f"2/5 Performance Representatives of {kinds} from 1-D sweeps")
    with clock("select"):
        selection = select_representatives_for(workspace, target, settings, progress=progress)
    counts = counts.plus(selection.measured, selection.skipped, selection.failed)
    announce(
        "benchmark",
        f"3/5 PR benchmarks ({settings.budget} per kind) and test sets ({settings.test_size})",
    )
    with clock("benchmark"), MeasurementStore(workspace.store_path) as store:
        train, train_counts = benchmark_representatives(
            store, target, selection.representatives, settings, progress=progress
        )
        test, test_counts = measure_test_sets(store, target, settings, progress=progress)
    counts = counts.plus(*train_counts).plus(*test_counts)
    announce("train", f"4/5 training ({settings.trials} Optuna trials per kind)")
    with clock("train"):
        training = train_quickstart_models(
            workspace, target, train, test, selection, settings, progress=progress
        )
    announce("estimate", "5/5 estimating reference networks")
    with clock("estimate"):
        paths = reference_networks(workspace, settings)
        rows, net_counts = estimate_networks(workspace, target, paths, settings, progress=progress)
    counts = counts.plus(*net_counts)
    result = QuickstartResult(
        target_id=target.target_id,
        workspace=workspace,
        settings=settings,
        staircase=stairs,
        selection=selection,
        training=training,
        networks=tuple(rows),
        counts=counts,
        seconds=time.perf_counter() - started,
        stage_seconds=clock.seconds,
    )
    summary_path(workspace).write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result


class _StageClock:
    """Wall seconds per stage, as a context manager factory."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> _StageTimer:
        return _StageTimer(self.seconds, name)


class _StageTimer:
    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self._seconds, self._name, self._start = seconds, name, 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._seconds[self._name] = time.perf_counter() - self._start


# -- stage 1: the staircase -------------------------------------------------------------------


def sweep_staircase(
    workspace: Workspace,
    target: Target,
    *,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan: SweepPlan = QUICKSTART_PLAN,
) -> StaircaseResult:
    """Sweep ``plan`` on ``target`` into the workspace store, then tabulate and plot it.

    Measurements already in the store are reused, so an interrupted sweep resumes.
    """
    workspace.create()
    plan_path = _save_plan(workspace, plan)
    with MeasurementStore(workspace.store_path) as store:
        report = run_sweep(
            plan.layers(),
            target,
            store=store,
            settings=settings,
            progress=progress,
            plan_name=plan.name,
        )
        values, latencies = _sweep_curve(store, plan, report)
    points = staircase(values, latencies)
    plot_path = plot_staircase(
        points,
        workspace.results_dir / "quickstart_staircase.png",
        title=f"{plan.description} on {target.target_id}",
        parameter=plan.swept_parameter or "value",
    )
    return StaircaseResult(
        target_id=target.target_id,
        report=report,
        points=tuple(points),
        plateaus=tuple(plateaus(points)),
        plot_path=plot_path,
        store_path=workspace.store_path,
        plan_path=plan_path,
    )


def _save_plan(workspace: Workspace, plan: SweepPlan) -> Path:
    # Written so the user sees (and can rerun with `prmodel sweep`) exactly what was measured.
    path = workspace.sweeps_dir / "quickstart.yaml"
    if not path.exists():
        save_plans([plan], path)
    return path


def _sweep_curve(
    store: MeasurementStore, plan: SweepPlan, report: SweepReport
) -> tuple[list[int], list[float]]:
    pairs = plan.sweep_points()
    frame = store.frame(
        target_id=report.target_id,
        fingerprint_hash=report.fingerprint_hash,
        layer_keys=[layer.key for _, layer in pairs],
    )
    latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
    measured = [(value, latency[layer.key]) for value, layer in pairs if layer.key in latency]
    return [v for v, _ in measured], [float(t) for _, t in measured]


def plot_staircase(
    points: Sequence[StaircasePoint], path: Path, *, title: str, parameter: str
) -> Path:
    """Save a PNG of the sweep with its jumps marked; returns ``path``."""
    # Optional heavy dependency, imported for the plot only. The figure API without pyplot:
    # no global backend switch (a notebook keeps its inline one).
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    ax.step(
        [p.value for p in points],
        [p.latency_us for p in points],
        where="mid",
        marker=".",
        color="tab:blue",
        label="latency (min of round medians)",
    )
    jumps = [p for p in points if p.jump]
    for p in jumps:
        ax.axvline(p.value - 0.5, color="tab:red", alpha=0.3, linewidth=1)
    ax.scatter(
        [p.value for p in jumps],
        [p.latency_us for p in jumps],
        color="tab:red",
        zorder=3,
        label=f"jump > {JUMP_RATIO - 1:.0%}",
    )
    ax.set_xlabel(parameter)
    ax.set_ylabel("latency (µs)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# -- stage 2: Performance Representatives -----------------------------------------------------


def select_representatives_for(
    workspace: Workspace, target: Target, settings: QuickstartSettings, *, progress: bool = True
) -> SelectionResult:
    """The ``prmodel select`` stage for the quickstart's kinds (sweeps, steps, PRs, plots)."""
    return run_selection(
        target,
        workspace=workspace,
        kinds=settings.kinds,
        settings=settings.measure,
        progress=progress,
        plots=True,
    )


# -- stage 3: PR benchmarks and test sets -----------------------------------------------------


def benchmark_representatives(
    store: MeasurementStore,
    target: Target,
    representatives: RepresentativeSet,
    settings: QuickstartSettings,
    *,
    progress: bool = True,
) -> tuple[pd.DataFrame, Counts]:
    """Sample ``budget`` PR layers per kind and measure them (plans ``pr-<kind>``)."""
    drawn = {
        kind: draw_pr_layers(representatives, kind, settings.budget) for kind in settings.kinds
    }
    return measure_sets(
        drawn, target, store=store, prefix=PR_SET, measure=settings.measure, progress=progress
    )


def measure_test_sets(
    store: MeasurementStore, target: Target, settings: QuickstartSettings, *, progress: bool = True
) -> tuple[pd.DataFrame, Counts]:
    """Measure ``test_size`` random layers per kind (plans ``test-<kind>``, the one test seed)."""
    drawn = {kind: draw_test_layers(kind, settings.test_size) for kind in settings.kinds}
    return measure_sets(
        drawn, target, store=store, prefix=TEST_SET, measure=settings.measure, progress=progress
    )


# -- stage 4: training ------------------------------------------------------------------------


def train_quickstart_models(
    workspace: Workspace,
    target: Target,
    train: pd.DataFrame,
    test: pd.DataFrame,
    selection: SelectionResult,
    settings: QuickstartSettings,
    *,
    progress: bool = True,
) -> TrainingReport:
    """Fit, test, save and (optionally) log to MLflow one model per kind."""
    fingerprint = target.fingerprint()
    with warnings.catch_warnings():
        # A PR layer that is also a random test layer is dropped from the test metrics;
        # the model rows report the test size that remains.
        warnings.simplefilter("ignore", OverlapWarning)
        report = train_models(
            train,
            target_id=target.target_id,
            fingerprint_hash=fingerprint_hash(fingerprint),
            fingerprint=fingerprint,
            kinds=settings.kinds,
            settings=TrainSettings(trials=settings.trials),
            test_frame=test,
            representatives=selection.representatives,
            representatives_path=selection.path,
            workspace=workspace,
            progress=progress,
        )
    return log_training(report, workspace=workspace, train_set=PR_SET) if settings.track else report


# -- stage 5: reference networks --------------------------------------------------------------


def reference_networks(workspace: Workspace, settings: QuickstartSettings) -> list[Path]:
    """The tiny zoo networks written as ONNX files into the workspace, then the user's."""
    paths = []
    if settings.tiny_networks:
        folder = networks_dir(workspace)
        folder.mkdir(parents=True, exist_ok=True)
        for name in TINY_NETWORKS:
            path = folder / f"{name}.onnx"
            if not path.exists():
                onnx.save(getattr(zoo, name)(), str(path))
            paths.append(path)
    return [*paths, *settings.networks]


def estimate_networks(
    workspace: Workspace,
    target: Target,
    paths: Sequence[Path],
    settings: QuickstartSettings,
    *,
    progress: bool = True,
) -> tuple[list[NetworkRow], Counts]:
    """Estimate every network with the trained models and compare with its truth.

    On targets that run whole networks (ONNX Runtime) the network is run
    (:func:`~prmodel.workflows.calibrate.measure_network`) and the estimate joined to its
    profiled kernels; on other targets (simulators, the analytic model) the truth is the
    target's own latency of the modelled layers, measured through the store (plans
    ``net-<network>``).
    """
    # Partial: the quickstart models few kinds; each row says how many kernels are unpriced.
    estimator = Estimator.load(workspace, target, calibrated=True, strict=False, partial=True)
    rows, counts = [], (0, 0, 0)
    for path in paths:
        network = load_network(path)
        kernels = estimator.kernels(network)
        with warnings.catch_warnings():
            # Extrapolation notes per kernel are for `prmodel estimate`; here only the sums count.
            warnings.simplefilter("ignore")
            estimate = estimator.predict(kernels)
        if isinstance(target, NetworkRunner):
            rows.append(_measured_row(path, estimate, kernels, target, settings))
        else:
            row, more = _layer_sum_row(path, estimate, target, workspace, settings, progress)
            rows.append(row)
            counts = (counts[0] + more[0], counts[1] + more[1], counts[2] + more[2])
    return rows, counts


def _measured_row(
    path: Path,
    estimate: NetworkEstimate,
    kernels: NetworkKernels,
    target: Target,
    settings: QuickstartSettings,
) -> NetworkRow:
    measurement = measure_network(kernels, target, settings=settings.network_measure)
    truth = profiled_truth(estimate, measurement)
    return _network_row(
        path,
        estimate,
        truth,
        measured_us=float(measurement.total_us),
        what="measured network; modelled kernels: profiled time",
    )


def _layer_sum_row(
    path: Path,
    estimate: NetworkEstimate,
    target: Target,
    workspace: Workspace,
    settings: QuickstartSettings,
    progress: bool,
) -> tuple[NetworkRow, Counts]:
    frame = estimate.layers
    modelled = frame[frame["status"] == "modelled"]
    layers = layers_from_frame(modelled)
    with MeasurementStore(workspace.store_path) as store:
        latency, counts = measure_network_set(
            estimate.network,
            layers,
            target,
            store=store,
            measure=settings.measure,
            progress=progress,
        )
    predicted = modelled["predicted_us"].to_numpy()
    truth = layer_sum_truth(layers, predicted, latency, kernels=len(frame))
    what = f"{target.target_id} latency of the modelled layers"
    return _network_row(path, estimate, truth, measured_us=None, what=what), counts


def _network_row(
    path: Path,
    estimate: NetworkEstimate,
    truth: NetworkTruth,
    *,
    measured_us: float | None,
    what: str,
) -> NetworkRow:
    return NetworkRow(
        network=estimate.network,
        path=path,
        kernels=truth.kernels,
        modelled=truth.modelled,
        estimated_us=float(estimate.total_us),
        measured_us=measured_us,
        modelled_estimated_us=truth.predicted_us,
        modelled_measured_us=truth.measured_us,
        truth=what,
        unpriced=estimate.unpriced_kernels,
        missing=tuple(estimate.missing_models),
    )


# The settings and result types live in prmodel.workflows.quickstart_results; they stay
# importable from here, where the notebooks and users have always found them.
__all__ = [
    "QUICKSTART_PLAN",
    "QUICK_MEASURE",
    "TINY_NETWORKS",
    "MeasuredCounts",
    "NetworkRow",
    "QuickstartError",
    "QuickstartResult",
    "QuickstartSettings",
    "StaircaseResult",
    "benchmark_representatives",
    "estimate_networks",
    "measure_test_sets",
    "networks_dir",
    "plot_staircase",
    "reference_networks",
    "run_quickstart",
    "select_representatives_for",
    "summary_path",
    "sweep_staircase",
    "train_quickstart_models",
    "ui_command",
]
