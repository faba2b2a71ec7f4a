"""The measuring protocol for one target: batches sized by warm-up calls, interleaved rounds
with a canary that discards disturbed ones, the stopping rule and the statistics of a point
(described in :mod:`prmodel.measure.runner`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig
from prmodel.measure._progress import _Bar
from prmodel.measure.store import Measurement
from prmodel.targets.base import Benchmark, Target, Timings

CANARY_LAYER = LayerConfig.create(
    "conv", channels=64, height=28, width=28, out_channels=64, kernel=3, padding=1
)
"""The reference layer measured every round to detect a disturbed machine."""

_NOTCH = 1.57  # boxplot-notch constant: 1.57 * IQR / sqrt(n) ~ 95 % CI half-width of a median


@dataclass(frozen=True, kw_only=True)
class MeasureSettings:
    """How hard the runner measures noisy targets (see the module docstring)."""

    warmup_calls: int = 5
    batch_ms: float = 20.0
    calls_per_round: int | None = None
    """Fixed calls per round; None sizes each point's batch to ``batch_ms``."""
    min_calls: int = 3
    max_calls: int = 1000
    min_rounds: int = 3
    max_rounds: int = 15
    target_rel_ci: float = 0.01
    confirm_tolerance: float = 0.02
    max_seconds_per_point: float = 30.0
    chunk_size: int = 8
    canary: bool = True
    canary_tolerance: float = 0.10
    canary_batch_ms: float = 10.0
    """The canary's batch per round: shorter than a point's, as it is pure overhead."""
    max_disturbed_retries: int = 3
    canary_refresh_calls: int = 20_000
    """Re-prepare the canary after this many calls, so its timing record stays small."""
    seed: int = 0


# -- the runner -------------------------------------------------------------------------------
@dataclass(eq=False)  # identity semantics: points are dict keys within a round
class _Point:
    """One layer being measured on a noisy target (mutable, private to the runner)."""

    layer: LayerConfig
    bench: Benchmark
    calls: int = 0
    segments: list[tuple[int, str]] = field(default_factory=list)
    """(calls, "warmup" | "accepted" | "disturbed") in call order."""
    wall_rounds: list[list[float]] = field(default_factory=list)
    canary_ratios: list[float] = field(default_factory=list)
    """Canary round median over its best ever, for each accepted round with a canary."""
    canary_medians: list[float] = field(default_factory=list)
    """The canary's round median (µs of wall time), for the same rounds."""
    disturbed: int = 0


class MeasurementSink(Protocol):
    """Where the runner puts each point: the store, or a cluster worker's outbox."""

    def record(self, measurement: Measurement) -> None: ...

    def get(self, target_id: str, fingerprint_hash: str, layer_key: str) -> Measurement | None: ...


