"""Profile networks batch by batch within a time budget, into the network-profile data set.

:class:`NetworkProfiler` builds networks from their specs (torch-free, into a temporary
folder), measures them on a target that runs whole networks with their rounds interleaved
(:func:`prmodel.workflows.calibrate.measure_networks`), maps their kernels
(:class:`~prmodel.estimate.estimator.Estimator` without models), and appends every kernel
with its profiled time to the data set (:mod:`prmodel.workflows.network_profiles`) after
each batch. Before each batch it predicts what every waiting network would cost and takes
only those that fit the time left, so measuring stops where the budget ends; a progress bar
shows the seconds spent against those planned, with an ETA.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prmodel.estimate.compare import compare
from prmodel.estimate.estimator import Estimator
from prmodel.networks import NetworkMeasureSettings, load_network
from prmodel.targets.base import Target
from prmodel.workflows.calibrate import measure_networks
from prmodel.workflows.network_profiles import append_profiles, profile_rows
from prmodel.zoo.sets import NetworkSpec, build_networks, parameter_count

FIRST_BATCH = 4
"""Networks in the first batch: small, so the cost model learns this machine's speed early."""
MAX_BATCH = 8
"""Networks measured together, their rounds interleaved (each holds two sessions)."""
MAX_BATCH_WEIGHTS = 300e6
"""Weights (elements) of one batch's networks at most (a larger network goes alone): each
network keeps two sessions open with their own copy (VGG-16 has 138 million)."""
INITIAL_GMACS = 20.0
"""Network speed (GMAC/s) assumed before any network was measured: slow on purpose, so the
first batch never overruns the budget on a slow machine."""
NETWORK_OVERHEAD_S = 1.0
"""Seconds per network besides its runs: building, two sessions, mapping its kernels."""
SECONDS_PER_MPARAM = 0.02
"""Seconds per million weights to draw, write and load them."""
PROFILED_RUN_COST = 1.5
"""A profiled run's time in plain runs (the profiler's bookkeeping)."""
MIN_NETWORK_US = 100.0
"""The least latency assumed for a network (launch costs dominate tiny ones)."""


