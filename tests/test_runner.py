from __future__ import annotations

import json
from pathlib import Path

import fake_targets
import numpy as np
import pandas as pd
import pytest
from fake_targets import REORDER_US, WALL_OVERHEAD_US, NoisyFakeTarget, SlowTarget

from prmodel.layers import LayerConfig
from prmodel.measure import _protocol, runner
from prmodel.measure.runner import (
    CANARY_LAYER,
    MeasureSettings,
    measure_and_read,
    measure_layers,
    relative_ci,
    run_sweep,
)
from prmodel.measure.store import MeasurementStore
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import Timings

FIXED_CALLS = MeasureSettings(calls_per_round=10, warmup_calls=2, chunk_size=4)


def convs(*outs: int) -> list[LayerConfig]:
    return [
        LayerConfig.create(
            "conv", channels=16, height=14, width=14, out_channels=o, kernel=3, padding=1
        )
        for o in outs
    ]


@pytest.fixture
def store(tmp_path: Path) -> MeasurementStore:
    with MeasurementStore(tmp_path / "m.sqlite") as s:
        yield s


def extra(frame, column: str = "extra") -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    return [json.loads(text) for text in frame[column]]


# -- deterministic targets ------------------------------------------------------------------
def test_analytic_sweep_is_exact_and_resumes(
    store: MeasurementStore, analytic_target: AnalyticTarget
) -> None:
    layers = convs(*range(1, 21))
    report = run_sweep(layers, analytic_target, store=store, progress=False, plan_name="a")
    assert (report.requested, report.measured, report.skipped, report.failed) == (20, 20, 0, 0)
    frame = store.frame(target_id=analytic_target.target_id)
    expected = {x.key: analytic_target.latency_us(x) for x in layers}
    assert dict(zip(frame["layer_key"], frame["latency_us"], strict=True)) == expected
    assert set(frame["n"]) == {1} and set(frame["rounds"]) == {1}

    again = run_sweep(layers[:5], analytic_target, store=store, progress=False, plan_name="b")
    assert (again.measured, again.skipped) == (0, 5)
    assert len(store.frame(plan="b")) == 5  # membership recorded for skipped layers too
    assert len(store.frame(plan="a")) == 20


def test_measure_layers_returns_requested_rows_in_order(
    store: MeasurementStore, analytic_target: AnalyticTarget
) -> None:
    run_sweep(convs(1, 2, 3, 4), analytic_target, store=store, progress=False)
    wanted = convs(3, 9, 1, 3)
    frame = measure_layers(wanted, analytic_target, store=store, progress=False, plan_name="t")
    assert list(frame["out_channels"]) == [3, 9, 1]
    assert list(frame["latency_us"]) == [analytic_target.latency_us(x) for x in convs(3, 9, 1)]
    assert set(store.frame(plan="t")["out_channels"]) == {1, 3, 9}


def test_measure_and_read_also_reports_the_sweep(
    store: MeasurementStore, analytic_target: AnalyticTarget
) -> None:
    run_sweep(convs(1, 2), analytic_target, store=store, progress=False)
    result = measure_and_read(convs(2, 3, 3), analytic_target, store=store, progress=False)
    assert list(result.frame["out_channels"]) == [2, 3]
    assert (result.report.requested, result.report.measured, result.report.skipped) == (2, 1, 1)
    failing = NoisyFakeTarget(fail_prepare=frozenset({5}), deterministic=True)
    result = measure_and_read(convs(5, 6), failing, store=store, progress=False)
    assert list(result.frame["out_channels"]) == [6]  # a failed layer has no row
    assert result.report.failed == 1


def test_new_fingerprint_is_measured_again(store: MeasurementStore) -> None:
    layers = convs(1, 2)
    run_sweep(layers, AnalyticTarget(), store=store, progress=False)
    other = AnalyticTarget(gmacs=50.0)  # same target_id, different hardware
    assert other.target_id == AnalyticTarget().target_id
    report = run_sweep(layers, other, store=store, progress=False)
    assert report.measured == 2
    assert len(store.frame(target_id=other.target_id)) == 4