class _Runner:
    def __init__(
        self,
        target: Target,
        store: MeasurementSink,
        settings: MeasureSettings,
        digest: str,
        *,
        keep_stored_ok: bool = False,
    ) -> None:
        self.target = target
        self.keep_stored_ok = keep_stored_ok
        self.store = store
        self.settings = settings
        self.digest = digest
        self.rng = np.random.default_rng(settings.seed)
        self.measured = 0
        self.failed = 0
        self.disturbed_rounds = 0
        self.canary_used = False
        self._canary: _Canary | None = None

    def measure(self, layers: Sequence[LayerConfig], bar: _Bar) -> None:
        try:
            self.measure_more(layers, bar)
        finally:
            self.close()

    def measure_more(self, layers: Sequence[LayerConfig], bar: _Bar) -> None:
        """Measure ``layers``, keeping the canary and its baseline for the next call.

        A cluster worker calls this once per batch, so its canary judges every round it
        runs against the best it has seen on its device, as one local sweep does.
        """
        if self.target.deterministic:
            for layer in layers:
                bar.label(layer.label)
                self._measure_exact(layer)
                bar.advance()
            return
        size = max(self.settings.chunk_size, 1)
        for start in range(0, len(layers), size):
            chunk = layers[start : start + size]
            bar.label(_chunk_label(chunk))
            self._measure_chunk(chunk, bar)

    def close(self) -> None:
        """Release the canary (the runner can measure again; it prepares a new one)."""
        if self._canary is not None:
            self._canary.close()

    # -- recording -------------------------------------------------------------------------
    def _record(self, measurement: Measurement) -> None:
        if measurement.status == "ok":
            self.store.record(measurement)
            self.measured += 1
            return
        self.failed += 1
        if self.keep_stored_ok:
            # re-measuring: a layer failing now keeps the good point it already has
            stored = self.store.get(self.target.target_id, self.digest, measurement.layer_key)
            if stored is not None and stored.status == "ok":
                return
        self.store.record(measurement)

    def _fail(self, layer: LayerConfig, reason: str) -> None:
        self._record(
            Measurement.failed(
                layer, target_id=self.target.target_id, fingerprint_hash=self.digest, error=reason
            )
        )

    def _prepare(self, layer: LayerConfig) -> Benchmark | None:
        reason = self.target.unsupported_reason(layer)
        if reason is not None:
            self._fail(layer, reason)
            return None
        try:
            return self.target.prepare(layer)
        except Exception as exc:  # any target failure is this layer's, not the sweep's
            self._fail(layer, _reason(exc))
            return None

    # -- deterministic targets ---------------------------------------------------------------
    def _measure_exact(self, layer: LayerConfig) -> None:
        bench = self._prepare(layer)
        if bench is None:
            return
        try:
            bench.run(1)
            measurement = self._exact_measurement(layer, bench.finish())
        except Exception as exc:
            self._fail(layer, _reason(exc))
            return
        finally:
            bench.close()
        self._record(measurement)

    def _exact_measurement(self, layer: LayerConfig, timings: Timings) -> Measurement:
        latency = float(timings.kernel_us[-1])
        wall = float(timings.wall_us[-1]) if timings.wall_us else None
        reorder = float(timings.reorder_us[-1]) if timings.reorder_us else None
        return Measurement(
            layer=layer,
            target_id=self.target.target_id,
            fingerprint_hash=self.digest,
            latency_us=latency,
            median_us=latency,
            min_us=latency,
            p10_us=latency,
            p90_us=latency,
            mean_us=latency,
            n=1,
            rounds=1,
            wall_median_us=wall,
            reorder_median_us=reorder,
            extra={k: float(v) for k, v in timings.extra.items()},
        )

    # -- noisy targets -----------------------------------------------------------------------
    def _measure_chunk(self, chunk: Sequence[LayerConfig], bar: _Bar) -> None:
        points: list[_Point] = []
        try:
            for layer in chunk:
                point = self._start_point(layer)
                if point is None:
                    bar.advance()
                else:
                    points.append(point)
            self._run_rounds(points, bar)
        finally:
            for point in points:
                point.bench.close()

    def _start_point(self, layer: LayerConfig) -> _Point | None:
        bench = self._prepare(layer)
        if bench is None:
            return None
        point = _Point(layer, bench)
        try:
            point.calls = self._size_batch(bench, point, batch_ms=self.settings.batch_ms)
        except Exception as exc:
            bench.close()
            self._fail(layer, _reason(exc))
            return None
        return point

    def _size_batch(self, bench: Benchmark, point: _Point | None, *, batch_ms: float) -> int:
        s = self.settings
        began = time.perf_counter()
        bench.run(s.warmup_calls)
        per_call = (time.perf_counter() - began) / max(s.warmup_calls, 1)
        if point is not None:
            point.segments.append((s.warmup_calls, "warmup"))
        if s.calls_per_round is not None:
            return s.calls_per_round
        wanted = math.ceil(batch_ms / 1000 / max(per_call, 1e-9))
        return int(min(max(wanted, s.min_calls), s.max_calls))

    def _run_rounds(self, points: list[_Point], bar: _Bar) -> None:
        s = self.settings
        canary = self._get_canary()
        deadline = time.perf_counter() + s.max_seconds_per_point * max(len(points), 1)
        active = list(points)
        while active:
            walls = self._one_round(active, canary)
            disturbed = canary is not None and not canary.accept(walls.pop(None, None))
            for point in list(active):
                if point not in walls:  # failed during the round
                    active.remove(point)
                    bar.advance()
                    continue
                self._file_round(point, walls[point], disturbed=disturbed)
                reading = canary.last_reading() if canary is not None else None
                if reading is not None and not disturbed:
                    point.canary_ratios.append(reading[0])
                    point.canary_medians.append(reading[1])
                late = time.perf_counter() > deadline and bool(point.wall_rounds)
                if late or self._converged(point):
                    active.remove(point)
                    self._finish(point)
                    bar.advance()
            if disturbed:
                self.disturbed_rounds += 1

    def _one_round(
        self, active: list[_Point], canary: _Canary | None
    ) -> dict[_Point | None, list[float]]:
        items: list[_Point | None] = [*active, None] if canary is not None else list(active)
        walls: dict[_Point | None, list[float]] = {}
        for index in self.rng.permutation(len(items)):
            point = items[index]
            if point is None:
                assert canary is not None
                canary_walls = canary.run()
                if canary_walls is not None:
                    walls[None] = canary_walls
                continue
            try:
                walls[point] = point.bench.run(point.calls)
            except Exception as exc:
                point.bench.close()
                self._fail(point.layer, _reason(exc))
        return walls

    def _file_round(self, point: _Point, walls: list[float], *, disturbed: bool) -> None:
        point.segments.append((point.calls, "disturbed" if disturbed else "accepted"))
        if disturbed:
            point.disturbed += 1
        else:
            point.wall_rounds.append(list(walls))

    def _converged(self, point: _Point) -> bool:
        s = self.settings
        accepted = len(point.wall_rounds)
        if accepted >= s.max_rounds:
            return True
        if accepted < s.min_rounds:
            return False
        medians = sorted(float(np.median(r)) for r in point.wall_rounds)
        if medians[1] > medians[0] * (1 + s.confirm_tolerance):
            return False
        return relative_ci([w for r in point.wall_rounds for w in r]) <= s.target_rel_ci

    def _finish(self, point: _Point) -> None:
        try:
            timings = point.bench.finish()
            measurement = self._noisy_measurement(point, timings)
        except Exception as exc:
            self._fail(point.layer, _reason(exc))
            return
        finally:
            point.bench.close()
        self._record(measurement)

    def _noisy_measurement(self, point: _Point, timings: Timings) -> Measurement:
        kernel_rounds = _accepted_rounds(point, timings.kernel_us, "kernel")
        wall_rounds = _accepted_rounds(point, timings.wall_us, "wall")
        reorder_rounds = (
            _accepted_rounds(point, timings.reorder_us, "reorder") if timings.reorder_us else []
        )
        kernel = np.concatenate(kernel_rounds)
        round_medians = [float(np.median(r)) for r in kernel_rounds]
        extra = {k: float(v) for k, v in timings.extra.items()}
        extra.update(
            rel_ci=relative_ci(kernel),
            rel_ci_wall=relative_ci(np.concatenate(wall_rounds)),
            disturbed_rounds=float(point.disturbed),
            calls_per_round=float(point.calls),
            round_spread=max(round_medians) / min(round_medians) - 1 if min(round_medians) else 0,
        )
        if point.canary_ratios:
            extra["canary_ratio"] = float(np.median(point.canary_ratios))
            extra["canary_us"] = float(np.median(point.canary_medians))
        return Measurement(
            layer=point.layer,
            target_id=self.target.target_id,
            fingerprint_hash=self.digest,
            latency_us=min(round_medians),
            median_us=float(np.median(kernel)),
            min_us=float(kernel.min()),
            p10_us=float(np.percentile(kernel, 10)),
            p90_us=float(np.percentile(kernel, 90)),
            mean_us=float(kernel.mean()),
            n=int(kernel.size),
            rounds=len(kernel_rounds),
            wall_median_us=float(np.median(np.concatenate(wall_rounds))),
            reorder_median_us=(
                float(np.median(np.concatenate(reorder_rounds))) if reorder_rounds else None
            ),
            extra=extra,
        )

    def _get_canary(self) -> _Canary | None:
        if not self.settings.canary:
            return None
        if self._canary is None:
            if self.target.unsupported_reason(CANARY_LAYER) is not None:
                return None
            self._canary = _Canary(self)
        if not self._canary.ready():
            return None
        self.canary_used = True
        return self._canary