class NetworkProfiler:
    """Measures networks batch by batch while the predicted cost fits the time left.

    A network's cost is predicted from its MACs and weights: its latency at the speed
    (MAC/s) of the networks of the same architecture measured so far (of any, before that;
    :data:`INITIAL_GMACS` before any), times the runs the settings make, plus a fixed and a
    per-weight cost; after every batch, the ratio of its actual to its predicted time
    corrects every later prediction.
    """

    def __init__(
        self,
        target: Target,
        settings: NetworkMeasureSettings,
        identity: dict[str, str],
        *,
        clock: Callable[[], float],
        budget_s: float,
    ) -> None:
        self.target = target
        self.settings = settings
        self.identity = identity
        self.clock = clock
        self.budget_s = budget_s
        self.elapsed = 0.0
        self.factor = 1.0
        self.rates: dict[str, list[float]] = {}
        self.notes: list[str] = []
        self.batches = 0
        self.measured = 0
        self._sizes: dict[str, tuple[float, float]] = {}
        self._bar: _Bar | None = None

    @property
    def runs_per_network(self) -> float:
        s = self.settings
        return 2 * s.warmup + s.rounds * (1 + s.runs + PROFILED_RUN_COST * s.profiled_runs)

    def size(self, spec: NetworkSpec) -> tuple[float, float]:
        """(MACs, weights) of a network, from its skeleton (no weights drawn)."""
        if spec.name not in self._sizes:
            model = spec.build(weights=False)
            self._sizes[spec.name] = (float(network_macs(model)), float(parameter_count(model)))
        return self._sizes[spec.name]

    def learn_rates(self, rows: pd.DataFrame, specs: Sequence[NetworkSpec]) -> None:
        """Take the speed of networks measured before (their MACs per µs of latency)."""
        by_name = {spec.name: spec for spec in specs}
        for name, total in rows.groupby("network")["network_total_us"].first().items():
            spec = by_name.get(str(name))
            if spec is not None and total > 0:
                self._add_rate(spec, float(total))

    def _add_rate(self, spec: NetworkSpec, total_us: float) -> None:
        macs, _ = self.size(spec)
        if macs > 0:
            self.rates.setdefault(spec.builder.__name__, []).append(macs / total_us)

    def predict_s(self, spec: NetworkSpec) -> float:
        """Predicted seconds to build, measure and map ``spec`` (before the correction)."""
        macs, weights = self.size(spec)
        same = self.rates.get(spec.builder.__name__)
        every = [rate for rates in self.rates.values() for rate in rates]
        rate = statistics.median(same or every) if (same or every) else INITIAL_GMACS * 1e3
        latency_s = max(macs / rate, MIN_NETWORK_US) / 1e6
        return (
            NETWORK_OVERHEAD_S
            + SECONDS_PER_MPARAM * weights / 1e6
            + latency_s * (self.runs_per_network)
        )

    @contextmanager
    def showing(self, enabled: bool = True) -> Iterator[None]:
        """Keep one progress bar (stderr) over every :meth:`run` inside the block."""
        with _progress(enabled) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def run(
        self,
        pending: Sequence[NetworkSpec],
        path: Path,
        *,
        later: Sequence[NetworkSpec] = (),
        progress: bool = True,
        on_note: Callable[[str], None] | None = None,
    ) -> set[str]:
        """Measure networks of ``pending`` in order while they fit the budget.

        Their rows go to the data set at ``path`` after every batch. ``later`` are networks
        a later run may measure: the bar's plan counts them. ``progress`` shows a bar on
        stderr (unless :meth:`showing` holds one); ``on_note`` is told of every batch and of
        networks the budget left out. Returns the names measured.
        """
        measured: set[str] = set()
        waiting = list(pending)
        shown = self._bar is not None
        enabled = progress and not shown and bool(self._next_batch(waiting, 1)[0])
        with nullcontext(self._bar) if self._bar is not None else _progress(enabled) as bar:
            bar.plan(self.elapsed, self._planned([*waiting, *later]), measured=self.measured)
            while waiting:
                limit = FIRST_BATCH if not self.measured else MAX_BATCH
                batch, predicted = self._next_batch(waiting, limit)
                if not batch:
                    break
                spent = self._batch(batch, predicted, path, bar)
                measured.update(spec.name for spec in batch)
                self.measured += len(batch)
                waiting = [spec for spec in waiting if spec.name not in measured]
                self._note(
                    f"measured {len(batch)} networks in {spent:.0f} s ({self.elapsed:.0f} of "
                    f"{self.budget_s:.0f} s spent)",
                    on_note,
                )
                bar.plan(self.elapsed, self._planned([*waiting, *later]), measured=self.measured)
        if waiting:
            self._note(
                f"the time budget ({self.budget_s / 60:g} min) left {len(waiting)} networks "
                "unmeasured",
                on_note,
            )
        return measured

    def settle(self) -> None:
        """Nothing more will be measured: the bar's plan ends where measuring ended."""
        if self._bar is not None:
            self._bar.plan(self.elapsed, 0.0, measured=self.measured)

    def spend(self, seconds: float) -> None:
        """Count ``seconds`` of other work (checks between tiers) against the budget."""
        self.elapsed += seconds

    @property
    def left_s(self) -> float:
        """Seconds of the budget not yet spent."""
        return max(self.budget_s - self.elapsed, 0.0)

    def _batch(
        self, batch: Sequence[NetworkSpec], predicted: Sequence[float], path: Path, bar: _Bar
    ) -> float:
        """Measure one batch, save its rows and correct the cost model; returns its seconds."""
        self.batches += 1
        started = self.clock()
        rows = self._measure(batch, self.batches, predicted, bar)
        append_profiles(path, rows)
        spent = self.clock() - started
        self.elapsed += spent
        base = sum(self.predict_s(spec) for spec in batch)  # at the speeds just measured
        self.factor = min(max(spent / base, 0.25), 100.0) if base > 0 else 1.0
        return spent

    def _note(self, message: str, on_note: Callable[[str], None] | None) -> None:
        self.notes.append(message)
        if on_note is not None:
            on_note(message)

    def _planned(self, waiting: Sequence[NetworkSpec]) -> float:
        """Seconds the waiting networks would take, capped at the budget left."""
        left = max(self.budget_s - self.elapsed, 0.0)
        return min(left, sum(self.factor * self.predict_s(spec) for spec in waiting))

    def _next_batch(
        self, waiting: Sequence[NetworkSpec], limit: int
    ) -> tuple[list[NetworkSpec], list[float]]:
        """The next networks (in order, skipping those that do not fit) whose predicted cost
        fits the time left; past the first network, a batch takes at most half of it, so
        batches shrink as the budget runs out and a misjudged one overruns it by little."""
        left = self.budget_s - self.elapsed
        batch: list[NetworkSpec] = []
        costs: list[float] = []
        weights = 0.0
        for spec in waiting:
            cost = self.factor * self.predict_s(spec)
            room = left if not batch else left / 2
            heavy = bool(batch) and weights + self.size(spec)[1] > MAX_BATCH_WEIGHTS
            if sum(costs) + cost <= room and not heavy:
                batch.append(spec)
                costs.append(cost)
                weights += self.size(spec)[1]
            if len(batch) == limit:
                break
        return batch, costs

    def _measure(
        self, batch: Sequence[NetworkSpec], number: int, predicted: Sequence[float], bar: _Bar
    ) -> list[pd.DataFrame]:
        total = sum(predicted)
        started = self.clock()
        with tempfile.TemporaryDirectory(prefix="prmodel-learn-") as folder:
            paths = build_networks(list(batch), folder)
            networks = [load_network(path) for path in paths]
            rounds = self.settings.rounds

            def on_round(done: int) -> None:
                bar.advance_to(self.elapsed + total * done / (rounds + 1))

            measurements = measure_networks(
                networks, self.target, settings=self.settings, on_round=on_round
            )
            mapper = Estimator(self.target, {}, strict=False, partial=True)
            comparisons = []
            for network, measurement in zip(networks, measurements, strict=True):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a model-less estimate warns of it
                    comparisons.append(compare(mapper.predict(network), measurement))
        spent = self.clock() - started
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        rows = []
        for spec, comparison, cost in zip(batch, comparisons, predicted, strict=True):
            self._add_rate(spec, comparison.measurement.total_us)
            share = spent * cost / total if total > 0 else spent / len(batch)
            facts = {
                "network": spec.name,
                "network_hash": spec.settings_hash(),
                "builder": spec.builder.__name__,
                "network_options": json.dumps(spec.settings()["kwargs"], sort_keys=True),
                "measured_at": stamp,
                "measure_batch": number,
                "seconds": share,
            }
            rows.append(profile_rows(comparison, identity=self.identity, network=facts))
        return rows


