"""The learning-curve fits of an evaluation: sample, measure, fit and score one model.

:class:`CurveContext` holds what every fit of one evaluation shares (target, store, test
sets, PR set, benchmark costs); :func:`fit_one` fits one (kind, sampler, budget, seed) and
scores it on the test sets; :func:`network_rows` compares the fitted models on whole networks.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.estimate.estimator import Estimator
from prmodel.estimate.kernels import network_kernels
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.runner import measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.metrics import summarize
from prmodel.networks import load_network
from prmodel.select.samplers import Sampler, make_sampler
from prmodel.train.model import LatencyModel
from prmodel.train.settings import TrainSettings
from prmodel.train.training import train_kind
from prmodel.workflows.calibrate import measure_network
from prmodel.workflows.datasets import TestSet, layer_sum_truth, profiled_truth
from prmodel.workflows.evaluation_results import METRICS, EvaluationSettings

if TYPE_CHECKING:
    from prmodel.estimate.estimator import LayerModel
    from prmodel.networks import NetworkMeasurement
    from prmodel.select.representatives import RepresentativeSet
    from prmodel.targets.base import Target


@dataclass
class Costs:
    """Benchmark cost bookkeeping per (kind, sampler)."""

    keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    device: dict[str, float] = field(default_factory=dict)

    def add(self, kind: LayerKind, sampler: str, rows: pd.DataFrame, seconds: float) -> None:
        key = (kind.value, sampler)
        self.keys.setdefault(key, set()).update(rows["layer_key"])
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.device.update(zip(rows["layer_key"], device_seconds(rows), strict=True))

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


def device_seconds(rows: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Target time each row cost: calls times the median run time (latency where no wall)."""
    wall = pd.to_numeric(rows["wall_median_us"], errors="coerce")
    per_call = wall.fillna(pd.to_numeric(rows["latency_us"], errors="coerce")).fillna(0.0)
    calls = pd.to_numeric(rows["n"], errors="coerce").fillna(1.0)
    return (per_call * calls).to_numpy(dtype=np.float64) * 1e-6


class CurveContext:
    """What every fit of one evaluation shares: target, store, tests, the PR set, costs."""

    def __init__(
        self,
        target: Target,
        store: MeasurementStore,
        settings: EvaluationSettings,
        representatives: RepresentativeSet,
        tests: Mapping[LayerKind, TestSet],
        progress: bool,
        *,
        prior: Mapping[str, Sequence[LayerConfig]] | None = None,
    ) -> None:
        self.target = target
        self.store = store
        self.settings = settings
        self.representatives = representatives
        self.tests = tests
        self.progress = progress
        self.prior = prior or {}
        """The layers the ``networks`` sampler draws around, by network."""
        self.costs = Costs()

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

        # measure and fit_predict serve the adaptive sampler only, networks the network
        # prior; the others ignore them.
        return make_sampler(
            name,
            representatives=self.representatives,
            space=self.settings.spaces,
            measure=measure,
            fit_predict=fit_predict,
            networks=self.prior,
        )


@dataclass(frozen=True, eq=False)
class Fit:
    kind: LayerKind
    sampler: str
    budget: int
    seed: int
    model: LayerModel
    rows: list[dict[str, Any]]


def fit_one(ctx: CurveContext, kind: LayerKind, sampler: str, budget: int, seed: int) -> Fit:
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
        "bench_seconds": float(device_seconds(rows).sum()),
        "fit_seconds": result.seconds,
    }
    scored = [
        {**common, "test_set": name, **figures} for name, figures in score(model, tests).items()
    ]
    return Fit(kind, sampler, budget, seed, model, scored)


def score(model: LayerModel, tests: TestSet) -> dict[str, dict[str, float]]:
    scores: dict[str, dict[str, float]] = {}
    for name, rows in (("random", tests.random), ("networks", tests.networks)):
        for subset, chosen in subsets(name, rows, tests.kind):
            if chosen.empty:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # extrapolation is what a test set probes
                predicted = model.predict(layers_from_frame(chosen))
            figures = summarize(chosen["latency_us"].to_numpy(dtype=np.float64), predicted)
            scores[subset] = {**{m: figures[m] for m in METRICS}, "test_rows": len(chosen)}
    return scores


def subsets(name: str, rows: pd.DataFrame, kind: LayerKind) -> list[tuple[str, pd.DataFrame]]:
    subsets = [(name, rows)]
    if kind is LayerKind.CONV and not rows.empty:
        groups = pd.to_numeric(rows["groups"])
        depthwise = (groups > 1) & (groups == pd.to_numeric(rows["channels"]))
        subsets.append((f"{name}-depthwise", rows[depthwise]))
        if ((groups > 1) & ~depthwise).any():
            subsets.append((f"{name}-grouped", rows[(groups > 1) & ~depthwise]))
    return subsets


# -- whole networks ---------------------------------------------------------------------------


def network_rows(
    ctx: CurveContext,
    fits: Sequence[Fit],
    networks: Sequence[Any],
    measured: dict[str, NetworkMeasurement],
) -> list[dict[str, Any]]:
    if ctx.target.deterministic:
        return _layer_sum_rows(ctx, fits)
    return _measured_network_rows(ctx, fits, networks, measured)


def _layer_sum_rows(ctx: CurveContext, fits: Sequence[Fit]) -> list[dict[str, Any]]:
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
    ctx: CurveContext,
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
    ctx: CurveContext,
    fits: Sequence[Fit],
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


__all__ = [
    "Costs",
    "CurveContext",
    "Fit",
    "device_seconds",
    "fit_one",
    "network_rows",
    "score",
    "subsets",
]