class _Canary:
    """The reference layer whose round medians tell a disturbed machine from a quiet one."""

    def __init__(self, runner: _Runner) -> None:
        self._runner = runner
        self._bench: Benchmark | None = None
        self._broken = False
        self._calls = 0
        self._calls_made = 0
        self._baseline: float | None = None
        self._best_ever: float | None = None
        self.last_ratio: float | None = None
        """The last round's canary median over the lowest one seen in the sweep."""
        self.last_median: float | None = None
        """The last round's canary median (µs of wall time)."""
        self._tolerance = runner.settings.canary_tolerance
        self._disturbed_in_row = 0

    def ready(self) -> bool:
        if self._broken:
            return False
        if (
            self._bench is not None
            and self._calls_made < self._runner.settings.canary_refresh_calls
        ):
            return True
        self.close()
        try:
            self._bench = self._runner.target.prepare(CANARY_LAYER)
            batch_ms = self._runner.settings.canary_batch_ms
            self._calls = self._runner._size_batch(self._bench, None, batch_ms=batch_ms)
        except Exception:  # no canary on this target: rounds are then never judged disturbed
            self._broken = True
            self.close()
            return False
        self._calls_made = 0
        return True

    def run(self) -> list[float] | None:
        """One batch of the canary (None, and no canary from now on, if it fails)."""
        assert self._bench is not None
        self._calls_made += self._calls
        try:
            return self._bench.run(self._calls)
        except Exception:
            self._broken = True
            self.close()
            return None

    def last_reading(self) -> tuple[float, float] | None:
        """The last round's (ratio to the sweep's best, median µs), None before any round."""
        if self.last_ratio is None or self.last_median is None:
            return None
        return self.last_ratio, self.last_median

    def accept(self, walls: list[float] | None) -> bool:
        """Whether the round whose canary batch took ``walls`` counts as undisturbed."""
        if not walls:
            return True
        median = float(np.median(walls))
        self._best_ever = min(self._best_ever or median, median)
        self.last_ratio = median / self._best_ever
        self.last_median = median
        if self._baseline is None or median <= self._baseline * (1 + self._tolerance):
            self._accept(median)
            return True
        self._disturbed_in_row += 1
        if self._disturbed_in_row > self._runner.settings.max_disturbed_retries:
            # The machine has settled into a slower state: accept it and judge against it.
            self._baseline = None
            self._accept(median)
            return True
        return False

    def _accept(self, median: float) -> None:
        self._disturbed_in_row = 0
        self._baseline = median if self._baseline is None else min(self._baseline, median)

    def close(self) -> None:
        if self._bench is not None:
            self._bench.close()
            self._bench = None