def network_macs(model: Any) -> int:
    """Multiply-accumulates of a network's Conv, Gemm and MatMul nodes (shape-inferred; a
    skeleton without weights will do)."""
    network = load_network(model)
    total = 0
    for node in network.model.graph.node:
        out = network.shapes.get(node.output[0]) if node.output else None
        if not out:
            continue
        if node.op_type == "Conv":
            weight = network.shapes.get(node.input[1])
            total += math.prod(out) * math.prod(weight[1:]) if weight else 0
        elif node.op_type in ("Gemm", "MatMul"):
            left = network.shapes.get(node.input[0])
            total += math.prod(out) * left[-1] if left else 0
    return int(total)


@dataclass
class _Bar:
    """The measuring progress in seconds (planned seconds as the total), or nothing."""

    progress: Progress | None = None
    task: Any = None
    completed: float = 0.0
    total: float = field(default=0.0)

    def plan(self, elapsed: float, planned: float, *, measured: int) -> None:
        """Seconds spent so far and planned for the rest; networks measured so far."""
        self.total = elapsed + planned
        self.completed = elapsed
        if self.progress is not None:
            self.progress.update(
                self.task,
                total=max(self.total, 1e-9),
                completed=self.completed,
                description=f"profiling networks ({measured} measured)",
            )

    def advance_to(self, seconds: float) -> None:
        self.completed = max(self.completed, min(seconds, self.total))
        if self.progress is not None:
            self.progress.update(self.task, completed=self.completed)

    def finish(self) -> None:
        """The work ended here (all of it, or the rest was not needed): a full bar, no ETA."""
        self.total = self.completed
        if self.progress is not None:
            self.progress.update(self.task, total=max(self.total, 1e-9), completed=self.total)


@contextmanager
def _progress(enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar()
        return
    columns = (
        TextColumn("{task.description}", style="cyan"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        bar = _Bar(progress, progress.add_task("profiling networks", total=None))
        yield bar
        bar.finish()  # not on an exception: an interrupted bar stays where it stopped


__all__ = [
    "FIRST_BATCH",
    "INITIAL_GMACS",
    "MAX_BATCH",
    "MAX_BATCH_WEIGHTS",
    "NetworkProfiler",
    "network_macs",
]
