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

Every figure lands in :class:`EvaluationResult` frames (curve rows have the columns of
:data:`CURVE_COLUMNS`); :mod:`prmodel.workflows.reports` writes them as CSV, markdown, JSON
and plots and logs the run to MLflow.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from prmodel.errors import PrmodelError
from prmodel.estimate.estimator import Estimator
from prmodel.estimate.kernels import network_kernels
from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.runner import MeasureSettings, measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.metrics import summarize
from prmodel.networks import load_network
from prmodel.select.samplers import SAMPLERS, Sampler, make_sampler
from prmodel.targets.cpu import machine_info
from prmodel.train.model import LatencyModel
from prmodel.train.training import TrainSettings, train_kind
from prmodel.workflows.calibrate import measure_network
from prmodel.workflows.datasets import (
    TestSet,
    build_test_sets,
    layer_sum_truth,
    network_layers_by_kind,
    profiled_truth,
)
from prmodel.workflows.selection import ensure_representatives
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    import onnx

    from prmodel.estimate.estimator import LayerModel
    from prmodel.networks import NetworkMeasurement, NetworkMeasureSettings
    from prmodel.select.representatives import RepresentativeSet
    from prmodel.targets.base import Target

METRICS: tuple[str, ...] = ("mape", "rmspe", "within_5", "within_10", "spearman")

CURVE_COLUMNS: tuple[str, ...] = (
    "kind",
    "sampler",
    "budget",
    "seed",
    "test_set",
    "train_rows",
    "dropped_overlap",
    *METRICS,
    "test_rows",
    "bench_seconds",
    "fit_seconds",
)
"""Columns of :attr:`EvaluationResult.curves`. ``test_set`` is ``random`` or ``networks``,
with ``-depthwise`` (groups = channels) and, where the test set has them, ``-grouped``
(other grouped convs) subsets for conv; ``train_rows`` the layers trained on (after dropping
test overlaps); ``bench_seconds`` the target time the training sample cost (calls times the
median run time of each measured layer)."""

NETWORK_COLUMNS: tuple[str, ...] = (
    "network",
    "sampler",
    "budget",
    "seed",
    "layers",
    "measured_us",
    "predicted_us",
    "error_pct",
    "truth",
)
"""Columns of :attr:`EvaluationResult.networks`; ``truth`` says what ``measured_us`` is."""


class EvaluationError(PrmodelError, ValueError):
    """An evaluation that cannot run as asked (one sentence names the setting at fault)."""