# -- noisy targets ---------------------------------------------------------------------------
def test_noisy_statistics(store: MeasurementStore) -> None:
    target = NoisyFakeTarget()
    layers = convs(4, 20, 40)
    frame = measure_layers(layers, target, store=store, settings=FIXED_CALLS, progress=False)
    true = [target.true_latency(x) for x in layers]
    assert list(frame["latency_us"]) == pytest.approx(true)
    assert list(frame["median_us"]) == pytest.approx(true)
    assert list(frame["wall_median_us"]) == pytest.approx([t + 3.0 for t in true])
    assert list(frame["reorder_median_us"]) == pytest.approx([1.0] * 3)
    # no noise: converged after min_rounds, warm-up calls excluded
    assert list(frame["rounds"]) == [3, 3, 3]
    assert list(frame["n"]) == [30, 30, 30]
    info = extra(frame)
    assert all(e["fake"] == 1.0 and e["calls_per_round"] == 10 for e in info)
    assert all(e["rel_ci"] == 0.0 and e["disturbed_rounds"] == 0 for e in info)


def test_noise_needs_more_rounds_and_stops_at_max(store: MeasurementStore) -> None:
    settings = MeasureSettings(
        calls_per_round=5, warmup_calls=1, min_rounds=2, max_rounds=6, target_rel_ci=1e-6
    )
    target = NoisyFakeTarget(noise=0.05)
    frame = measure_layers(convs(8, 24), target, store=store, settings=settings, progress=False)
    assert list(frame["rounds"]) == [6, 6]
    assert list(frame["n"]) == [30, 30]
    assert all((frame["latency_us"] >= frame["min_us"]) & (frame["latency_us"] <= frame["p90_us"]))


