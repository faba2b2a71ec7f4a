"""Test-only targets: a noisy fake with scripted disturbances and failures, and slow ones.

They load through the dotted plugin spec of :func:`prmodel.targets.get_target`, e.g.
``fake_targets.SlowTarget:delay_ms=50`` with ``tests/`` on ``PYTHONPATH``, so a
``prmodel sweep`` subprocess can use them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prmodel.layers import LayerConfig
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import LayerBuildError, Timings

WALL_OVERHEAD_US = 2.0
REORDER_US = 1.0


@dataclass
class NoisyFakeTarget:
    """A noisy target whose true latency is the analytic model's.

    Every call made on any of its benchmarks (canary included) advances one shared call
    counter; calls whose counter falls in ``disturb_window`` take ``disturb_factor`` times
    longer, which is how a neighbour's burst of load looks to the runner. ``noise`` adds
    seeded relative jitter. Layers whose out_channels are in ``fail_prepare`` / ``fail_run``
    fail at prepare / at their first run; ``unsupported_out`` are reported unsupported.
    """

    noise: float = 0.0
    disturb_window: tuple[int, int] = (0, 0)
    disturb_factor: float = 1.5
    fail_prepare: frozenset[int] = frozenset()
    fail_run: frozenset[int] = frozenset()
    unsupported_out: frozenset[int] = frozenset()
    delay_ms: float = 0.0
    seed: int = 0
    name: str = "noisy-fake"
    deterministic: bool = False
    calls_made: int = 0
    prepared: list[LayerConfig] = field(default_factory=list)
    closed: int = 0
    _model: AnalyticTarget = field(default_factory=AnalyticTarget)
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    @classmethod
    def from_options(cls, options: dict[str, str]) -> NoisyFakeTarget:
        return cls(delay_ms=float(options.get("delay_ms", 0)), noise=float(options.get("noise", 0)))

    @property
    def target_id(self) -> str:
        return "noisy-fake"

    def fingerprint(self) -> dict[str, Any]:
        return {"target": "noisy-fake"}

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        if layer.out_channels in self.unsupported_out:
            return f"{layer.label} is not supported by the fake"
        return None

    def prepare(self, layer: LayerConfig) -> _NoisyBenchmark:
        if layer.out_channels in self.fail_prepare:
            raise LayerBuildError(f"{layer.label}: the fake refuses to build it")
        self.prepared.append(layer)
        return _NoisyBenchmark(self, layer, self._model.latency_us(layer))

    def true_latency(self, layer: LayerConfig) -> float:
        return self._model.latency_us(layer)

    def next_call_factor(self) -> float:
        start, stop = self.disturb_window
        factor = self.disturb_factor if start <= self.calls_made < stop else 1.0
        self.calls_made += 1
        if self.noise:
            factor *= 1.0 + abs(float(self._rng.normal(0.0, self.noise)))
        return factor


class _NoisyBenchmark:
    def __init__(self, target: NoisyFakeTarget, layer: LayerConfig, latency_us: float) -> None:
        self.layer = layer
        self._target = target
        self._latency_us = latency_us
        self._kernel: list[float] = []
        self._closed = False

    def run(self, calls: int) -> list[float]:
        if self.layer.out_channels in self._target.fail_run:
            raise RuntimeError(f"{self.layer.label}: the fake crashed while running")
        if self._target.delay_ms:
            time.sleep(self._target.delay_ms / 1000)
        times = [self._latency_us * self._target.next_call_factor() for _ in range(calls)]
        self._kernel.extend(times)
        return [t + WALL_OVERHEAD_US + REORDER_US for t in times]

    def finish(self) -> Timings:
        kernel = tuple(self._kernel)
        return Timings(
            kernel_us=kernel,
            wall_us=tuple(t + WALL_OVERHEAD_US + REORDER_US for t in kernel),
            reorder_us=(REORDER_US,) * len(kernel),
            extra={"fake": 1.0},
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._target.closed += 1


@dataclass(frozen=True)
class SlowTarget(AnalyticTarget):
    """The analytic target, sleeping ``delay_ms`` per prepared layer (for kill tests)."""

    delay_ms: float = 50.0

    @classmethod
    def from_options(cls, options: dict[str, str]) -> SlowTarget:  # type: ignore[override]
        return cls(delay_ms=float(options.get("delay_ms", 50)))

    def prepare(self, layer: LayerConfig) -> Any:
        time.sleep(self.delay_ms / 1000)
        return super().prepare(layer)