@dataclass(frozen=True, kw_only=True)
class EvaluationSettings:
    """What :func:`evaluate` compares and how hard.

    Attributes:
        kinds: Layer kinds to evaluate.
        budgets: Training-set sizes of the learning curves.
        samplers: Any of ``pr``, ``random``, ``adaptive``.
        seeds: Repetitions of every (kind, sampler, budget), seeds 0 .. seeds-1.
        test_size: Random test layers per kind.
        network_budget: Budget of the whole-network comparison (default: the largest).
        regressor: One of :data:`prmodel.train.regressors.REGRESSORS`.
        trials: Optuna trials per fit (0: default hyper-parameters, bounded time).
        pr_features: Give every sampler's model the PR-aware features (the same features for
            all samplers, so only the samples differ).
        plateau_mapping: Models trained on PR samples predict a layer's plateau
            representative (:class:`~prmodel.train.model.LatencyModel`'s
            ``plateau_mapping``), as the PR method prescribes: a PR sample holds only plateau
            ends, so it says nothing about values inside a plateau. Other samplers' models
            never map.
        noise_points: Random test layers re-measured for the noise floor (None: all).
        measure: Measurement settings for noisy targets.
        network_measure: How whole networks are timed on ONNX Runtime targets.
    """

    kinds: tuple[LayerKind, ...] = (LayerKind.CONV, LayerKind.DENSE)
    budgets: tuple[int, ...] = (100, 300, 1000)
    samplers: tuple[str, ...] = SAMPLERS
    seeds: int = 3
    test_size: int = 200
    network_budget: int | None = None
    regressor: str = "xgboost"
    trials: int = 0
    pr_features: bool = True
    plateau_mapping: bool = True
    noise_points: int | None = None
    measure: MeasureSettings | None = None
    network_measure: NetworkMeasureSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(parse_kind(k) for k in self.kinds))
        object.__setattr__(self, "budgets", tuple(sorted(set(self.budgets))))
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if unknown:
            raise EvaluationError(
                f"unknown sampler {unknown[0]!r} (choose from {', '.join(SAMPLERS)})"
            )
        if not self.kinds or not self.samplers or not self.budgets:
            raise EvaluationError("an evaluation needs at least one kind, sampler and budget")
        if self.budgets[0] < 4:
            raise EvaluationError(f"budget {self.budgets[0]} is too small; use at least 4")
        if self.seeds < 1 or self.test_size < 4:
            raise EvaluationError(
                f"seeds must be >= 1 and test_size >= 4, got {self.seeds} and {self.test_size}"
            )

    @property
    def whole_network_budget(self) -> int:
        """The budget whose models estimate whole networks."""
        return self.network_budget or self.budgets[-1]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = [k.value for k in self.kinds]
        data["measure"] = asdict(self.measure) if self.measure else None
        data["network_measure"] = asdict(self.network_measure) if self.network_measure else None
        return data


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Everything one :func:`evaluate` run measured and computed.

    Attributes:
        curves: One row per (kind, sampler, budget, seed, test set): :data:`CURVE_COLUMNS`.
        networks: Whole-network errors: :data:`NETWORK_COLUMNS`.
        noise: Per kind, the repeat-measurement error of the test layers (``mape`` ... and
            ``points``); zeros on deterministic targets.
        costs: Per (kind, sampler), the distinct layers benchmarked over all budgets and seeds,
            their target time and the wall time this run spent measuring them.
        test_sizes: Test rows per kind and test set.
    """

    target_id: str
    fingerprint_hash: str
    deterministic: bool
    settings: EvaluationSettings
    curves: pd.DataFrame
    networks: pd.DataFrame
    noise: pd.DataFrame
    costs: pd.DataFrame
    test_sizes: Mapping[str, Mapping[str, int]]
    representatives_path: Path | None
    network_names: tuple[str, ...] = ()
    seconds: float = 0.0
    machine: Mapping[str, Any] = field(default_factory=dict)

    def noise_floor(self, kind: LayerKind | str) -> float:
        """The repeat-measurement MAPE (percent) of ``kind``'s test layers."""
        rows = self.noise[self.noise["kind"] == parse_kind(kind).value]
        return float(rows["mape"].iloc[0]) if len(rows) else math.nan

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation, min and max of every metric over the seeds."""
        keys = ["kind", "test_set", "sampler", "budget"]
        grouped = self.curves.groupby(keys, sort=True)
        table = grouped[[*METRICS, "train_rows", "bench_seconds"]].mean()
        for metric in METRICS:
            table[f"{metric}_std"] = grouped[metric].std(ddof=0)
            table[f"{metric}_min"] = grouped[metric].min()
            table[f"{metric}_max"] = grouped[metric].max()
        table["seeds"] = grouped.size()
        return table.reset_index()

    def goals(self) -> list[dict[str, Any]]:
        """The issue's acceptance figures per kind, computed on the random test set."""
        return [_goals_of(self, kind) for kind in self.settings.kinds]

    def network_summary(self) -> pd.DataFrame:
        """Per sampler: mean absolute whole-network error over networks and seeds."""
        if self.networks.empty:
            return pd.DataFrame(columns=["sampler", "budget", "network_mape", "worst_pct"])
        frame = self.networks.assign(abs_error=self.networks["error_pct"].abs())
        grouped = frame.groupby(["sampler", "budget"])
        table = grouped["abs_error"].agg(["mean", "max"]).reset_index()
        return table.rename(columns={"mean": "network_mape", "max": "worst_pct"})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy of every figure."""
        return {
            "target_id": self.target_id,
            "fingerprint_hash": self.fingerprint_hash,
            "deterministic": self.deterministic,
            "settings": self.settings.as_dict(),
            "machine": dict(self.machine),
            "seconds": self.seconds,
            "representatives": str(self.representatives_path or ""),
            "networks_used": list(self.network_names),
            "test_sizes": {k: dict(v) for k, v in self.test_sizes.items()},
            "noise": _records(self.noise),
            "summary": _records(self.summary()),
            "goals": self.goals(),
            "network_summary": _records(self.network_summary()),
            "networks": _records(self.networks),
            "costs": _records(self.costs),
            "curves": _records(self.curves),
        }


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


# -- learning curves --------------------------------------------------------------------------


@dataclass
class _Costs:
    """Benchmark cost bookkeeping per (kind, sampler)."""

    keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    device: dict[str, float] = field(default_factory=dict)

    def add(self, kind: LayerKind, sampler: str, rows: pd.DataFrame, seconds: float) -> None:
        key = (kind.value, sampler)
        self.keys.setdefault(key, set()).update(rows["layer_key"])
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.device.update(zip(rows["layer_key"], _device_seconds(rows), strict=True))

    def frame(self) -> pd.DataFrame:
        rows = [
            {
                "kind": kind,
                "sampler": sampler,
                "layers": len(keys),
                "bench_seconds": sum(self.device.get(k, 0.0) for k in keys),
                "measure_wall_seconds": self.seconds.get((kind, sampler), 0.0),
            }
            for (kind, sampler), keys in sorted(self.keys.items())
        ]
        return pd.DataFrame(
            rows, columns=["kind", "sampler", "layers", "bench_seconds", "measure_wall_seconds"]
        )


def _device_seconds(rows: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Target time each row cost: calls times the median run time (latency where no wall)."""
    wall = pd.to_numeric(rows["wall_median_us"], errors="coerce")
    per_call = wall.fillna(pd.to_numeric(rows["latency_us"], errors="coerce")).fillna(0.0)
    calls = pd.to_numeric(rows["n"], errors="coerce").fillna(1.0)
    return (per_call * calls).to_numpy(dtype=np.float64) * 1e-6


