"""Samplers: which layers to benchmark for a training set, under a budget.

The samplers share one budget interface, ``sample(kind, budget, *, seed=0) ->
list[LayerConfig]``: at most ``budget`` valid, unique layers of ``kind`` (fewer only where the
space holds fewer). :class:`PRSampler` draws plateau representatives,
:class:`RandomSampler` draws from the space, :class:`AdaptiveSampler` adds samples where a
model fitted on what was measured so far errs most (nn-Meter's adaptive sampling), and
:class:`~prmodel.select.network_prior.NetworkSampler` draws around the layers of real
networks. :func:`make_sampler` builds any of them by name. The initial 1-D sweeps that
selection needs are designed in :mod:`prmodel.select.selection`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.select._sampling import (
    Sampler,
    SamplingError,
    SpaceArg,
    check_budget,
    random_layers,
    space_for,
)
from prmodel.select.network_prior import NetworkSampler
from prmodel.select.representatives import ParameterSteps, RepresentativeSet, plateau_layer
from prmodel.select.spaces import Choice, IntRange, ParameterSpace

MeasureFn = Callable[[Sequence[LayerConfig]], np.ndarray]
"""Measures layers and returns their latencies (NaN where one failed or is not allowed)."""
FitPredictFn = Callable[[Sequence[LayerConfig], np.ndarray, Sequence[LayerConfig]], np.ndarray]
"""Fits a model on (layers, latencies) and predicts the latencies of other layers."""

_REPAIR_TRIES = 40
_COVER_TRIES = 400  # a rare value (a large width under the MAC limit) needs more draws

PR_DRAWS = ("space", "balanced")
"""How :class:`PRSampler` picks a subset of the PR product (see its doc)."""


# -- PR sampler -------------------------------------------------------------------------------


class PRSampler:
    """Performance Representatives: layers whose stepped parameters sit on plateau ends.

    Each free parameter of the space contributes a list of values: its representatives where
    it was analysed (plateau upper ends, or coarse values where it has no steps), coarse
    log-spaced values where it was not, all choices for choice parameters.

    With ``draw="space"`` (the default), when every range parameter has a staircase and the
    product of these lists fits the budget, it is returned whole. Otherwise layers are drawn
    from the space on its own scale (log-uniform ranges), as test layers and real networks
    spread, and every stepped parameter is moved up to its plateau's representative: each
    sample stands for a whole plateau, and plateaus are chosen as often as layers fall into
    them. Using every PR value equally often instead spends most of the budget on the many
    large plateaus of a linear staircase and hardly trains small layers.

    With ``draw="balanced"``, the product is returned whole where it fits the budget (the
    coarse lists of step-free ranges grown to use it), else a stratified subset, Latin
    hypercube style: every value of every list used equally often, paired at random, with
    invalid or duplicate combinations repaired by redrawing the other parameters.
    """

    def __init__(
        self,
        representatives: RepresentativeSet,
        space: SpaceArg = None,
        *,
        coarse_count: int = 8,
        draw: str = "space",
    ) -> None:
        if draw not in PR_DRAWS:
            raise SamplingError(f"PR draw must be one of {', '.join(PR_DRAWS)}, got {draw!r}")
        self.representatives = representatives
        self.space = space
        self.coarse_count = coarse_count
        self.draw = draw

    def values_for(
        self, kind: LayerKind | str, budget: int | None = None
    ) -> dict[str, tuple[Any, ...]]:
        """The value list of every free parameter of ``kind``.

        With a ``budget`` that the full product would leave mostly unused, step-free range
        parameters get more coarse values (doubling their count while the product fits).
        """
        kind = parse_kind(kind)
        space = space_for(self.space, kind)
        analysed = self.representatives.for_kind(kind)
        values: dict[str, tuple[Any, ...]] = {}
        growable = []
        for name in space.free_parameters:
            steps = analysed.get(name)
            if steps is not None and steps.representatives:
                values[name] = tuple(steps.representatives)
            else:
                values[name] = space.values_of(name, count=self.coarse_count)
            if name in space.swept_parameters and (steps is None or not steps.has_steps):
                growable.append(name)
        count = self.coarse_count
        while budget is not None and growable:
            count *= 2
            grown = values | {n: space.values_of(n, count=count) for n in growable}
            if grown == values or math.prod(len(v) for v in grown.values()) > budget:
                break
            values = grown
        return values

    def sample(self, kind: LayerKind | str, budget: int, *, seed: int = 0) -> list[LayerConfig]:
        """At most ``budget`` valid, unique PR layers of ``kind`` (see the class doc)."""
        check_budget(budget)
        kind = parse_kind(kind)
        space = space_for(self.space, kind)
        rng = np.random.default_rng(seed)
        if self.draw == "balanced":
            values = self.values_for(kind, budget)
            if math.prod(len(v) for v in values.values()) <= budget:
                return _full_product(space, values)
            return _Stratified(space, values, rng).draw(budget)
        steps = [s for s in self.representatives.for_kind(kind).values() if s.has_steps]
        values = self.values_for(kind)
        stepped = {s.parameter for s in steps}
        # A grid is only the right design where every range is a staircase; step-free
        # ranges are drawn, so that they get as many distinct values as the budget buys.
        discrete = all(n in stepped for n in space.swept_parameters)
        if discrete and math.prod(len(v) for v in values.values()) <= budget:
            return _full_product(space, values)
        return _plateau_draws(space, steps, budget, rng)


def _plateau_draws(
    space: ParameterSpace,
    steps: Sequence[ParameterSteps],
    budget: int,
    rng: np.random.Generator,
) -> list[LayerConfig]:
    """Random layers of ``space`` moved to their plateau representatives, unique and valid."""
    found: dict[str, LayerConfig] = {}
    for _ in range(budget * 50):
        if len(found) == budget:
            break
        layer = plateau_layer(steps, space.random_layer(rng))
        if space.contains(layer):
            found.setdefault(layer.key, layer)
    return list(found.values())


def _full_product(
    space: ParameterSpace, values: Mapping[str, tuple[Any, ...]]
) -> list[LayerConfig]:
    names = list(values)
    unique: dict[str, LayerConfig] = {}
    for combination in product(*(values[n] for n in names)):
        layer = space.try_build(dict(zip(names, combination, strict=True)))
        if layer is not None:
            unique.setdefault(layer.key, layer)
    return list(unique.values())


class _Stratified:
    """Latin-hypercube-like draws over per-parameter value lists, with coverage repair."""

    def __init__(
        self, space: ParameterSpace, values: Mapping[str, tuple[Any, ...]], rng: np.random.Generator
    ) -> None:
        self.space, self.values, self.rng = space, values, rng
        self.rows: list[tuple[dict[str, Any], LayerConfig]] = []
        self.keys: set[str] = set()
        self.counts: Counter[tuple[str, Any]] = Counter()

    def draw(self, budget: int) -> list[LayerConfig]:
        columns = {n: self._balanced(n, vals, budget) for n, vals in self.values.items()}
        for i in range(budget):
            self._add({name: column[i] for name, column in columns.items()})
        self._cover(budget)
        return [layer for _, layer in self.rows]

    def _balanced(self, name: str, values: tuple[Any, ...], budget: int) -> list[Any]:
        dim = self.space.dimensions[name]
        if isinstance(dim, Choice) and dim.weights is not None:
            # Each value as often as its weight says (rounded up), in random order.
            counts = np.ceil(dim.shares(values) * budget).astype(int)
            weighted = [v for v, n in zip(values, counts, strict=True) for _ in range(n)]
            return [weighted[i] for i in self.rng.permutation(len(weighted))][:budget]
        repeats = math.ceil(budget / len(values))
        column: list[Any] = []
        for _ in range(repeats):
            column += [values[i] for i in self.rng.permutation(len(values))]
        return column[:budget]

    def _add(self, assignment: dict[str, Any]) -> bool:
        layer = self._build(assignment)
        if layer is None:
            anchor = min(assignment, key=lambda n: self.counts[(n, assignment[n])])
            found = self._repair({anchor: assignment[anchor]})
            if found is None:
                return False
            assignment, layer = found
        self._keep(assignment, layer)
        return True

    def _build(self, assignment: Mapping[str, Any]) -> LayerConfig | None:
        layer = self.space.try_build(assignment)
        return None if layer is None or layer.key in self.keys else layer

    def _repair(
        self, keep: Mapping[str, Any], *, tries: int = _REPAIR_TRIES
    ) -> tuple[dict[str, Any], LayerConfig] | None:
        """A valid new combination that keeps ``keep`` and redraws everything else."""
        for _ in range(tries):
            assignment = {n: self._pick(n) for n in self.values} | dict(keep)
            layer = self._build(assignment)
            # A depthwise choice overwrites the output channels: the kept value must survive.
            if layer is not None and set(keep.items()) <= set(self._realised(assignment, layer)):
                return assignment, layer
        return None

    def _pick(self, name: str) -> Any:
        values = self.values[name]
        dim = self.space.dimensions[name]
        if isinstance(dim, Choice) and dim.weights is not None:
            return values[int(self.rng.choice(len(values), p=dim.shares(values)))]
        return values[int(self.rng.integers(len(values)))]

    def _keep(self, assignment: dict[str, Any], layer: LayerConfig) -> None:
        self.rows.append((assignment, layer))
        self.keys.add(layer.key)
        self.counts.update(self._realised(assignment, layer))

    def _realised(self, assignment: Mapping[str, Any], layer: LayerConfig) -> list[tuple[str, Any]]:
        # Range values are counted as the layer has them (depthwise groups overwrite the
        # output channels); choices as chosen, since "same"/"depthwise" are symbolic.
        pairs = []
        for name, value in assignment.items():
            dim = self.space.dimensions[name]
            pairs.append((name, getattr(layer, name) if isinstance(dim, IntRange) else value))
        return pairs

    def _cover(self, budget: int) -> None:
        """Make sure every value of every list appears at least once, where possible."""
        for name, values in self.values.items():
            for value in values:
                if self.counts[(name, value)] > 0:
                    continue
                found = self._repair({name: value}, tries=_COVER_TRIES)
                if found is None:
                    continue
                if len(self.rows) < budget:
                    self._keep(*found)
                else:
                    self._replace_redundant_row(*found)

    def _replace_redundant_row(self, assignment: dict[str, Any], layer: LayerConfig) -> None:
        for index in self.rng.permutation(len(self.rows)):
            old_assignment, old_layer = self.rows[int(index)]
            realised = self._realised(old_assignment, old_layer)
            if all(self.counts[pair] > 1 for pair in realised):
                self.counts.subtract(realised)
                self.keys.discard(old_layer.key)
                self.rows.pop(int(index))
                self._keep(assignment, layer)
                return


# -- random sampler ---------------------------------------------------------------------------


class RandomSampler:
    """Uniform or log-uniform draws over the space (the baseline PR sampling must beat)."""

    def __init__(self, space: SpaceArg = None) -> None:
        self.space = space

    def sample(self, kind: LayerKind | str, budget: int, *, seed: int = 0) -> list[LayerConfig]:
        """``budget`` valid, unique random layers of ``kind`` (fewer only if the space is tiny)."""
        check_budget(budget)
        kind = parse_kind(kind)
        return random_layers(space_for(self.space, kind), budget, np.random.default_rng(seed))


# -- adaptive sampler -------------------------------------------------------------------------


class AdaptiveSampler:
    """nn-Meter style adaptive sampling: measure, fit, and sample more where the fit errs.

    It starts with ``initial_fraction`` of the budget drawn at random and measured. Then, in
    rounds, it draws a fresh random batch, measures it, and predicts it with a model fitted on
    everything measured so far; the batch joins the training set, and for every point whose
    relative error exceeds ``error_threshold`` it adds ``neighbours`` layers around it (one or
    two parameters perturbed by up to a factor of two, or another choice), measured too.
    Rounds go on until the budget is spent. The caller supplies the measuring and the
    modelling, so the sampler stays independent of the runner and the regressors.

    After :meth:`sample`, ``history_`` holds one dict per round (training size, batch MAPE,
    share of the batch above the threshold, neighbours added) and ``latencies_`` the measured
    latency of every returned layer, by layer key.
    """

    def __init__(
        self,
        space: SpaceArg = None,
        *,
        measure: MeasureFn,
        fit_predict: FitPredictFn,
        initial_fraction: float = 0.4,
        batch_fraction: float = 0.15,
        error_threshold: float = 0.10,
        neighbours: int = 2,
    ) -> None:
        if not 0 < initial_fraction <= 1 or not 0 < batch_fraction <= 1:
            raise SamplingError("initial_fraction and batch_fraction must be in (0, 1]")
        self.space = space
        self.measure = measure
        self.fit_predict = fit_predict
        self.initial_fraction = initial_fraction
        self.batch_fraction = batch_fraction
        self.error_threshold = error_threshold
        self.neighbours = neighbours
        self.history_: list[dict[str, float]] = []
        self.latencies_: dict[str, float] = {}

    def sample(self, kind: LayerKind | str, budget: int, *, seed: int = 0) -> list[LayerConfig]:
        """At most ``budget`` measured layers of ``kind``, chosen adaptively."""
        check_budget(budget)
        kind = parse_kind(kind)
        space = space_for(self.space, kind)
        rng = np.random.default_rng(seed)
        self.history_, self.latencies_ = [], {}
        train: list[LayerConfig] = []
        initial = max(min(budget, 8), int(budget * self.initial_fraction))
        self._measure_into(train, random_layers(space, initial, rng))
        batch_size = max(4, int(budget * self.batch_fraction))
        stalled = 0
        while len(train) < budget and stalled < 3:
            before = len(train)
            self._round(space, train, budget, batch_size, rng)
            stalled = stalled + 1 if len(train) == before else 0
        return train[:budget]

    def _round(
        self,
        space: ParameterSpace,
        train: list[LayerConfig],
        budget: int,
        batch_size: int,
        rng: np.random.Generator,
    ) -> None:
        known = set(self.latencies_)
        batch = random_layers(space, min(batch_size, budget - len(train)), rng, known)
        measured = self._measure_into([], batch)
        if not measured:
            return
        y_train = np.array([self.latencies_[x.key] for x in train])
        predicted = np.asarray(self.fit_predict(train, y_train, measured), dtype=float)
        truth = np.array([self.latencies_[x.key] for x in measured])
        errors = np.abs(predicted - truth) / truth
        train.extend(measured)
        worst = [measured[i] for i in np.argsort(-errors) if errors[i] > self.error_threshold]
        room = budget - len(train)
        around = self._neighbourhood(space, worst, room, rng)
        added = self._measure_into(train, around)
        self.history_.append(
            {
                "train": float(len(train) - len(measured) - len(added)),
                "batch": float(len(measured)),
                "batch_mape": float(100 * errors.mean()),
                "above_threshold": float((errors > self.error_threshold).mean()),
                "neighbours": float(len(added)),
            }
        )

    def _measure_into(
        self, into: list[LayerConfig], layers: Sequence[LayerConfig]
    ) -> list[LayerConfig]:
        """Measure ``layers``; keep those with a finite positive latency (failed ones drop)."""
        if not layers:
            return []
        latencies = np.asarray(self.measure(list(layers)), dtype=float)
        if latencies.shape != (len(layers),):
            raise SamplingError(
                f"measure() returned {latencies.size} latencies for {len(layers)} layers"
            )
        kept = []
        for layer, latency in zip(layers, latencies, strict=True):
            if np.isfinite(latency) and latency > 0:
                self.latencies_[layer.key] = float(latency)
                kept.append(layer)
        into.extend(kept)
        return kept

    def _neighbourhood(
        self,
        space: ParameterSpace,
        centres: Sequence[LayerConfig],
        room: int,
        rng: np.random.Generator,
    ) -> list[LayerConfig]:
        found: dict[str, LayerConfig] = {}
        for centre in centres:
            for _ in range(self.neighbours):
                if len(found) >= room:
                    return list(found.values())
                layer = perturb(space, centre, rng)
                if layer is not None and layer.key not in self.latencies_:
                    found.setdefault(layer.key, layer)
        return list(found.values())


def perturb(
    space: ParameterSpace, layer: LayerConfig, rng: np.random.Generator, *, tries: int = 20
) -> LayerConfig | None:
    """A valid layer near ``layer``: one or two free parameters moved (ranges by up to 2x)."""
    base = space.values_from_layer(layer)
    names = list(space.free_parameters)
    for _ in range(tries):
        values = dict(base)
        for name in rng.choice(names, size=min(len(names), int(rng.integers(1, 3))), replace=False):
            values[str(name)] = _moved(space, str(name), values[str(name)], rng)
        candidate = space.try_build(values)
        if candidate is not None and candidate.key != layer.key:
            return candidate
    return None


def _moved(space: ParameterSpace, name: str, value: Any, rng: np.random.Generator) -> Any:
    dim = space.dimensions[name]
    if isinstance(dim, IntRange):
        moved = round(value * math.exp(rng.uniform(-math.log(2), math.log(2))))
        if moved == value:
            moved += 1 if rng.random() < 0.5 else -1
        return min(max(moved, dim.low), dim.high)
    if isinstance(dim, Choice) and len(dim.values) > 1:
        others = [v for v in dim.values if v != value]
        return others[int(rng.integers(len(others)))]
    return value


def log_feature_fit_predict(
    train_layers: Sequence[LayerConfig],
    train_latencies: np.ndarray,
    query_layers: Sequence[LayerConfig],
) -> np.ndarray:
    """A small default model for :class:`AdaptiveSampler`: extra trees on log features.

    Features are the logarithms of every parameter, the MACs and the weight and activation
    bytes; the target is log latency. Deterministic (fixed seed).
    """
    # scikit-learn takes ~0.6 s to import: kept off the CLI's start (and `prmodel estimate`).
    from sklearn.ensemble import ExtraTreesRegressor

    model = ExtraTreesRegressor(n_estimators=100, min_samples_leaf=1, random_state=0)
    model.fit(_log_features(train_layers), np.log(train_latencies))
    return np.exp(model.predict(_log_features(query_layers)))


def _log_features(layers: Sequence[LayerConfig]) -> np.ndarray:
    rows = []
    for layer in layers:
        params = [float(v) for v in layer.params().values()]
        work = [layer.macs, layer.weight_bytes, layer.activation_bytes]
        rows.append(np.log1p(np.array(params + [float(w) for w in work])))
    return np.vstack(rows)


# -- every sampler by name --------------------------------------------------------------------

SAMPLERS = ("pr", "random", "adaptive")
"""The samplers that need nothing but a space (and PRs): the evaluation's default comparison."""
SAMPLER_NAMES = (*SAMPLERS, "networks")
"""Every name :func:`make_sampler` accepts (``prmodel plan --sampler``)."""


