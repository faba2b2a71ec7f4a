from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from fake_targets import NoisyFakeTarget
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.layers import LayerConfig
from prmodel.measure.recheck import (
    MAX_LATENCY_US,
    MIN_LATENCY_US,
    RecheckError,
    recheck_store,
    remeasure_stretches,
    stretch_of,
)
from prmodel.measure.runner import MeasureSettings, run_sweep
from prmodel.measure.store import MeasurementStore
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import fingerprint_hash
from prmodel.workspace import Workspace

STRETCHES = ("2026-11-20T10:00", "2026-11-20T10:30", "2026-11-20T11:00")
SLOW = STRETCHES[1]
"""The stretch whose points the tests store as if measured on a 20 % slower machine."""


def layers() -> list[LayerConfig]:
    convs = [
        LayerConfig.create(
            "conv", channels=c, height=28, width=28, out_channels=o, kernel=3, padding=1
        )
        for c in (16, 32, 64)
        for o in (16, 32, 48, 64)
    ]
    pools = [
        LayerConfig.create("maxpool", channels=c, height=h, width=h, kernel=2, stride=2)
        for c in (32, 64, 128)
        for h in (28, 56)
    ]
    return convs + pools


def store_with_slow_stretch(
    path: Path, target: AnalyticTarget, slow_factor: float | Sequence[float] = 1.2
) -> None:
    """Every layer measured exactly, then dated in turn into the three stretches; the
    points of :data:`SLOW` stored ``slow_factor`` times too slow (a sequence: in turn)."""
    factors = [slow_factor] if isinstance(slow_factor, float) else list(slow_factor)
    with MeasurementStore(path) as store:
        run_sweep(layers(), target, store=store, progress=False)
        digest = fingerprint_hash(target.fingerprint())
        frame = store.frame(target_id=target.target_id)
        for i, key in enumerate(frame["layer_key"]):
            point = store.get(target.target_id, digest, key)
            assert point is not None and point.latency_us is not None
            stretch = STRETCHES[i % len(STRETCHES)]
            factor = factors[i // len(STRETCHES) % len(factors)] if stretch == SLOW else 1.0
            store.record(
                replace(
                    point,
                    latency_us=point.latency_us * factor,
                    measured_at=f"{stretch[:-1]}7:12+00:00",  # 7 min 12 s into it
                )
            )


@pytest.fixture
def slow_store(tmp_path: Path, analytic_target: AnalyticTarget) -> Path:
    path = tmp_path / "m.sqlite"
    store_with_slow_stretch(path, analytic_target)
    return path


def test_stretches_floor_the_measuring_time() -> None:
    times = pd.Series(["2026-11-20T10:29:59+00:00", "2026-11-20T10:30:00+00:00"])
    assert stretch_of(times, 30).tolist() == ["2026-11-20T10:00", "2026-11-20T10:30"]
    assert stretch_of(times, 60).tolist() == ["2026-11-20T10:00", "2026-11-20T10:00"]
    with pytest.raises(RecheckError, match="at least 1 minute"):
        stretch_of(times, 0)


def test_the_slow_stretch_is_found_and_the_others_are_not(
    slow_store: Path, analytic_target: AnalyticTarget
) -> None:
    with MeasurementStore(slow_store) as store:
        report = recheck_store(store, analytic_target, sample=60, progress=False)
    assert [s.start for s in report.stretches] == list(STRETCHES)
    assert report.flagged == [SLOW]
    slowdown = {s.start: s.slowdown for s in report.stretches}
    assert slowdown[SLOW] == pytest.approx(1.2)
    assert slowdown[STRETCHES[0]] == pytest.approx(1.0)
    # every point timed within the sampled range is checked, none failed
    in_range = report.layers["stored_us"].between(MIN_LATENCY_US, MAX_LATENCY_US)
    assert report.checked == sum(s.checked for s in report.stretches) and in_range.all()
    assert 12 <= report.checked < len(layers()) and report.failed == 0
    assert {k.kind for k in report.by_kind} == {"conv", "maxpool"}
    # now / stored: 1 for the good points, 1/1.2 for the slow ones
    assert set(report.layers["ratio"].round(6)) == {1.0, round(1 / 1.2, 6)}
    assert json.loads(json.dumps(report.as_dict()))["flagged"] == [SLOW]


def test_a_sample_smaller_than_the_store_still_covers_every_stretch(
    slow_store: Path, analytic_target: AnalyticTarget
) -> None:
    with MeasurementStore(slow_store) as store:
        report = recheck_store(store, analytic_target, sample=3, progress=False)
    assert [s.checked for s in report.stretches] == [3, 3, 3]
    assert report.flagged == [SLOW]


def test_a_small_drift_stays_within_the_tolerance(
    tmp_path: Path, analytic_target: AnalyticTarget
) -> None:
    path = tmp_path / "m.sqlite"
    store_with_slow_stretch(path, analytic_target, slow_factor=1.03)
    with MeasurementStore(path) as store:
        assert recheck_store(store, analytic_target, progress=False).flagged == []
        report = recheck_store(store, analytic_target, tolerance=0.02, progress=False)
    assert report.flagged == [SLOW]


def test_a_stretch_too_scattered_to_judge_is_not_flagged(
    tmp_path: Path, analytic_target: AnalyticTarget
) -> None:
    path = tmp_path / "m.sqlite"
    store_with_slow_stretch(path, analytic_target, slow_factor=(1.0, 1.12, 1.25, 1.4, 0.95, 1.08))
    with MeasurementStore(path) as store:
        report = recheck_store(store, analytic_target, progress=False)
    slow = next(s for s in report.stretches if s.start == SLOW)
    assert slow.slowdown is not None and slow.spread is not None
    assert slow.slowdown - 1 > 0.05 and slow.spread > slow.slowdown - 1
    assert report.flagged == []


def test_remeasuring_the_flagged_stretch_replaces_its_points(
    slow_store: Path, analytic_target: AnalyticTarget
) -> None:
    with MeasurementStore(slow_store) as store:
        before = store.frame(target_id=analytic_target.target_id).set_index("layer_key")
        fixed = remeasure_stretches(store, analytic_target, [SLOW], progress=False)
        after = store.frame(target_id=analytic_target.target_id).set_index("layer_key")
        again = recheck_store(store, analytic_target, progress=False)
    slow = stretch_of(before["measured_at"], 30) == SLOW
    assert fixed.measured == slow.sum() and fixed.skipped == 0
    truth = {x.key: analytic_target.latency_us(x) for x in layers()}
    for key in before.index[slow]:
        assert after.loc[key, "latency_us"] == pytest.approx(truth[key])
        assert after.loc[key, "measured_at"] != before.loc[key, "measured_at"]
    untouched = before.index[~slow]
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])
    assert again.flagged == []


