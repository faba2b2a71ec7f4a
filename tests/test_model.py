"""Tests of LatencyModel: fitting, prediction, extrapolation and the settings it records."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from analytic_fixtures import FAST_PARAMS, PR, TARGET, fitted, latencies, random_dense

from prmodel.layers import LayerConfig, LayerKind
from prmodel.metrics import summarize
from prmodel.select.representatives import RepresentativeSet
from prmodel.train.artifacts import load_model, save_model
from prmodel.train.model import ExtrapolationWarning, LatencyModel, ModelCard, ModelError


def save(model: LatencyModel, directory: Path) -> ModelCard:
    return save_model(model, directory, target_id=TARGET.target_id, fingerprint_hash="abc123")


@pytest.fixture(scope="module")
def xgb_model() -> LatencyModel:
    return fitted()


def test_learns_the_staircase(xgb_model: LatencyModel) -> None:
    test = random_dense(150, seed=99, low=16, high=500)
    summary = summarize(latencies(test), xgb_model.predict(test))
    assert summary["mape"] < 5.0
    assert summary["within_10"] > 90.0
    assert summary["spearman"] > 0.99


def test_fit_returns_self_and_learns_state() -> None:
    model = LatencyModel("dense", regressor="ridge")
    assert not hasattr(model, "estimator_")
    train = random_dense(20, 1)
    assert model.fit(train, latencies(train)) is model
    assert model.n_train_ == 20
    # without a PR set the layers are not mapped, so the ranges are those of the data
    for name in ("batch", "channels", "out_channels"):
        values = [getattr(layer, name) for layer in train]
        assert model.parameter_ranges[name] == (min(values), max(values))
    # derived features are clipped to their ranges too, but are not parameters
    assert "macs" in model.feature_ranges_ and "macs" not in model.parameter_ranges
    low, high = model.latency_range_us_
    assert low == min(latencies(train)) and high == max(latencies(train))
    assert model.feature_spec_.kind is LayerKind.DENSE


def test_same_seed_same_predictions() -> None:
    test = random_dense(30, seed=5, low=16, high=500)
    a, b = fitted("random_forest").predict(test), fitted("random_forest").predict(test)
    np.testing.assert_array_equal(a, b)


def test_extrapolation_warns_naming_parameter(xgb_model: LatencyModel) -> None:
    inside = random_dense(5, seed=3, low=16, high=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        xgb_model.predict(inside)
    outside = [LayerConfig.create("dense", channels=64, out_channels=4096)]
    with pytest.warns(ExtrapolationWarning, match=r"dense out_channels=4096 is outside .*\.\.5"):
        xgb_model.predict(outside)
    fused = [LayerConfig.create("dense", channels=64, out_channels=64, activation="relu")]
    with pytest.warns(ExtrapolationWarning, match="act_relu=1"):
        xgb_model.predict(fused)


@pytest.mark.parametrize(
    ("layers", "targets", "message"),
    [
        (random_dense(3, 0), [1.0, 0.0, 2.0], "latency at row 1 is 0.0"),
        (random_dense(3, 0), [1.0, 2.0], "3 layers but 2 latencies"),
        ([], [], "no measured layers"),
        ([LayerConfig.create("relu", channels=4)], [1.0], "cannot take the relu layer"),
    ],
)
def test_fit_refuses_bad_data(
    layers: list[LayerConfig], targets: list[float], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        LatencyModel("dense", regressor="ridge").fit(layers, targets)


def test_predict_refuses_unfitted_and_other_kinds(xgb_model: LatencyModel) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        LatencyModel("dense").predict(random_dense(1, 0))
    with pytest.raises(ModelError, match="cannot take the conv layer"):
        xgb_model.predict([LayerConfig.create("conv", channels=4, out_channels=4)])
    assert xgb_model.predict([]).shape == (0,)


def test_predictions_stay_bounded_far_outside_training() -> None:
    train = random_dense(40, seed=8, low=16, high=64)
    model = LatencyModel("dense", regressor="ridge", params={"alpha": 1e-6}).fit(
        train, latencies(train)
    )
    huge = [LayerConfig.create("dense", batch=64, channels=4096, out_channels=4096)]
    with pytest.warns(ExtrapolationWarning):
        (predicted,) = model.predict(huge)
    assert predicted <= 10 * max(latencies(train))


def test_unknown_regressor() -> None:
    with pytest.raises(ModelError, match="unknown regressor 'svm'"):
        LatencyModel("dense", regressor="svm").fit(random_dense(3, 0), [1.0, 2.0, 3.0])


PR_WITH_PROFILE = RepresentativeSet(
    TARGET.target_id,
    PR.steps,
    {"profile": {**TARGET.hardware_profile().to_dict(), "source": "derived"}},
)


@pytest.mark.parametrize(
    ("representatives", "asked", "mapped"),
    [(PR, None, True), (PR, False, False), (None, None, False)],
)
def test_plateau_mapping_is_fitted_recorded_and_reloaded(
    representatives: RepresentativeSet | None, asked: bool | None, mapped: bool, tmp_path: Path
) -> None:
    train = random_dense(200, seed=3)
    model = LatencyModel(
        "dense",
        params=FAST_PARAMS["xgboost"],
        representatives=representatives,
        plateau_mapping=asked,
    ).fit(train, latencies(train))
    assert model.plateau_mapping_ is mapped
    same_plateau = [
        LayerConfig.create("dense", channels=c, out_channels=o) for c, o in ((41, 17), (48, 32))
    ]
    first, second = model.predict(same_plateau)
    assert bool(first == second) is mapped
    card = save(model, tmp_path / "dense")
    assert bool(card.plateau_mapping) is mapped
    loaded = load_model(tmp_path / "dense")
    assert loaded.plateau_mapping_ is mapped
    assert np.array_equal(loaded.predict(same_plateau), model.predict(same_plateau))


def test_relative_target_is_the_default_with_a_work_estimate(tmp_path: Path) -> None:
    train = random_dense(200, seed=4)
    model = LatencyModel("dense", params=FAST_PARAMS["xgboost"], representatives=PR_WITH_PROFILE)
    model.fit(train, latencies(train))
    assert model.target_transform_ == "log-relative"
    assert save(model, tmp_path / "dense").target_transform == "log-relative"
    loaded = load_model(tmp_path / "dense")
    test = random_dense(20, seed=5)
    assert np.array_equal(loaded.predict(test), model.predict(test))
    assert fitted().target_transform_ == "log"  # no profile in PR: no work estimate


def test_relative_target_needs_a_work_estimate() -> None:
    with pytest.raises(ModelError, match="work estimate"):
        LatencyModel("dense", representatives=PR, target_transform="log-relative").fit(
            random_dense(10, 0), latencies(random_dense(10, 0))
        )
