"""Tests of LatencyModel: fitting, prediction, safe artifacts and refusing bad ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analytic_fixtures import PR, TARGET, random_dense

from prmodel.layers import LayerConfig, LayerKind
from prmodel.metrics import summarize
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.profiles import analytic_profile
from prmodel.train.model import (
    CARD_NAME,
    REGRESSORS,
    ExtrapolationWarning,
    LatencyModel,
    ModelCard,
    ModelError,
    file_sha256,
    list_model_cards,
    load_models,
)
from prmodel.workspace import Workspace

# Small, fast settings: these tests check behaviour, not the best accuracy.
FAST = {
    "xgboost": {"n_estimators": 80},
    "random_forest": {"n_estimators": 20},
    "extra_trees": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 40},
    "knn": {},
    "ridge": {},
}


def latencies(layers: list[LayerConfig]) -> list[float]:
    return [TARGET.latency_us(layer) for layer in layers]


def fitted(regressor: str = "xgboost", n: int = 300, seed: int = 0) -> LatencyModel:
    train = random_dense(n, seed)
    model = LatencyModel("dense", regressor=regressor, params=FAST[regressor], representatives=PR)
    return model.fit(train, latencies(train))


def save(model: LatencyModel, directory: Path) -> ModelCard:
    return model.save(
        directory,
        target_id=TARGET.target_id,
        fingerprint_hash="abc123",
        fingerprint=TARGET.fingerprint(),
        metrics={"test_mape": 1.0},
        training_digest="d" * 64,
    )


@pytest.fixture(scope="module")
def xgb_model() -> LatencyModel:
    return fitted()


@pytest.fixture
def saved_dir(xgb_model: LatencyModel, tmp_path: Path) -> Path:
    directory = tmp_path / "dense"
    save(xgb_model, directory)
    return directory


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
    assert model.parameter_ranges["batch"][0] >= 1
    assert set(model.feature_ranges_) == set(model.feature_spec_.names)
    low, high = model.latency_range_us_
    assert low == min(latencies(train)) and high == max(latencies(train))
    assert model.feature_spec_.kind is LayerKind.DENSE


def test_same_seed_same_predictions() -> None:
    test = random_dense(30, seed=5, low=16, high=500)
    a, b = fitted("random_forest").predict(test), fitted("random_forest").predict(test)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("regressor", REGRESSORS)
def test_save_and_load_every_regressor(regressor: str, tmp_path: Path) -> None:
    model = fitted(regressor, n=120)
    card = save(model, tmp_path / "dense")
    files = {p.name for p in (tmp_path / "dense").iterdir()}
    assert files == {CARD_NAME, card.model_file}
    assert not card.model_file.endswith((".pkl", ".pickle", ".joblib"))
    loaded = LatencyModel.load(tmp_path / "dense", target_id=TARGET.target_id, kind="dense")
    test = random_dense(25, seed=7, low=16, high=500)
    np.testing.assert_allclose(loaded.predict(test), model.predict(test), rtol=1e-6)
    assert loaded.card_ is not None and loaded.card_.regressor == regressor


def test_card_content(saved_dir: Path) -> None:
    card = json.loads((saved_dir / CARD_NAME).read_text())
    assert card["kind"] == "dense"
    assert card["target_id"] == TARGET.target_id
    assert card["feature_schema"][:3] == ["batch", "channels", "out_channels"]
    assert "out_channels_rounded" in card["feature_schema"]
    assert card["parameter_ranges"]["channels"][1] <= 512
    assert "out_channels_rounded" in card["feature_ranges"]
    assert "out_channels_rounded" not in card["parameter_ranges"]
    assert 0 < card["latency_range_us"][0] < card["latency_range_us"][1]
    assert card["model_sha256"] == file_sha256(saved_dir / card["model_file"])
    assert card["library_versions"]["xgboost"]
    assert card["hyperparameters"]["n_estimators"] == 80
    assert card["training_rows"] == 300
    assert card["fingerprint"]["target"] == "analytic"


def _tamper_model(directory: Path) -> None:
    path = directory / "model.ubj"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_card(directory: Path, **changes: Any) -> None:
    card = json.loads((directory / CARD_NAME).read_text())
    card.update(changes)
    (directory / CARD_NAME).write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("damage", "load_args", "message"),
    [
        (_tamper_model, {}, "was changed after training"),
        (lambda d: None, {"kind": "conv"}, "is a dense model, not a conv model"),
        (lambda d: None, {"target_id": "ort-cpu-t1-all"}, "trained for target 'analytic"),
        (
            lambda d: _edit_card(d, feature_schema=["batch", "channels", "width"]),
            {},
            "feature schema this prmodel does not build",
        ),
        (lambda d: _edit_card(d, format_version=99), {}, "format version 99"),
        (lambda d: (d / CARD_NAME).write_text("{not json"), {}, "not readable JSON"),
        (lambda d: (d / CARD_NAME).unlink(), {}, "there is no model card"),
        (lambda d: (d / "model.ubj").unlink(), {}, "is missing"),
        (lambda d: _edit_card(d, regressor="svm"), {}, "unknown regressor 'svm'"),
        (lambda d: _edit_card(d, feature_ranges={}), {}, "feature ranges that do not match"),
        (lambda d: _edit_card(d, latency_range_us=None), {}, "incomplete or malformed"),
    ],
)
def test_load_refuses_bad_models(
    saved_dir: Path, damage: Any, load_args: dict[str, str], message: str
) -> None:
    LatencyModel.load(saved_dir)  # intact first
    damage(saved_dir)
    with pytest.raises(ModelError, match=message):
        LatencyModel.load(saved_dir, **load_args)


def test_load_refuses_untrusted_skops_types(tmp_path: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    directory = tmp_path / "dense"
    save(fitted("ridge", n=30), directory)
    # A file that would call os.system when used; its card hash is updated so only the
    # type allow-list stands in the way.
    skops.io.dump(FunctionTransformer(func=os.system), directory / "model.skops")
    _edit_card(directory, model_sha256=file_sha256(directory / "model.skops"))
    with pytest.raises(ModelError, match="contains types prmodel does not trust"):
        LatencyModel.load(directory)


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


def test_load_models_of_a_workspace(workspace: Workspace, xgb_model: LatencyModel) -> None:
    assert load_models(workspace, TARGET.target_id) == {}
    save(xgb_model, workspace.model_dir(TARGET.target_id, "dense"))
    conv_train = [
        LayerConfig.create("conv", channels=c, height=8, width=8, out_channels=o, kernel=3)
        for c in (4, 8, 16)
        for o in (4, 16, 32)
    ]
    conv = LatencyModel("conv", regressor="ridge").fit(conv_train, latencies(conv_train))
    save(conv, workspace.model_dir(TARGET.target_id, "conv"))
    models = load_models(workspace, TARGET.target_id)
    assert set(models) == {LayerKind.CONV, LayerKind.DENSE}
    assert models[LayerKind.CONV].predict(conv_train[:2]).shape == (2,)
    cards = list_model_cards(workspace)
    assert [card.kind for _, card in cards] == ["conv", "dense"]
    # a model saved under the wrong kind's folder is refused
    save(xgb_model, workspace.model_dir(TARGET.target_id, "conv"))
    with pytest.raises(ModelError, match="is a dense model, not a conv model"):
        load_models(workspace, TARGET.target_id)


def test_load_path_imports_no_mlflow_or_optuna(saved_dir: Path) -> None:
    code = (
        "import sys; from prmodel.train.model import LatencyModel; "
        f"LatencyModel.load({str(saved_dir)!r}); "
        "bad = [m for m in ('mlflow', 'optuna') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


PR_WITH_PROFILE = RepresentativeSet(
    TARGET.target_id,
    PR.steps,
    {"profile": {**analytic_profile(TARGET).to_dict(), "source": "derived"}},
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
        "dense", params=FAST["xgboost"], representatives=representatives, plateau_mapping=asked
    ).fit(train, latencies(train))
    assert model.plateau_mapping_ is mapped
    same_plateau = [
        LayerConfig.create("dense", channels=c, out_channels=o) for c, o in ((41, 17), (48, 32))
    ]
    first, second = model.predict(same_plateau)
    assert bool(first == second) is mapped
    card = save(model, tmp_path / "dense")
    assert bool(card.plateau_mapping) is mapped
    loaded = LatencyModel.load(tmp_path / "dense")
    assert loaded.plateau_mapping_ is mapped
    assert np.array_equal(loaded.predict(same_plateau), model.predict(same_plateau))


def test_relative_target_is_the_default_with_a_work_estimate(tmp_path: Path) -> None:
    train = random_dense(200, seed=4)
    model = LatencyModel("dense", params=FAST["xgboost"], representatives=PR_WITH_PROFILE)
    model.fit(train, latencies(train))
    assert model.target_transform_ == "log-relative"
    assert save(model, tmp_path / "dense").target_transform == "log-relative"
    loaded = LatencyModel.load(tmp_path / "dense")
    test = random_dense(20, seed=5)
    assert np.array_equal(loaded.predict(test), model.predict(test))
    assert fitted().target_transform_ == "log"  # no profile in PR: no work estimate


def test_relative_target_needs_a_work_estimate() -> None:
    with pytest.raises(ModelError, match="work estimate"):
        LatencyModel("dense", representatives=PR, target_transform="log-relative").fit(
            random_dense(10, 0), latencies(random_dense(10, 0))
        )
