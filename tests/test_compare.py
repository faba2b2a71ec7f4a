"""Tests of whole-network runs (prmodel.workflows.calibrate.measure_network(s), the ONNX Runtime
runner) and their comparison with estimates (prmodel.estimate.compare).

They measure on the real CPU; the assertions do not depend on timing precision."""

from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from estimate_fixtures import QUICK, analytic_models, off_block_width
from onnx import TensorProto, helper

from prmodel.estimate.compare import compare
from prmodel.estimate.estimator import EstimateError, Estimator
from prmodel.networks import NetworkMeasurement, NetworkMeasureSettings, median_uncertainty_pct
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.networks import _still_measuring
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.workflows.calibrate import measure_network, measure_networks
from prmodel.workflows.network_profiles import protocol, protocol_hash
from prmodel.zoo import tiny_mobilenet, tiny_resnet


def test_measure_network_profiles_every_kernel() -> None:
    target = OnnxRuntimeTarget()
    measurement = measure_network(tiny_resnet(), target, settings=QUICK)
    assert measurement.total_us > 0
    assert measurement.total_us == statistics.median(measurement.round_medians_us)
    assert measurement.runs == QUICK.rounds * QUICK.runs
    assert measurement.p10_us <= measurement.median_us <= measurement.p90_us
    kernels = measurement.kernels
    assert (kernels["measured_us"] > 0).all()
    estimate = Estimator(target, analytic_models()).predict(tiny_resnet())
    comparison = compare(estimate, measurement)
    assert comparison.unmatched == ()
    assert comparison.layers["measured_us"].notna().all()
    assert len(comparison.layer_errors()) == int((estimate.layers["status"] == "modelled").sum())
    assert np.isfinite(comparison.total_error_pct)


def test_measure_networks_interleaves_rounds_and_keeps_each_networks_profile() -> None:
    target = OnnxRuntimeTarget()
    rounds_done: list[int] = []
    resnet, mobilenet = measure_networks(
        [tiny_resnet(), tiny_mobilenet()], target, settings=QUICK, on_round=rounds_done.append
    )
    assert rounds_done == list(range(1, QUICK.rounds + 1))
    for measurement, model in ((resnet, tiny_resnet()), (mobilenet, tiny_mobilenet())):
        assert measurement.network == model.graph.name
        assert len(measurement.round_medians_us) == QUICK.rounds
        assert measurement.total_us == statistics.median(measurement.round_medians_us)
        # Each network gets its own profile: every one of its kernels is matched.
        comparison = compare(Estimator(target, analytic_models()).predict(model), measurement)
        assert comparison.unmatched == ()
        assert comparison.layers["measured_us"].notna().all()


def test_compare_pairs_unnamed_ort_nodes_by_op_order() -> None:
    # At opt=extended ORT inlines HardSwish into nameless HardSigmoid + Mul nodes.
    target = OnnxRuntimeTarget(opt_level="extended")
    estimate = Estimator(target, analytic_models()).predict(tiny_mobilenet())
    assert "HardSigmoid" in set(estimate.layers["op"])
    measurement = measure_network(tiny_mobilenet(), target, settings=QUICK)
    comparison = compare(estimate, measurement)
    assert comparison.unmatched == ()
    assert comparison.layers["measured_us"].notna().all()


def test_measure_network_needs_an_onnxruntime_target(analytic_target: AnalyticTarget) -> None:
    with pytest.raises(EstimateError, match="cannot run whole networks"):
        measure_network(tiny_resnet(), analytic_target)


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"runs": 0}, {"warmup": -1}])
def test_measure_settings_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(EstimateError):
        NetworkMeasureSettings(**bad)