class FakeClock:
    """The runner's clock, advanced only by the fake target's sleeps: timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("batch_ms", "calls"),
    [
        (5.2, 11),  # 5.2 ms / 0.5 ms a call = 10.4, rounded up
        (50.0, 12),  # 100 calls wanted, capped at max_calls
        (0.7, 3),  # 2 calls wanted, raised to min_calls
    ],
)
def test_batch_is_sized_to_batch_ms(
    store: MeasurementStore, monkeypatch: pytest.MonkeyPatch, batch_ms: float, calls: int
) -> None:
    # each run() sleeps 1 ms on the fake clock: 2 warm-up calls take 0.5 ms a call
    clock = FakeClock()
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(_protocol, "time", clock)
    monkeypatch.setattr(fake_targets, "time", clock)
    target = NoisyFakeTarget(delay_ms=1.0)
    settings = MeasureSettings(warmup_calls=2, batch_ms=batch_ms, min_calls=3, max_calls=12)
    frame = measure_layers(convs(8), target, store=store, settings=settings, progress=False)
    assert extra(frame)[0]["calls_per_round"] == calls
    assert frame["n"][0] == calls * frame["rounds"][0]


def test_canary_discards_disturbed_rounds(store: MeasurementStore) -> None:
    # Calls 0-7 are warm-ups (2 per layer, 2 for the canary), then rounds of 4 x 10 calls:
    # calls 48..87, the whole second round, run 1.5x slower: a neighbour's burst.
    window = (48, 88)
    disturbed = NoisyFakeTarget(disturb_window=window)
    layers = convs(4, 20, 40)
    frame = measure_layers(layers, disturbed, store=store, settings=FIXED_CALLS, progress=False)
    true = [disturbed.true_latency(x) for x in layers]
    assert CANARY_LAYER in disturbed.prepared
    info = extra(frame)
    assert sum(e["disturbed_rounds"] for e in info) > 0
    # the slow samples were thrown away, not just outvoted
    assert list(frame["mean_us"]) == pytest.approx(true)
    assert list(frame["rounds"]) == [3, 3, 3]
    assert [e["disturbed_rounds"] for e in info] == [1, 1, 1]
    assert [e["canary_ratio"] for e in info] == pytest.approx([1.0, 1.0, 1.0])
    # the canary's own wall time, comparable across sweeps: its latency plus the fake's overhead
    canary_wall = disturbed.true_latency(CANARY_LAYER) + WALL_OVERHEAD_US + REORDER_US
    assert [e["canary_us"] for e in info] == pytest.approx([canary_wall] * 3)


def test_without_canary_disturbance_leaks_into_the_statistics(tmp_path: Path) -> None:
    settings = MeasureSettings(calls_per_round=10, warmup_calls=2, chunk_size=4, canary=False)
    # 6 warm-up calls, then rounds of 3 x 10 calls: the second round (36..65) is slow
    target = NoisyFakeTarget(disturb_window=(36, 66))
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        frame = measure_layers(convs(4, 20, 40), target, store=store, settings=settings)
    true = np.array([target.true_latency(x) for x in convs(4, 20, 40)])
    assert CANARY_LAYER not in target.prepared
    assert np.all(frame["mean_us"].to_numpy() > true * 1.05)
    # the minimum of round medians shrugs it off even so
    assert list(frame["latency_us"]) == pytest.approx(true)


def test_persistent_slowdown_is_accepted_after_retries(store: MeasurementStore) -> None:
    # The machine becomes slower for good: after max_disturbed_retries it is the new normal.
    target = NoisyFakeTarget(disturb_window=(60, 10**9))
    settings = MeasureSettings(calls_per_round=10, warmup_calls=2, max_disturbed_retries=2)
    report = run_sweep(convs(8, 24), target, store=store, settings=settings, progress=False)
    assert report.measured == 2 and report.disturbed_rounds >= 2
    frame = store.frame()
    assert all(frame["rounds"] >= 3)
    # the slower state is flagged on the points: the canary ran 1.5x its best
    # (wall time = 1.5 x kernel + a constant 3 µs, hence not exactly 1.5)
    assert [e["canary_ratio"] for e in extra(frame)] == pytest.approx([1.5, 1.5], rel=0.01)


def test_failures_are_recorded_and_the_sweep_goes_on(store: MeasurementStore) -> None:
    target = NoisyFakeTarget(
        fail_prepare=frozenset({2}), fail_run=frozenset({3}), unsupported_out=frozenset({4})
    )
    layers = convs(1, 2, 3, 4, 5, 6)
    report = run_sweep(layers, target, store=store, settings=FIXED_CALLS, progress=False)
    assert (report.measured, report.failed) == (3, 3)
    frame = store.frame(include_errors=True)
    errors = dict(zip(frame["out_channels"], frame["error"], strict=True))
    assert "refuses to build" in errors[2]
    assert errors[3].startswith("RuntimeError: ") and "crashed while running" in errors[3]
    assert "not supported" in errors[4]
    assert pd.isna(errors[1]) and pd.isna(errors[6])
    # every prepared benchmark (canary included) was closed
    assert target.closed == len(target.prepared)
    # failed layers count as stored: a rerun does not retry them
    assert run_sweep(layers, target, store=store, progress=False).skipped == 6


def test_deterministic_failure_is_recorded(store: MeasurementStore) -> None:
    target = NoisyFakeTarget(fail_run=frozenset({2}), deterministic=True)
    report = run_sweep(convs(1, 2), target, store=store, progress=False)
    assert (report.measured, report.failed) == (1, 1)


class _ShortTimings(NoisyFakeTarget):
    def prepare(self, layer: LayerConfig):  # type: ignore[no-untyped-def]
        bench = super().prepare(layer)
        finish = bench.finish

        def short() -> Timings:
            t = finish()
            return Timings(kernel_us=t.kernel_us[:-1], wall_us=t.wall_us[:-1])

        bench.finish = short  # type: ignore[method-assign]
        return bench


def test_wrong_number_of_timings_is_an_error(store: MeasurementStore) -> None:
    report = run_sweep(convs(1), _ShortTimings(), store=store, settings=FIXED_CALLS, progress=False)
    assert report.failed == 1
    error = store.frame(include_errors=True).loc[0, "error"]
    assert "kernel timings for the" in error


def test_interrupt_keeps_committed_points(tmp_path: Path) -> None:
    class Interrupting(SlowTarget):
        def prepare(self, layer: LayerConfig):  # type: ignore[no-untyped-def]
            if layer.out_channels == 6:
                raise KeyboardInterrupt
            return super().prepare(layer)

    layers = convs(*range(1, 11))
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(layers, Interrupting(delay_ms=0), store=store, progress=False)
        assert len(store.frame()) == 5
        report = run_sweep(layers, SlowTarget(delay_ms=0), store=store, progress=False)
    assert (report.skipped, report.measured) == (5, 5)


def test_progress_bar_runs(store: MeasurementStore, capsys: pytest.CaptureFixture[str]) -> None:
    run_sweep(convs(1, 2, 3), NoisyFakeTarget(), store=store, settings=FIXED_CALLS)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], float("inf")),
        ([5.0] * 10, 0.0),
        ([0.0, 0.0], float("inf")),
        ([9.0, 10.0, 10.0, 11.0], 1.57 * 0.5 / 2 / 10),
    ],
)
def test_relative_ci(samples: list[float], expected: float) -> None:
    assert relative_ci(samples) == pytest.approx(expected)
