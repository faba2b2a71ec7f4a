"""Tests of prmodel.workflows.datasets: the named layer sets and the network truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prmodel.estimate.estimator import NetworkEstimate
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.store import MeasurementStore
from prmodel.networks import NetworkMeasurement, NetworkMeasureSettings
from prmodel.targets.analytic import AnalyticTarget
from prmodel.workflows.datasets import (
    TEST_SEED,
    DatasetError,
    build_test_sets,
    draw_test_layers,
    layer_sum_truth,
    measure_set,
    measure_test_set,
    plan_name,
    profiled_truth,
    stored_or_new_test_rows,
    training_kinds,
    training_rows,
)
from prmodel.workspace import Workspace

TARGET = AnalyticTarget()


def dense(channels: int, out_channels: int) -> LayerConfig:
    return LayerConfig.create("dense", channels=channels, out_channels=out_channels)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_a_smaller_test_set_is_the_start_of_a_larger_one(kind: str) -> None:
    small = draw_test_layers(kind, 12)
    assert [x.key for x in small] == [x.key for x in draw_test_layers(kind, 40)][:12]
    assert all(x.kind is LayerKind(kind) for x in small)


def test_every_workflow_draws_the_same_test_set(workspace: Workspace) -> None:
    expected = [x.key for x in draw_test_layers("dense", 12)]
    with MeasurementStore(workspace.store_path) as store:
        digest = store.register_target(TARGET.target_id, TARGET.fingerprint())
        drawn: list[str] = []
        rows = stored_or_new_test_rows(
            TARGET,
            LayerKind.DENSE,
            store=store,
            fingerprint_hash=digest,
            size=12,
            progress=False,
            on_draw=drawn.append,
        )
        assert sorted(rows["layer_key"]) == sorted(expected)
        assert drawn and f"seed {TEST_SEED}" in drawn[0] and "'test-dense'" in drawn[0]
        tests = build_test_sets(
            TARGET, store=store, kinds=[LayerKind.DENSE], size=12, progress=False
        )
        assert list(tests[LayerKind.DENSE].random["layer_key"]) == expected
        again = measure_test_set(TARGET, LayerKind.DENSE, 12, store=store, progress=False)
        assert again.counts == (0, 12, 0)
        assert store.plan_names(target_id=TARGET.target_id) == [plan_name("test", "dense")]


def test_a_stored_test_set_is_read_not_drawn(workspace: Workspace) -> None:
    layers = [dense(8 * i, 16) for i in range(1, 6)]
    with MeasurementStore(workspace.store_path) as store:
        measure_set(layers, TARGET, store=store, plan="test-dense", progress=False)
        digest = store.register_target(TARGET.target_id, TARGET.fingerprint())
        drawn: list[str] = []
        rows = stored_or_new_test_rows(
            TARGET,
            LayerKind.DENSE,
            store=store,
            fingerprint_hash=digest,
            size=12,
            on_draw=drawn.append,
        )
    assert sorted(rows["layer_key"]) == sorted(x.key for x in layers) and not drawn


def test_a_measured_set_keeps_the_drawn_order(workspace: Workspace) -> None:
    layers = [dense(64, 8), dense(8, 8), dense(32, 8), dense(8, 8)]
    with MeasurementStore(workspace.store_path) as store:
        measured = measure_set(layers, TARGET, store=store, plan="pr-dense", progress=False)
    assert measured.counts == (3, 0, 0)
    assert measured.keys == tuple(dict.fromkeys(x.key for x in layers))
    assert list(measured.in_drawn_order()["layer_key"]) == list(measured.keys)
    assert sorted(measured.rows["layer_key"]) == sorted(measured.keys)


def test_training_sets_are_found_by_plan_name(workspace: Workspace) -> None:
    with MeasurementStore(workspace.store_path) as store:
        with pytest.raises(DatasetError, match="no training set 'pr-<kind>'"):
            training_kinds(store, TARGET.target_id)
        measure_set([dense(8, 8)], TARGET, store=store, plan="pr-dense", progress=False)
        measure_set([dense(8, 16)], TARGET, store=store, plan="pr-dense-extra", progress=False)
        assert training_kinds(store, TARGET.target_id) == [LayerKind.DENSE]
        digest = store.register_target(TARGET.target_id, TARGET.fingerprint())
        rows = training_rows(store, TARGET.target_id, digest, LayerKind.DENSE)
        assert list(rows["layer_key"]) == [dense(8, 8).key]
        with pytest.raises(DatasetError, match="plan 'pr-conv' has no measurements"):
            training_rows(store, TARGET.target_id, digest, LayerKind.CONV)


def test_layer_sum_truth_counts_repeats_and_skips_unmeasured_layers() -> None:
    a, b, c = dense(8, 8), dense(16, 8), dense(32, 8)
    truth = layer_sum_truth([a, b, a, c], [1.0, 2.0, 1.5, 9.0], {a.key: 2.0, b.key: 4.0})
    assert (truth.kernels, truth.modelled, truth.compared) == (4, 4, 3)
    assert truth.predicted_us == pytest.approx(4.5)
    assert truth.measured_us == pytest.approx(8.0)
    assert truth.error_pct == pytest.approx(100 * (4.5 - 8.0) / 8.0)


def test_profiled_truth_compares_modelled_kernels_with_a_profile() -> None:
    layers = pd.DataFrame(
        {
            "node": ["conv1", "relu", "gemm", "pool"],
            "op": ["Conv", "Relu", "Gemm", "MaxPool"],
            "output_shape": ["1x8x4x4", "1x8x4x4", "1x10", "1x8x2x2"],
            "status": ["modelled", "free", "modelled", "unmodelled"],
            "predicted_us": [10.0, 0.0, 5.0, 3.0],
        }
    )
    kernels = pd.DataFrame(
        {
            "node": ["conv1", "pool"],
            "op": ["Conv", "MaxPool"],
            "output_shape": ["1x8x4x4", "1x8x2x2"],
            "measured_us": [12.0, 4.0],
        }
    )
    estimate = NetworkEstimate("net", "t", "onnxruntime", layers, 18.0, 18.0, None)
    measurement = NetworkMeasurement(
        "net", "t", 20.0, 20.0, 19.0, 21.0, (20.0,), 10, kernels, NetworkMeasureSettings()
    )
    truth = profiled_truth(estimate, measurement)
    assert (truth.kernels, truth.modelled, truth.compared) == (4, 2, 1)
    assert (truth.predicted_us, truth.measured_us) == (10.0, 12.0)
    assert np.isclose(truth.error_pct or 0.0, -100 / 6)