def test_a_model_with_a_custom_op_cannot_be_measured() -> None:
    node = helper.make_node("Nope", ["x"], ["y"], name="n", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    model.ir_version = 8
    with pytest.raises(EstimateError, match="ONNX Runtime cannot load"):
        measure_network(model, OnnxRuntimeTarget(), settings=QUICK)


def _fake_measurement(kernels: pd.DataFrame) -> NetworkMeasurement:
    return NetworkMeasurement(
        network="n",
        target_id="t",
        total_us=100.0,
        median_us=100.0,
        p10_us=99.0,
        p90_us=101.0,
        round_medians_us=(100.0,),
        runs=1,
        kernels=kernels,
        settings=QUICK,
    )


def test_compare_pairs_generated_names_by_op_and_shape_not_by_name() -> None:
    # 1.5 NCHWc blocks (24 channels with AVX-512, 12 with AVX2): max-pooling leaves the NCHWc
    # layout, so ORT adds named-by-token reorders
    target = OnnxRuntimeTarget()
    estimate = Estimator(target, analytic_models()).predict(
        tiny_resnet(width=off_block_width(target))
    )
    layers = estimate.layers
    generated = layers["node"].str.contains("_token_")
    assert generated.sum() >= 2
    # Another session: same kernels, generated names made up anew (and reused for other
    # nodes), listed in reverse order; each time encodes the kernel's own output shape.
    rows = layers[["node", "op", "output_shape"]].copy()
    rows["op"] = rows["op"].str.rpartition(".")[2]
    rows["measured_us"] = [1000.0 + i for i in range(len(rows))]
    names = list(rows.loc[generated, "node"])
    rows.loc[generated, "node"] = names[::-1]
    rows["provider"] = "CPUExecutionProvider"
    shuffled = rows.iloc[::-1].reset_index(drop=True)
    comparison = compare(estimate, _fake_measurement(shuffled))
    assert comparison.unmatched == ()
    for i, row in comparison.layers.iterrows():
        source = rows.loc[rows["measured_us"] == row["measured_us"]].iloc[0]
        assert (source["op"], source["output_shape"]) == (
            str(row["op"]).rpartition(".")[2],
            row["output_shape"],
        ), i


# -- rounds where the noise is ------------------------------------------------------------------


def test_median_uncertainty_follows_the_spread_of_the_rounds() -> None:
    assert median_uncertainty_pct([100.0] * 5) == 0.0
    assert median_uncertainty_pct([100.0]) == float("inf")
    # MAD 5 of a median of 100 over 5 rounds: 1.2533 * 1.4826 * 5 % / sqrt(5)
    assert median_uncertainty_pct([90, 95, 100, 105, 110]) == pytest.approx(4.155, abs=1e-3)
    # the same spread over four times the rounds is known twice as well
    many = [90, 95, 100, 105, 110] * 4
    assert median_uncertainty_pct(many) == pytest.approx(
        median_uncertainty_pct([90, 95, 100, 105, 110]) / 2
    )


@pytest.mark.parametrize("bad", [{"rounds": 5, "max_rounds": 3}, {"settle_pct": 0.0}])
def test_adaptive_round_settings_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(EstimateError):
        NetworkMeasureSettings(**bad)  # type: ignore[arg-type]


def test_after_the_first_rounds_only_unsettled_networks_go_on() -> None:
    settings = NetworkMeasureSettings(rounds=3, max_rounds=5, settle_pct=1.5)
    quiet, noisy = [100.0, 100.5, 99.5], [80.0, 100.0, 130.0]
    assert _still_measuring([quiet[:2], noisy[:2]], settings, 2) == [0, 1]
    assert _still_measuring([quiet, noisy], settings, 3) == [1]
    assert _still_measuring([quiet, [*noisy, 90.0, 120.0]], settings, 5) == []  # at the most
    fixed = NetworkMeasureSettings(rounds=3)
    assert _still_measuring([quiet, noisy], fixed, 3) == []


def test_unsettled_networks_get_more_rounds_up_to_the_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prmodel.targets.onnxruntime.networks as ort_networks

    settings = replace(QUICK, max_rounds=QUICK.rounds + 2)
    target = OnnxRuntimeTarget()
    models = [tiny_resnet(), tiny_mobilenet()]
    settled = measure_networks(models, target, settings=replace(settings, settle_pct=1e9))
    assert [len(m.round_medians_us) for m in settled] == [QUICK.rounds] * 2
    monkeypatch.setattr(ort_networks, "median_uncertainty_pct", lambda values: float("inf"))
    done: list[int] = []
    measured = measure_networks(models, target, settings=settings, on_round=done.append)
    assert [len(m.round_medians_us) for m in measured] == [settings.max_rounds] * 2
    assert done == list(range(1, settings.max_rounds + 1))
    for measurement in measured:
        assert measurement.total_us == statistics.median(measurement.round_medians_us)
        assert measurement.runs == settings.max_rounds * settings.runs


def test_fixed_rounds_keep_the_protocol_of_earlier_data_sets() -> None:
    fixed = protocol(NetworkMeasureSettings())
    assert "max_rounds" not in fixed["settings"] and "settle_pct" not in fixed["settings"]
    adaptive = NetworkMeasureSettings(max_rounds=12)
    assert protocol(adaptive)["settings"]["max_rounds"] == 12
    assert protocol_hash(adaptive) != protocol_hash(NetworkMeasureSettings())