# -- statistics -------------------------------------------------------------------------------
def relative_ci(samples: Sequence[float] | np.ndarray) -> float:
    """Relative ~95 % confidence half-width of the median: ``1.57 * IQR / sqrt(n) / median``.

    Returns ``inf`` for no samples or a zero median.
    """
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        return math.inf
    median = float(np.median(values))
    if median <= 0:
        return math.inf
    q25, q75 = np.percentile(values, [25, 75])
    return float(_NOTCH * (q75 - q25) / math.sqrt(values.size) / median)


def _accepted_rounds(point: _Point, values: Sequence[float], what: str) -> list[np.ndarray]:
    """Split one call-ordered timing series back into the point's accepted rounds."""
    total = sum(calls for calls, _ in point.segments)
    if len(values) != total:
        raise RuntimeError(
            f"the target returned {len(values)} {what} timings for the {total} calls made"
        )
    rounds = []
    position = 0
    for calls, status in point.segments:
        if status == "accepted":
            rounds.append(np.asarray(values[position : position + calls], dtype=float))
        position += calls
    if not rounds:
        raise RuntimeError("no undisturbed round was measured")
    return rounds


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, PrmodelError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chunk_label(chunk: Sequence[LayerConfig]) -> str:
    label = chunk[0].label
    return label if len(chunk) == 1 else f"{label} (+{len(chunk) - 1})"