class _Context:
    """What every fit of one evaluation shares: target, store, tests, the PR set, costs."""

    def __init__(
        self,
        target: Target,
        store: MeasurementStore,
        settings: EvaluationSettings,
        representatives: RepresentativeSet,
        tests: Mapping[LayerKind, TestSet],
        progress: bool,
    ) -> None:
        self.target = target
        self.store = store
        self.settings = settings
        self.representatives = representatives
        self.tests = tests
        self.progress = progress
        self.costs = _Costs()

    @property
    def features(self) -> RepresentativeSet | None:
        return self.representatives if self.settings.pr_features else None

    def new_model(
        self,
        kind: LayerKind,
        seed: int,
        *,
        params: Mapping[str, Any] | None = None,
        plateau_mapping: bool = False,
    ) -> LatencyModel:
        return LatencyModel(
            kind,
            regressor=self.settings.regressor,
            params=params,
            representatives=self.features,
            seed=seed,
            plateau_mapping=plateau_mapping,
        )

    def measure(self, kind: LayerKind, sampler: str, layers: Sequence[LayerConfig]) -> pd.DataFrame:
        started = time.perf_counter()
        rows = measure_layers(
            layers,
            self.target,
            store=self.store,
            settings=self.settings.measure,
            progress=False,
            plan_name=f"{sampler}-{kind.value}",
        )
        self.costs.add(kind, sampler, rows, time.perf_counter() - started)
        return rows

    def sampler(self, name: str, kind: LayerKind, seed: int) -> Sampler:
        test_keys = self.tests[kind].keys

        def measure(layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
            # Test layers come back as NaN, which the sampler drops: they stay held out.
            allowed = [x for x in layers if x.key not in test_keys]
            rows = self.measure(kind, "adaptive", allowed)
            latency = dict(zip(rows["layer_key"], rows["latency_us"], strict=True))
            return np.array([float(latency.get(x.key, math.nan)) for x in layers])

        def fit_predict(
            train: Sequence[LayerConfig],
            y: npt.NDArray[np.float64],
            query: Sequence[LayerConfig],
        ) -> npt.NDArray[np.float64]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.new_model(kind, seed).fit(train, y).predict(query)

        # measure and fit_predict serve the adaptive sampler only; the others ignore them.
        return make_sampler(
            name, representatives=self.representatives, measure=measure, fit_predict=fit_predict
        )


@dataclass(frozen=True, eq=False)
class _Fit:
    kind: LayerKind
    sampler: str
    budget: int
    seed: int
    model: LayerModel
    rows: list[dict[str, Any]]


def _fit_one(ctx: _Context, kind: LayerKind, sampler: str, budget: int, seed: int) -> _Fit:
    tests = ctx.tests[kind]
    sampled = ctx.sampler(sampler, kind, seed).sample(kind, budget, seed=seed)
    held_out = tests.keys
    kept = [x for x in sampled if x.key not in held_out]
    rows = ctx.measure(kind, sampler, kept)
    settings = TrainSettings(
        regressor=ctx.settings.regressor,
        trials=ctx.settings.trials,
        seed=seed,
        folds=4 if ctx.settings.trials else 2,
    )
    result = train_kind(rows, kind=kind, settings=settings, representatives=ctx.features)
    model: LayerModel = result.model
    mapping = sampler == "pr" and ctx.settings.plateau_mapping
    if result.model.plateau_mapping_ != mapping:
        # train_kind maps whenever a PR set is given; only PR samples sit on plateau ends.
        trained = layers_from_frame(rows)
        model = ctx.new_model(kind, seed, params=result.params, plateau_mapping=mapping).fit(
            trained, rows["latency_us"].to_numpy(dtype=np.float64)
        )
    common = {
        "kind": kind.value,
        "sampler": sampler,
        "budget": budget,
        "seed": seed,
        "train_rows": result.train_rows,
        "dropped_overlap": len(sampled) - len(kept),
        "bench_seconds": float(_device_seconds(rows).sum()),
        "fit_seconds": result.seconds,
    }
    scored = [
        {**common, "test_set": name, **figures} for name, figures in _score(model, tests).items()
    ]
    return _Fit(kind, sampler, budget, seed, model, scored)


def _score(model: LayerModel, tests: TestSet) -> dict[str, dict[str, float]]:
    scores: dict[str, dict[str, float]] = {}
    for name, rows in (("random", tests.random), ("networks", tests.networks)):
        for subset, chosen in _subsets(name, rows, tests.kind):
            if chosen.empty:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # extrapolation is what a test set probes
                predicted = model.predict(layers_from_frame(chosen))
            figures = summarize(chosen["latency_us"].to_numpy(dtype=np.float64), predicted)
            scores[subset] = {**{m: figures[m] for m in METRICS}, "test_rows": len(chosen)}
    return scores


def _subsets(name: str, rows: pd.DataFrame, kind: LayerKind) -> list[tuple[str, pd.DataFrame]]:
    subsets = [(name, rows)]
    if kind is LayerKind.CONV and not rows.empty:
        groups = pd.to_numeric(rows["groups"])
        depthwise = (groups > 1) & (groups == pd.to_numeric(rows["channels"]))
        subsets.append((f"{name}-depthwise", rows[depthwise]))
        if ((groups > 1) & ~depthwise).any():
            subsets.append((f"{name}-grouped", rows[(groups > 1) & ~depthwise]))
    return subsets


# -- whole networks ---------------------------------------------------------------------------


def _network_rows(
    ctx: _Context,
    fits: Sequence[_Fit],
    networks: Sequence[Any],
    measured: dict[str, NetworkMeasurement],
) -> list[dict[str, Any]]:
    if ctx.target.deterministic:
        return _layer_sum_rows(ctx, fits)
    return _measured_network_rows(ctx, fits, networks, measured)


def _layer_sum_rows(ctx: _Context, fits: Sequence[_Fit]) -> list[dict[str, Any]]:
    """Truth: the target's latency summed over each network's layers of the evaluated kinds."""
    latency: dict[str, float] = {}
    for tests in ctx.tests.values():
        latency.update(zip(tests.networks["layer_key"], tests.networks["latency_us"], strict=True))
    by_group: dict[tuple[str, int], dict[LayerKind, LayerModel]] = {}
    for fit in fits:
        by_group.setdefault((fit.sampler, fit.seed), {})[fit.kind] = fit.model
    names = sorted({n for tests in ctx.tests.values() for n in tests.network_layers})
    rows = []
    for (sampler, seed), models in sorted(by_group.items()):
        for name in names:
            truth, predicted, count = 0.0, 0.0, 0
            for kind, model in models.items():
                layers = [
                    x for x in ctx.tests[kind].network_layers.get(name, ()) if x.key in latency
                ]
                if not layers:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    part = layer_sum_truth(layers, model.predict(layers), latency)
                truth += part.measured_us
                predicted += part.predicted_us
                count += part.compared
            if count:
                rows.append(
                    _network_row(name, sampler, seed, ctx, count, truth, predicted, "layer sum")
                )
    return rows


def _network_row(
    name: str,
    sampler: str,
    seed: int,
    ctx: _Context,
    count: int,
    truth: float,
    predicted: float,
    what: str,
) -> dict[str, Any]:
    return {
        "network": name,
        "sampler": sampler,
        "budget": ctx.settings.whole_network_budget,
        "seed": seed,
        "layers": count,
        "measured_us": truth,
        "predicted_us": predicted,
        "error_pct": 100 * (predicted - truth) / truth if truth > 0 else math.nan,
        "truth": what,
    }


def _measured_network_rows(
    ctx: _Context,
    fits: Sequence[_Fit],
    networks: Sequence[Any],
    measured: dict[str, NetworkMeasurement],
) -> list[dict[str, Any]]:
    """Truth: the profiled time of the network's kernels that the evaluated models cover."""
    by_group: dict[tuple[str, int], dict[LayerKind, LayerModel]] = {}
    for fit in fits:
        by_group.setdefault((fit.sampler, fit.seed), {})[fit.kind] = fit.model
    rows = []
    for source in networks:
        network = load_network(source)
        kernels = network_kernels(network, ctx.target, strict=False)
        if network.name not in measured:
            measured[network.name] = measure_network(
                kernels, ctx.target, settings=ctx.settings.network_measure
            )
        for (sampler, seed), models in sorted(by_group.items()):
            # Partial: the truth is compared on the modelled kernels only.
            estimator = Estimator(ctx.target, models, strict=False, partial=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                truth = profiled_truth(estimator.predict(kernels), measured[network.name])
            rows.append(
                _network_row(
                    network.name,
                    sampler,
                    seed,
                    ctx,
                    truth.compared,
                    truth.measured_us,
                    truth.predicted_us,
                    "profiled kernel time of modelled kernels",
                )
            )
    return rows


# -- the whole evaluation ---------------------------------------------------------------------


def evaluate(
    target: Target,
    *,
    workspace: Workspace,
    settings: EvaluationSettings | None = None,
    networks: Sequence[str | Path | onnx.ModelProto] = (),
    progress: bool = True,
) -> EvaluationResult:
    """Learning curves, noise floor, whole-network errors and costs of every sampler.

    Args:
        target: The target to evaluate on.
        workspace: Its store holds every measurement (a rerun reuses them) and its
            ``representatives/`` the PR set (selected and saved there when missing).
        settings: Kinds, budgets, samplers, seeds, test size, regressor.
        networks: Reference networks (paths or ModelProtos) whose layers join the test sets
            and whose whole-network error is reported.
        progress: Progress bars on stderr.

    Raises:
        EvaluationError: bad settings or nothing measurable.
    """
    settings = settings or EvaluationSettings()
    started = time.perf_counter()
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
        tests = build_test_sets(
            target,
            store=store,
            kinds=settings.kinds,
            size=settings.test_size,
            networks=per_network,
            measure=settings.measure,
            progress=progress,
        )
        noise = noise_floor(
            target, tests, points=settings.noise_points, measure=settings.measure, progress=progress
        )
        ctx = _Context(target, store, settings, representatives, tests, progress)
        fits = _run_curves(ctx)
        final = [f for f in fits if f.budget == settings.whole_network_budget]
        network_rows = _network_rows(ctx, final, networks, {}) if per_network else []
    curve_rows = [row for fit in fits for row in fit.rows]
    return EvaluationResult(
        target_id=target.target_id,
        fingerprint_hash=digest,
        deterministic=target.deterministic,
        settings=settings,
        curves=pd.DataFrame(curve_rows, columns=list(CURVE_COLUMNS)),
        networks=pd.DataFrame(network_rows, columns=list(NETWORK_COLUMNS)),
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


def _run_curves(ctx: _Context) -> list[_Fit]:
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
            fit = _fit_one(ctx, kind, sampler, budget, seed)
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


# -- acceptance figures -----------------------------------------------------------------------


def _goals_of(result: EvaluationResult, kind: LayerKind) -> dict[str, Any]:
    """The issue's goals for one kind: PR vs random at 1000, the 5x rule, the noise floor."""
    curves = result.curves[(result.curves["kind"] == kind.value)]
    curves = curves[curves["test_set"] == "random"]
    mean = curves.groupby(["sampler", "budget"])["mape"].mean()
    pr = mean.get("pr", pd.Series(dtype=float))
    rnd = mean.get("random", pd.Series(dtype=float))
    floor = result.noise_floor(kind)
    goals: dict[str, Any] = {"kind": kind.value, "noise_floor_mape": floor}
    at = 1000 if 1000 in pr.index and 1000 in rnd.index else _common_max(pr, rnd)
    if at is not None:
        goals["compared_at"] = int(at)
        goals["pr_mape"] = float(pr[at])
        goals["random_mape"] = float(rnd[at])
        goals["pr_over_random"] = float(pr[at] / rnd[at]) if rnd[at] > 0 else math.nan
        goals["pr_half_of_random"] = bool(pr[at] <= 0.5 * rnd[at])
    if len(rnd) and len(pr):
        top = int(rnd.index.max())
        reached = [int(n) for n in pr.index if pr[n] <= rnd[top]]
        goals["random_best_budget"] = top
        goals["random_best_mape"] = float(rnd[top])
        goals["pr_budget_to_match"] = min(reached) if reached else None
        goals["pr_5x_fewer"] = bool(reached) and min(reached) * 5 <= top
    small = pr[pr.index <= 2000] if len(pr) else pr
    if len(small):
        goals["pr_best_mape_le_2000"] = float(small.min())
        goals["within_1_5x_noise_floor"] = bool(floor > 0 and small.min() <= 1.5 * floor) or bool(
            floor == 0 and small.min() == 0
        )
    return goals


def _common_max(a: pd.Series, b: pd.Series) -> int | None:
    common = sorted(set(a.index) & set(b.index))
    return int(common[-1]) if common else None


# -- JSON -------------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "CURVE_COLUMNS",
    "METRICS",
    "NETWORK_COLUMNS",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSettings",
    "evaluate",
    "noise_floor",
]
