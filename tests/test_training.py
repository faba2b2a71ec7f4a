"""Tests of training: tuning, held-out testing, overlap handling, saving, repeatability."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analytic_fixtures import PR, TARGET, random_dense

from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_to_frame
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.train.artifacts import load_models
from prmodel.train.model import LatencyModel
from prmodel.train.regressors import DEFAULT_PARAMS, REGRESSORS, ModelError
from prmodel.train.settings import TrainSettings
from prmodel.train.training import (
    OverlapWarning,
    drop_overlap,
    train_kind,
    train_models,
    training_digest,
    usable_rows,
)
from prmodel.train.tuning import tune
from prmodel.workspace import Workspace

FAST = TrainSettings(trials=3, folds=3)


def measured(layers: list[LayerConfig], *, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A store-like frame of ``layers`` measured on the analytic target."""
    rng = np.random.default_rng(seed)
    frame = layers_to_frame(layers)
    exact = np.array([TARGET.latency_us(layer) for layer in layers])
    frame["latency_us"] = exact * rng.lognormal(0.0, noise, len(layers)) if noise else exact
    frame["target_id"] = TARGET.target_id
    frame["fingerprint_hash"] = "fp0"
    frame["status"] = "ok"
    return frame


def random_conv(n: int, seed: int) -> list[LayerConfig]:
    rng = np.random.default_rng(seed)
    return [
        LayerConfig.create(
            "conv",
            channels=int(rng.integers(1, 65)),
            height=int(rng.integers(4, 17)),
            width=int(rng.integers(4, 17)),
            out_channels=int(rng.integers(1, 65)),
            kernel=3,
            padding=1,
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def train_frame() -> pd.DataFrame:
    return measured(random_dense(240, seed=0))


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    return measured(random_dense(80, seed=1, low=16, high=500))


def test_trains_accurate_model_on_deterministic_data(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, workspace: Workspace
) -> None:
    report = train_models(
        train_frame,
        target_id=TARGET.target_id,
        settings=FAST,
        test_frame=test_frame,
        representatives=PR,
        workspace=workspace,
        progress=False,
    )
    (result,) = report.results
    assert report.fingerprint_hash == "fp0"
    assert report.settings == FAST
    # training saves the model but logs nothing: that is the caller's choice (tracking)
    assert report.tracking_uri is None and result.run_id is None
    assert not (workspace.root / "mlflow.db").exists()
    assert result.kind is LayerKind.DENSE
    assert result.train_rows == 240
    assert len(result.test_layers) == 80
    assert result.test_metrics is not None
    assert result.test_metrics["n"] == 80
    assert result.test_metrics["mape"] < 5.0
    assert result.test_metrics["within_10"] > 90.0
    assert result.test_metrics["spearman"] > 0.99
    assert result.cv_mape is not None and 0 < result.cv_mape < 10
    assert result.tuning is not None and len(result.tuning.trials) == 3
    # the model is saved with its figures and can be loaded back for the estimator
    assert result.model_dir == workspace.model_dir(TARGET.target_id, "dense")
    loaded = load_models(workspace, TARGET.target_id)[LayerKind.DENSE]
    assert loaded.card_ is not None
    assert loaded.card_.metrics["test_mape"] == pytest.approx(result.test_metrics["mape"])
    assert loaded.card_.training_digest == training_digest(train_frame)
    np.testing.assert_allclose(
        loaded.predict(list(result.test_layers)), result.test_predicted, rtol=1e-6
    )


def test_pr_features_beat_plain_features() -> None:
    # Conv on the analytic target is compute-bound with channels padded to 8 and 16.
    conv_pr = RepresentativeSet(
        TARGET.target_id,
        (
            ParameterSteps(LayerKind.CONV, "out_channels", True, period=16),
            ParameterSteps(LayerKind.CONV, "channels", True, period=8),
        ),
    )
    train, test = measured(random_conv(300, seed=0)), measured(random_conv(100, seed=1))
    settings = TrainSettings(trials=0, folds=3)
    plain = train_kind(train, kind="conv", settings=settings, test=test)
    aware = train_kind(train, kind="conv", settings=settings, test=test, representatives=conv_pr)
    assert plain.test_metrics is not None and aware.test_metrics is not None
    assert aware.test_metrics["mape"] < 0.7 * plain.test_metrics["mape"]


def test_same_seed_repeats_exactly(train_frame: pd.DataFrame) -> None:
    a = train_kind(train_frame, kind="dense", settings=FAST)
    b = train_kind(train_frame, kind="dense", settings=FAST)
    assert a.params == b.params
    assert a.cv_mape == b.cv_mape
    layers = random_dense(10, seed=5, low=16, high=500)
    np.testing.assert_array_equal(a.model.predict(layers), b.model.predict(layers))


def test_defaults_without_tuning(train_frame: pd.DataFrame) -> None:
    result = train_kind(train_frame, kind="dense", settings=TrainSettings(trials=0, folds=3))
    assert result.cv_mape is None and result.tuning is None
    assert result.params == DEFAULT_PARAMS["xgboost"]
    assert result.model.estimator_.get_params()["n_estimators"] == 600
    assert result.test_metrics is None


def test_overlapping_test_rows_are_dropped(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    mixed = pd.concat([test_frame, train_frame.iloc[:7]], ignore_index=True)
    with pytest.warns(OverlapWarning, match="7 of 87 dense test layers are also training"):
        result = train_kind(
            train_frame, kind="dense", settings=TrainSettings(trials=0, folds=3), test=mixed
        )
    assert result.dropped_overlap == 7
    assert len(result.test_layers) == 80
    train_keys = set(train_frame["layer_key"])
    assert not {layer.key for layer in result.test_layers} & train_keys


def test_drop_overlap_keeps_disjoint_sets(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    kept, dropped = drop_overlap(test_frame, train_frame)
    assert dropped == 0 and len(kept) == len(test_frame)


def test_usable_rows_skip_failures_duplicates_and_other_kinds() -> None:
    frame = measured(random_dense(5, seed=2) + random_conv(3, seed=2))
    frame = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    frame.loc[1, "status"] = "error"
    frame.loc[2, "latency_us"] = np.nan
    rows = usable_rows(frame, kind="dense")
    assert len(rows) == 3
    assert set(rows["kind"]) == {"dense"}


def test_digest_ignores_order_but_not_values(train_frame: pd.DataFrame) -> None:
    shuffled = train_frame.sample(frac=1.0, random_state=1)
    assert training_digest(shuffled) == training_digest(train_frame)
    changed = train_frame.copy()
    changed.loc[0, "latency_us"] *= 1.01
    assert training_digest(changed) != training_digest(train_frame)


def test_trains_every_kind_in_the_frame() -> None:
    frame = measured(random_dense(40, seed=3) + random_conv(40, seed=3))
    report = train_models(
        frame,
        target_id=TARGET.target_id,
        settings=TrainSettings(regressor="ridge", trials=2, folds=2),
        progress=False,
    )
    assert [r.kind for r in report.results] == [LayerKind.CONV, LayerKind.DENSE]
    assert all(r.model_dir is None and r.run_id is None for r in report.results)


@pytest.mark.parametrize("regressor", REGRESSORS)
def test_every_search_space_runs(regressor: str) -> None:
    layers = random_dense(40, seed=4)
    latency = np.array([TARGET.latency_us(layer) for layer in layers])
    calls: list[tuple[int, int]] = []
    result = tune(
        layers,
        latency,
        kind=LayerKind.DENSE,
        settings=TrainSettings(regressor=regressor, trials=2, folds=2),
        on_trial=lambda done, total, best: calls.append((done, total)),
    )
    assert calls == [(1, 2), (2, 2)]
    assert len(result.trials) == 2 and np.isfinite(result.cv_mape)
    LatencyModel("dense", regressor=regressor, params=result.best_params).fit(layers, latency)


def test_noisy_data_still_trains() -> None:
    frame = measured(random_dense(120, seed=6), noise=0.03, seed=6)
    result = train_kind(frame, kind="dense", settings=TrainSettings(trials=0, folds=3))
    assert result.train_metrics["mape"] < 10.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(target_id="other"), "no measured rows of target"),
        (
            lambda f: f.assign(fingerprint_hash=["a", "b"] * (len(f) // 2)),
            "come from 2 hardware/software fingerprints",
        ),
        (lambda f: f.iloc[:2], "only 2 usable dense training rows"),
    ],
)
def test_refuses_unusable_training_data(
    train_frame: pd.DataFrame, change: object, message: str
) -> None:
    frame = change(train_frame)  # type: ignore[operator]
    with pytest.raises(ModelError, match=message):
        train_models(frame, target_id=TARGET.target_id, settings=FAST, progress=False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"regressor": "svm"}, "unknown regressor 'svm'"),
        ({"folds": 1}, "at least 2 folds"),
        ({"trials": -1}, "must be >= 0"),
    ],
)
def test_settings_are_validated(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        TrainSettings(**settings)  # type: ignore[arg-type]


def test_processes_share_a_study_through_its_storage(tmp_path: Path) -> None:
    layers = random_dense(40, seed=4)
    latency = np.array([TARGET.latency_us(layer) for layer in layers])
    storage = f"sqlite:///{tmp_path / 'studies.db'}"

    def run(trials: int, seed: int = 0) -> pd.DataFrame:
        settings = TrainSettings(regressor="ridge", trials=trials, folds=2, seed=seed)
        shared = replace(settings, study_storage=storage)
        return tune(layers, latency, kind=LayerKind.DENSE, settings=shared).trials

    first = run(3)
    assert len(first) == 3
    second = run(6)  # finds the first run's 3 trials and adds 3: 6 in all, not 6 more
    assert len(second) == 6
    assert second["number"].tolist() == list(range(6))
    assert second.head(3)["value"].tolist() == first["value"].tolist()
    assert len(run(3, seed=1)) == 3  # another problem (seed): a study of its own
    with pytest.raises(ModelError, match="cannot open the Optuna study storage"):
        tune(
            layers,
            latency,
            kind=LayerKind.DENSE,
            settings=TrainSettings(trials=1, folds=2, study_storage="nosuchdb://x"),
        )