def test_a_layer_that_fails_when_measured_again_keeps_its_point(tmp_path: Path) -> None:
    settings = MeasureSettings(calls_per_round=5, warmup_calls=1, canary=False)
    good = [
        LayerConfig.create("conv", channels=8, height=8, width=8, out_channels=o, kernel=3)
        for o in (8, 16)
    ]
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        run_sweep(good, NoisyFakeTarget(), store=store, settings=settings, progress=False)
        broken = NoisyFakeTarget(fail_prepare=frozenset({16}))
        report = run_sweep(
            good, broken, store=store, settings=settings, progress=False, remeasure=True
        )
        frame = store.frame(target_id="noisy-fake", include_errors=True)
    assert (report.measured, report.failed, report.skipped) == (1, 1, 0)
    assert set(frame["status"]) == {"ok"} and len(frame) == 2


def test_bad_requests_name_what_is_wrong(
    slow_store: Path, tmp_path: Path, analytic_target: AnalyticTarget
) -> None:
    with MeasurementStore(slow_store) as store:
        with pytest.raises(RecheckError, match="at least 1 point"):
            recheck_store(store, analytic_target, sample=0, progress=False)
        with pytest.raises(RecheckError, match="tolerance must be between 0 and 1"):
            recheck_store(store, analytic_target, tolerance=1.5, progress=False)
        with pytest.raises(RecheckError, match="stretch starting 2026-11-20T12:00"):
            remeasure_stretches(store, analytic_target, ["2026-11-20T12:00"], progress=False)
        elsewhere = AnalyticTarget(gmacs=50.0)  # same target id, another machine
        with pytest.raises(RecheckError, match="no measurement of analytic-b16-l8 from this"):
            recheck_store(store, elsewhere, progress=False)


def test_cli_recheck_says_when_there_is_one_stretch_only(
    tmp_path: Path, analytic_target: AnalyticTarget
) -> None:
    ws = Workspace.at(tmp_path / "ws").create()
    with MeasurementStore(ws.store_path) as store:
        run_sweep(layers(), analytic_target, store=store, progress=False)
        for row in store.frame(target_id=analytic_target.target_id).itertuples():
            point = store.get(row.target_id, row.fingerprint_hash, row.layer_key)
            assert point is not None  # dated inside one stretch, whatever the clock says
            store.record(replace(point, measured_at="2026-11-20T10:07:12+00:00"))
    result = CliRunner().invoke(app, ["recheck", "-w", str(ws.root), "-t", "analytic"])
    assert result.exit_code == 0, result.output
    assert "no stretch can be judged against another" in " ".join(result.output.split())


def test_cli_recheck_reports_then_fixes(tmp_path: Path, analytic_target: AnalyticTarget) -> None:
    ws = Workspace.at(tmp_path / "ws").create()
    store_with_slow_stretch(ws.store_path, analytic_target)
    runner = CliRunner()
    args = ["recheck", "-w", str(ws.root), "-t", "analytic"]
    shown = runner.invoke(app, args, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # the console wraps at 80 columns
    assert "flagged stretches: 2026-11-20T10:30" in text
    assert "run again with --fix" in text
    fixed = runner.invoke(app, [*args, "--fix", "--json"], catch_exceptions=False)
    assert fixed.exit_code == 0, fixed.output
    data = json.loads(fixed.output)
    assert data["flagged"] == [SLOW]
    assert data["remeasured"]["measured"] == len(layers()) // 3
    clean = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert clean["flagged"] == []