def make_sampler(
    name: str,
    *,
    representatives: RepresentativeSet | None = None,
    space: SpaceArg = None,
    draw: str = "space",
    measure: MeasureFn | None = None,
    fit_predict: FitPredictFn | None = None,
    networks: Mapping[str, Sequence[LayerConfig]] | None = None,
    random_share: float = 0.2,
) -> Sampler:
    """The sampler called ``name``, built from what it needs.

    Args:
        name: ``pr``, ``random``, ``adaptive`` or ``networks`` (:data:`SAMPLER_NAMES`).
        representatives: The PR set (``pr`` only; required there).
        space: The parameter space(s) to draw from (default spaces if None).
        draw: How ``pr`` draws a subset of its product (:data:`PR_DRAWS`).
        measure: Measures layers for ``adaptive`` (required there).
        fit_predict: The model of ``adaptive`` (default :func:`log_feature_fit_predict`).
        networks: Each network's mapped layers by name (``networks`` only; required there).
        random_share: Share of each budget the ``networks`` sampler draws at random.

    Returns:
        A :class:`Sampler`: ``sample(kind, budget, *, seed=0)`` gives the layers.

    Raises:
        SamplingError: an unknown name, or a sampler without what it needs.
    """
    if name == "pr":
        if representatives is None:
            raise SamplingError("the pr sampler needs a Performance Representatives set")
        return PRSampler(representatives, space, draw=draw)
    if name == "random":
        return RandomSampler(space)
    if name == "adaptive":
        if measure is None:
            raise SamplingError("the adaptive sampler needs a measure function")
        return AdaptiveSampler(
            space, measure=measure, fit_predict=fit_predict or log_feature_fit_predict
        )
    if name == "networks":
        return NetworkSampler(networks or {}, space, random_share=random_share)
    raise SamplingError(f"unknown sampler {name!r} (samplers: {', '.join(SAMPLER_NAMES)})")


__all__ = [
    "PR_DRAWS",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "AdaptiveSampler",
    "FitPredictFn",
    "MeasureFn",
    "PRSampler",
    "RandomSampler",
    "Sampler",
    "SamplingError",
    "SpaceArg",
    "log_feature_fit_predict",
    "make_sampler",
    "perturb",
    "space_for",
]
