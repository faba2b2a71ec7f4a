"""Tests of prmodel.estimate.calibration and prmodel.workflows.calibrate: fits, files, wiring."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from estimate_fixtures import QUICK, analytic_models

from prmodel.estimate.calibration import (
    FULL_FORM,
    FULL_FORM_MIN_NETWORKS,
    BandwidthFit,
    Calibration,
    CalibrationError,
    CalibrationSample,
    calibration_path,
    fit_calibration,
    fit_unmodelled,
    in_network_us,
    load_calibration,
)
from prmodel.estimate.estimator import Estimator
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.workflows.calibrate import calibrate
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg

# -- a calibration applied by the estimator --------------------------------------------------------


def test_calibration_corrects_the_total(analytic_target: AnalyticTarget) -> None:
    calibration = Calibration(
        target_id=analytic_target.target_id,
        scale=1.1,
        us_per_weight_mb=100.0,
        offset_us=5.0,
        weight_cap_bytes=10_000,
        terms=("scale", "weights", "offset"),
    )
    estimator = Estimator(analytic_target, analytic_models(), calibration=calibration)
    estimate = estimator.predict(tiny_resnet())
    layers = estimate.layers[estimate.layers["status"] != "free"]
    hot = layers["weight_bytes"].where(layers["weight_bytes"] <= 10_000, 0).sum() / 1e6
    assert estimate.total_us == pytest.approx(1.1 * estimate.sum_us + 100 * hot + 5)
    assert estimate.layers["calibrated_us"].sum() + 5 == pytest.approx(estimate.total_us)
    assert estimate.calibrated and "1.100 x sum" in estimate.total_note


def test_calibration_bandwidth_fit_prices_unmodelled_ops(analytic_target: AnalyticTarget) -> None:
    calibration = Calibration(
        target_id="analytic-b16-l8",
        unmodelled=(BandwidthFit("Softmax", 1.5, 2.0, samples=4, mape=1.0),),
    )
    estimate = Estimator(analytic_target, analytic_models(), calibration=calibration).predict(
        tiny_vgg()
    )
    softmax = estimate.layers[estimate.layers["op"] == "Softmax"].iloc[0]
    assert softmax["source"] == "bandwidth fit"
    assert softmax["predicted_us"] == pytest.approx(1.5 + 2.0 * 80 / 1e6)


# -- fitting ---------------------------------------------------------------------------------------


def _sample(name: str, sum_us: float, weights: float, measured: float) -> CalibrationSample:
    kernels = pd.DataFrame(
        {
            "op": ["Conv", "Conv", "Flatten"],
            "status": ["modelled", "modelled", "free"],
            "predicted_us": [sum_us / 2, sum_us / 2, 0.0],
            "bytes_moved": [1000, 1000, 10],
            "weight_bytes": [weights / 2, weights / 2, 0],
        }
    )
    return CalibrationSample(name, measured, kernels)


def test_fit_recovers_a_scale_and_keeps_useless_terms_out() -> None:
    samples = [_sample(f"n{i}", s, s * 10, 1.08 * s) for i, s in enumerate([100, 250, 900, 4000])]
    calibration = fit_calibration(samples, target_id="t", weight_cap_bytes=10**9)
    assert calibration.terms == ("scale",)
    assert calibration.scale == pytest.approx(1.08)
    assert calibration.loo_mape == pytest.approx(0, abs=1e-6)
    assert all(abs(n.error_pct) < 1e-6 for n in calibration.networks)
    assert all(n.sum_error_pct == pytest.approx(-100 * 0.08 / 1.08) for n in calibration.networks)


def test_fit_uses_the_weight_term_where_weights_explain_the_gap() -> None:
    # measured = sum + 50 us per MB of cacheable weights; weight sizes vary independently
    cases = [(1000, 2e6), (1000, 20e6), (5000, 1e6), (3000, 12e6), (800, 30e6)]
    samples = [_sample(f"n{i}", s, w, s + 50 * w / 1e6) for i, (s, w) in enumerate(cases)]
    calibration = fit_calibration(samples, target_id="t", weight_cap_bytes=10**9)
    assert "weights" in calibration.terms
    assert calibration.us_per_weight_mb == pytest.approx(50, rel=1e-3)
    assert calibration.loo_mape is not None and calibration.loo_mape < 0.1


def _many_kernels(name: str, count: int, each_us: float, measured: float) -> CalibrationSample:
    kernels = pd.DataFrame(
        {
            "op": ["Conv"] * count + ["Flatten"],
            "status": ["modelled"] * count + ["free"],
            "predicted_us": [each_us] * count + [0.0],
            "bytes_moved": [1000] * (count + 1),
            "weight_bytes": [0] * (count + 1),
        }
    )
    return CalibrationSample(name, measured, kernels)


def test_fit_finds_a_negative_per_kernel_term() -> None:
    # measured = 1.1 x sum - 3 us per running kernel (the free Flatten does not count)
    cases = [(10, 50.0), (200, 8.0), (40, 120.0), (120, 15.0), (60, 30.0)]
    samples = [
        _many_kernels(f"n{i}", n, us, 1.1 * n * us - 3 * n) for i, (n, us) in enumerate(cases)
    ]
    calibration = fit_calibration(samples, target_id="t")
    assert "kernels" in calibration.terms
    assert calibration.us_per_kernel == pytest.approx(-3.0, rel=1e-3)
    assert calibration.scale == pytest.approx(1.1, rel=1e-3)
    assert "- 3.00 us per kernel" in calibration.formula
    assert all(abs(n.error_pct) < 1e-3 for n in calibration.networks)


def _modelled_convs(predicted: list[float], weights: list[int] | None = None) -> pd.DataFrame:
    """An estimate table of modelled conv kernels with these predictions and weights."""
    return pd.DataFrame(
        {
            "op": ["Conv"] * len(predicted),
            "status": ["modelled"] * len(predicted),
            "predicted_us": predicted,
            "bytes_moved": [1000] * len(predicted),
            "weight_bytes": weights if weights is not None else [0] * len(predicted),
        }
    )


def _short_and_long(name: str, short: int, long: int) -> CalibrationSample:
    """50 us and 3 ms kernels; each runs 1.0 x its time + 0.2 x its first 1000 us."""
    predicted = [50.0] * short + [3000.0] * long
    measured = sum(p + 0.2 * min(p, 1000.0) for p in predicted)
    return CalibrationSample(name, measured, _modelled_convs(predicted))


MIXED_WEIGHTS = {20.0: 200_000, 400.0: 1_000_000, 2000.0: 4_000_000, 5000.0: 500_000}
"""Weight bytes of each kernel size of :func:`_mixed` (the 2 ms one beyond a 2 MiB L2)."""


def _mixed(name: str, counts: tuple[int, int, int, int]) -> CalibrationSample:
    """20 us, 400 us, 2 ms and 5 ms kernels; the network runs 1.05 x the sum, plus 0.15 x
    each kernel's first 1000 us, plus 40 us per MB of each kernel's weights up to 2 MiB,
    less 300 us."""
    predicted = [size for size, n in zip(MIXED_WEIGHTS, counts, strict=True) for _ in range(n)]
    weights = [MIXED_WEIGHTS[p] for p in predicted]
    measured = sum(
        1.05 * p + 0.15 * min(p, 1000.0) + 40 * min(w, 2**21) / 1e6
        for p, w in zip(predicted, weights, strict=True)
    )
    return CalibrationSample(name, measured - 300.0, _modelled_convs(predicted, weights))


def test_from_eight_networks_the_fit_uses_the_full_form() -> None:
    mixes = [(100, 2, 1, 0), (5, 20, 0, 3), (60, 0, 4, 8), (10, 40, 2, 1), (200, 10, 0, 2),
             (0, 5, 6, 12), (30, 30, 3, 30), (80, 1, 9, 5), (15, 60, 1, 0)]  # fmt: skip
    samples = [_mixed(f"n{i}", mix) for i, mix in enumerate(mixes)]
    assert len(samples) >= FULL_FORM_MIN_NETWORKS
    calibration = fit_calibration(samples, target_id="t")
    assert calibration.terms == FULL_FORM
    assert calibration.us_cap == 1000.0
    assert calibration.scale == pytest.approx(1.05, rel=1e-4)
    assert calibration.capped_scale == pytest.approx(0.15, rel=1e-3)
    assert calibration.offset_us == pytest.approx(-300.0, rel=1e-3)
    assert calibration.us_per_cached_mb == pytest.approx(40.0, rel=1e-3)
    assert "40.0 us/MB of each kernel's weights up to 2 MiB" in calibration.formula
    # with fewer networks the same data gets a term set chosen by leave-one-out error
    assert fit_calibration(samples[:5], target_id="t").terms != FULL_FORM
    # a network smaller than every calibration network gets the offset in proportion to its
    # size (continuous at the smallest one, never a negative total), and is told so
    smallest = calibration.smallest_sum_us
    assert smallest is not None and smallest > 100
    full = calibration.kernel_us([20.0] * 5, [0] * 5).sum()
    assert calibration.total_us([20.0] * 5, [0] * 5) == pytest.approx(full - 300 * 100 / smallest)
    assert calibration.beyond_networks(100.0) is not None
    assert "scaled down" in str(calibration.beyond_networks(100.0))
    assert calibration.beyond_networks(smallest) is None
    at_edge = [smallest / 4] * 4
    assert calibration.total_us(at_edge, [0] * 4) == pytest.approx(
        calibration.kernel_us(at_edge, [0] * 4).sum() - 300
    )
    assert smallest < 6000  # a network among the calibration networks' sizes: the full form
    assert calibration.total_us([400.0] * 15, [0] * 15) == pytest.approx(6300 + 900 - 300)


def test_fit_finds_the_capped_term_and_its_cap() -> None:
    mixes = [(40, 1), (10, 5), (100, 0), (0, 8), (30, 3)]
    samples = [_short_and_long(f"n{i}", a, b) for i, (a, b) in enumerate(mixes)]
    calibration = fit_calibration(samples, target_id="t")
    assert calibration.terms == ("scale", "capped")
    assert calibration.us_cap == 1000.0
    assert calibration.scale == pytest.approx(1.0, rel=1e-6)
    assert calibration.capped_scale == pytest.approx(0.2, rel=1e-6)
    assert "0.200 x min(kernel, 1000 us)" in calibration.formula
    assert calibration.loo_mape is not None and calibration.loo_mape < 1e-6
    # a kernel's calibrated time: 50 us -> 60, 3 ms -> 3.2 ms
    assert calibration.kernel_us([50.0, 3000.0], [0, 0]).tolist() == pytest.approx([60, 3200])


def test_a_network_whose_sum_is_far_off_is_left_out_of_the_fit() -> None:
    samples = [_sample(f"n{i}", s, 0, 1.1 * s) for i, s in enumerate([100, 300, 900, 2000])]
    samples.append(_sample("extrapolated", 12_000, 0, 1000))  # models 12x off
    calibration = fit_calibration(samples, target_id="t")
    assert calibration.excluded == ("extrapolated",)
    assert calibration.scale == pytest.approx(1.1)
    assert calibration.networks[-1].loo_us is None


def test_no_network_within_reach_is_an_error() -> None:
    samples = [_sample("a", 5000, 0, 1000), _sample("b", 100, 0, 1000)]
    with pytest.raises(
        CalibrationError, match=r"\(a 5.00x, b 0.10x\): the layer models need fixing"
    ):
        fit_calibration(samples, target_id="t")


def test_calibrated_kernel_times_never_go_below_zero() -> None:
    calibration = Calibration(target_id="t", scale=1.0, us_per_kernel=-3.0, terms=("scale",))
    assert calibration.kernel_us([1.0, 10.0], [0, 0]).tolist() == [0.0, 7.0]


def test_weights_above_the_cache_cap_are_not_hot() -> None:
    calibration = Calibration(target_id="t", us_per_weight_mb=10.0, weight_cap_bytes=1000)
    assert calibration.hot_weight_bytes([500, 1000, 1001]).tolist() == [500, 1000, 0]


def test_fit_unmodelled_bandwidth_per_op() -> None:
    moved = np.array([1e5, 2e5, 4e5, 8e5])
    kernels = pd.DataFrame(
        {
            "op": ["Concat"] * 4,
            "status": ["unmodelled"] * 4,
            "predicted_us": [0.0] * 4,
            "bytes_moved": moved,
            "weight_bytes": [0] * 4,
            "measured_us": 2.0 + 0.05 * moved / 1e3,  # 2 us + 20 GB/s
        }
    )
    calibration = fit_calibration([CalibrationSample("n", 100.0, kernels)], target_id="t")
    fit = calibration.unmodelled_fit("Concat")
    assert fit is not None and fit.op == "Concat"
    assert fit.fixed_us == pytest.approx(2.0)
    assert fit.gbps == pytest.approx(20.0)
    assert calibration.unmodelled_fit("Softmax") is calibration.unmodelled[-1]  # the '*' fit


def _profiled(measured_total: float, profiled: list[float], status: list[str]) -> CalibrationSample:
    """Concat kernels moving 0.1, 0.2, 0.3, ... MB with the given profiled times."""
    kernels = pd.DataFrame(
        {
            "op": ["Concat"] * len(profiled),
            "status": status,
            "predicted_us": 0.0,
            "bytes_moved": [1e5 * (i + 1) for i in range(len(profiled))],
            "weight_bytes": 0,
            "measured_us": profiled,
        }
    )
    return CalibrationSample("n", measured_total, kernels)


def test_in_network_times_lose_the_profilers_cost_per_kernel() -> None:
    # profiled 20 + 100 + 30 = 150 us over 3 timed kernels, the plain run took 120 us
    sample = _profiled(120.0, [20.0, 100.0, 30.0, 7.0, np.nan], ["unmodelled"] * 3 + ["free"] * 2)
    times = in_network_us(sample)
    assert times[:3].tolist() == pytest.approx([10.0, 90.0, 20.0])
    assert np.isnan(times[3:]).all()  # free and unprofiled kernels have no time


def test_in_network_times_keep_a_floor_and_need_an_excess() -> None:
    tiny = in_network_us(_profiled(100.0, [2.0, 118.0], ["unmodelled"] * 2))
    assert tiny.tolist() == pytest.approx([0.2, 108.0])  # 2 - 10 would be negative
    faster = in_network_us(_profiled(500.0, [2.0, 118.0], ["unmodelled"] * 2))
    assert faster.tolist() == [2.0, 118.0]  # nothing to take off


def test_unmodelled_fits_use_in_network_times() -> None:
    # each of 4 kernels profiled 5 us above 1 us + 10 us/MB; the plain run shows the excess
    moved = [1e5, 2e5, 3e5, 4e5]  # what _profiled gives 4 kernels
    profiled = [1.0 + 10 * m / 1e6 + 5.0 for m in moved]
    sample = _profiled(sum(profiled) - 20.0, profiled, ["unmodelled"] * 4)
    (fit, _) = fit_unmodelled([sample])
    assert fit.fixed_us == pytest.approx(1.0)
    assert fit.us_per_mb == pytest.approx(10.0)


def test_fit_refuses_nothing_to_fit() -> None:
    with pytest.raises(CalibrationError, match="at least one"):
        fit_calibration([], target_id="t")


# -- the file --------------------------------------------------------------------------------------


def test_calibration_round_trips_through_json(workspace: Workspace) -> None:
    samples = [_sample(f"n{i}", s, s * 10, 1.05 * s + 3) for i, s in enumerate([100, 300, 900])]
    calibration = fit_calibration(samples, target_id="t", weight_cap_bytes=123456)
    calibration = replace(calibration, capped_scale=0.1, us_cap=500.0, terms=("scale", "capped"))
    path = calibration.save(calibration_path(workspace, "t"))
    assert path == workspace.models_dir / "t" / "calibration.json"
    loaded = load_calibration(workspace, "t")
    assert loaded == calibration
    assert json.loads(path.read_text())["formula"] == calibration.formula
    # a file written before the cached-weights term loads without it
    old = json.loads(path.read_text())
    del old["us_per_cached_mb"], old["core_cache_bytes"]
    path.write_text(json.dumps(old))
    assert load_calibration(workspace, "t") == calibration


def test_load_calibration_refuses_another_target(workspace: Workspace) -> None:
    Calibration(target_id="other").save(calibration_path(workspace, "t"))
    with pytest.raises(CalibrationError, match="is for target other, not t"):
        load_calibration(workspace, "t")
    assert load_calibration(workspace, "missing") is None


@pytest.mark.parametrize("content", ["{", '{"target_id": "t"}'])
def test_load_calibration_refuses_a_malformed_file(workspace: Workspace, content: str) -> None:
    path = calibration_path(workspace, "t")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(CalibrationError, match="unreadable"):
        load_calibration(workspace, "t")


# -- measuring networks and fitting (on the real CPU; assertions do not depend on timing) ----------


def test_calibrate_measures_fits_and_saves(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # analytic_models() learned the analytic target: their sums may be far off the real CPU, and the
    # 3x rule (tested above) would leave every network out. This test is about the wiring.
    monkeypatch.setattr("prmodel.estimate.calibration.MAX_SUM_RATIO", 1e9)
    target = OnnxRuntimeTarget()
    seen: list[str] = []
    calibration = calibrate(
        [tiny_resnet(), tiny_mobilenet(), tiny_vgg()],
        target,
        analytic_models(),
        workspace=workspace,
        settings=QUICK,
        on_network=lambda c: seen.append(c.estimate.network),
    )
    assert seen == ["tiny_resnet", "tiny_mobilenet", "tiny_vgg"]
    assert [n.name for n in calibration.networks] == seen
    assert calibration.target_id == target.target_id
    assert calibration.scale > 0
    assert calibration.unmodelled_fit("ReorderOutput") is not None
    assert load_calibration(workspace, target.target_id) == calibration
