"""Tests of prmodel.estimate.estimator: predictions, fallbacks, the calibration's warnings."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
import pytest
from estimate_fixtures import analytic_models

from prmodel.estimate.calibration import Calibration
from prmodel.estimate.estimator import (
    ESTIMATE_COLUMNS,
    UNPRICED,
    EstimateError,
    Estimator,
    LayerModel,
    PartialEstimateError,
)
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.networks import load_network
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg


@dataclass(frozen=True)
class RefusingTarget(AnalyticTarget):
    """The analytic target, refusing pooling layers (as a systolic-array simulator would)."""

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        if layer.kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            return f"{layer.kind.value} is not modelled"
        return None


# -- predictions -----------------------------------------------------------------------------------


def test_total_is_the_sum_of_analytic_latencies(analytic_target: AnalyticTarget) -> None:
    models = analytic_models()
    estimate = Estimator(analytic_target, models).predict(tiny_resnet())
    layers = estimate.layers
    assert list(layers.columns) == list(ESTIMATE_COLUMNS)
    modelled = layers[layers["status"] == "modelled"]
    expected = sum(
        analytic_target.latency_us(LayerConfig.from_dict(_layer_dict(row)))
        for row in modelled.to_dict("records")
    )
    assert estimate.sum_us == pytest.approx(expected + estimate.unmodelled_us)
    assert estimate.total_us == estimate.sum_us
    assert not estimate.calibrated
    assert "no calibration" in estimate.total_note
    assert layers["share_pct"].sum() == pytest.approx(100)


def _layer_dict(row: dict[str, Any]) -> dict[str, Any]:
    return layers_from_frame(pd.DataFrame([row])).pop().to_dict()


def test_each_kind_is_predicted_in_one_batch(analytic_target: AnalyticTarget) -> None:
    models = analytic_models()
    estimate = Estimator(analytic_target, models).predict(tiny_resnet())
    conv_rows = int((estimate.layers["kind"] == "conv").sum())
    assert models[LayerKind.CONV].calls == [conv_rows]
    assert models[LayerKind.DENSE].calls == [1]


def test_ort_target_estimate_uses_fused_kernels() -> None:
    estimate = Estimator(OnnxRuntimeTarget(), analytic_models()).predict(tiny_resnet())
    layers = estimate.layers
    assert estimate.runtime.startswith("onnxruntime optimizer")
    assert layers.loc[layers["kind"] == "conv", "residual"].sum() == 2
    assert "relu" not in set(layers["kind"].dropna())


def test_unmodelled_ops_use_the_elementwise_proxy(analytic_target: AnalyticTarget) -> None:
    models = analytic_models()
    estimate = Estimator(analytic_target, models).predict(tiny_vgg())
    softmax = estimate.layers[estimate.layers["op"] == "Softmax"].iloc[0]
    assert softmax["status"] == "unmodelled"
    assert softmax["source"] == "elementwise proxy"
    # relu over the same 1x10 tensor moves the same bytes as the softmax
    relu = LayerConfig.create("relu", channels=10)
    assert softmax["predicted_us"] == pytest.approx(analytic_target.latency_us(relu))
    assert estimate.unmodelled_share == pytest.approx(softmax["predicted_us"] / estimate.sum_us)


def test_without_a_proxy_model_an_estimate_is_refused_naming_the_op(
    analytic_target: AnalyticTarget,
) -> None:
    kinds = [LayerKind.CONV, LayerKind.DENSE, LayerKind.MAXPOOL, LayerKind.AVGPOOL]
    with pytest.raises(PartialEstimateError, match="no model for op Softmax") as refused:
        Estimator(analytic_target, analytic_models(kinds)).predict(tiny_vgg())
    assert refused.value.estimate.total_us > 0  # the lower bound is there for who wants it


def test_a_partial_estimate_is_a_lower_bound_and_says_so(
    analytic_target: AnalyticTarget,
) -> None:
    kinds = [LayerKind.CONV, LayerKind.DENSE, LayerKind.MAXPOOL, LayerKind.AVGPOOL]
    estimator = Estimator(analytic_target, analytic_models(kinds), partial=True)
    estimate = estimator.predict(tiny_vgg())
    softmax = estimate.layers[estimate.layers["op"] == "Softmax"].iloc[0]
    assert (softmax["status"], softmax["source"]) == ("unmodelled", UNPRICED)
    assert estimate.partial and estimate.unpriced_kernels == 1
    timed = int((estimate.layers["status"] != "free").sum())
    assert estimate.unpriced_count_share == pytest.approx(1 / timed)
    assert 0 < estimate.unpriced_bytes_share < 1
    assert estimate.missing_models == {"op Softmax": 1}
    assert estimate.warnings[0].startswith("partial estimate: ")
    assert "at least" in estimate.total_note
    data = estimate.to_dict()
    assert data["total_is_lower_bound"] and data["unpriced_kernels"] == 1
    row = next(k for k in data["kernels"] if k["op"] == "Softmax")
    assert row["predicted_us"] is None  # never printed as if it were a price


def test_a_kind_without_a_model_and_no_proxy_is_named(analytic_target: AnalyticTarget) -> None:
    models = analytic_models([LayerKind.CONV, LayerKind.DENSE])
    estimate = Estimator(analytic_target, models, partial=True).predict(tiny_resnet())
    assert {"maxpool", "globalavgpool"} <= set(estimate.missing_models)
    assert estimate.unpriced_kernels == sum(estimate.missing_models.values())


def test_a_kind_without_a_model_is_unmodelled_never_dropped(
    analytic_target: AnalyticTarget,
) -> None:
    models = analytic_models([k for k in LayerKind if k is not LayerKind.MAXPOOL])
    estimate = Estimator(analytic_target, models).predict(tiny_resnet())
    pool = estimate.layers[estimate.layers["kind"] == "maxpool"].iloc[0]
    assert pool["status"] == "unmodelled"
    assert "no trained maxpool model" in pool["note"]
    assert pool["predicted_us"] > 0  # priced by the relu proxy


def test_kinds_the_target_refuses_are_unmodelled() -> None:
    estimate = Estimator(RefusingTarget(), analytic_models()).predict(tiny_resnet())
    pool = estimate.layers[estimate.layers["kind"] == "maxpool"].iloc[0]
    assert pool["status"] == "unmodelled"
    assert "target refuses it: maxpool is not modelled" in pool["note"]


def test_free_kernels_cost_nothing(analytic_target: AnalyticTarget) -> None:
    estimate = Estimator(analytic_target, analytic_models()).predict(tiny_resnet())
    free = estimate.layers[estimate.layers["status"] == "free"]
    assert list(free["op"]) == ["Flatten"]
    assert free["predicted_us"].sum() == 0


def test_predict_accepts_paths_networks_and_kernels(
    tmp_path: Path, analytic_target: AnalyticTarget
) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(tiny_mobilenet(), path)
    estimator = Estimator(analytic_target, analytic_models())
    network = load_network(path)
    totals = {
        estimator.predict(path).total_us,
        estimator.predict(network).total_us,
        estimator.predict(estimator.kernels(network)).total_us,
        estimator.predict(tiny_mobilenet()).total_us,
    }
    assert len(totals) == 1


def test_extrapolation_warnings_are_collected(analytic_target: AnalyticTarget) -> None:
    class Warning_(LayerModel):
        def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
            warnings.warn("conv channels=3 is outside the training range", stacklevel=1)
            return np.ones(len(layers))

    only_conv = Estimator(analytic_target, {LayerKind.CONV: Warning_()}, partial=True)
    estimate = only_conv.predict(tiny_resnet())
    assert estimate.warnings[1:] == ("conv channels=3 is outside the training range",)


def test_to_dict_is_json_serialisable(analytic_target: AnalyticTarget) -> None:
    data = Estimator(analytic_target, analytic_models()).predict(tiny_vgg()).to_dict()
    text = json.dumps(data)
    assert json.loads(text)["kernels"][0]["node"]
    assert data["total_us"] == pytest.approx(sum(k["predicted_us"] for k in data["kernels"]))


def test_load_refuses_a_workspace_without_models(workspace: Workspace) -> None:
    with pytest.raises(EstimateError, match="no trained models for target analytic"):
        Estimator.load(workspace, "analytic")


# -- the calibration it is given -------------------------------------------------------------------


@pytest.mark.parametrize(("fitted_with", "stale"), [("a", False), ("b", True)])
def test_a_calibration_fitted_with_other_models_is_flagged(
    analytic_target: AnalyticTarget, fitted_with: str, stale: bool
) -> None:
    models = analytic_models()
    for model in models.values():
        model.card_ = SimpleNamespace(model_sha256="a")  # type: ignore[attr-defined]
    calibration = Calibration(
        target_id=analytic_target.target_id,
        notes={"models": {kind.value: fitted_with for kind in models}},
    )
    estimate = Estimator(analytic_target, models, calibration=calibration).predict(tiny_vgg())
    assert any("rerun prmodel calibrate" in w for w in estimate.warnings) is stale
