"""Tests of saved models: safe files and cards, loading them back, refusing bad ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from analytic_fixtures import TARGET, fitted, latencies, random_dense
from sklearn.preprocessing import FunctionTransformer

from prmodel.layers import LayerConfig, LayerKind
from prmodel.train.artifacts import (
    CARD_NAME,
    file_sha256,
    list_model_cards,
    load_model,
    load_models,
    save_model,
)
from prmodel.train.model import LatencyModel, ModelCard, ModelError
from prmodel.train.regressors import REGRESSORS
from prmodel.workspace import Workspace


def save(model: LatencyModel, directory: Path) -> ModelCard:
    return save_model(
        model,
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


@pytest.mark.parametrize("regressor", REGRESSORS)
def test_save_and_load_every_regressor(regressor: str, tmp_path: Path) -> None:
    model = fitted(regressor, n=120)
    card = save(model, tmp_path / "dense")
    # XGBoost's own UBJ format (a UBJSON object) or a skops zip archive, never a pickle
    expected, header = ("model.ubj", b"{") if regressor == "xgboost" else ("model.skops", b"PK")
    assert card.model_file == expected
    assert {p.name for p in (tmp_path / "dense").iterdir()} == {CARD_NAME, expected}
    assert (tmp_path / "dense" / expected).read_bytes().startswith(header)
    assert model.card_ is card
    loaded = load_model(tmp_path / "dense", target_id=TARGET.target_id, kind="dense")
    test = random_dense(25, seed=7, low=16, high=500)
    np.testing.assert_allclose(loaded.predict(test), model.predict(test), rtol=1e-6)
    assert loaded.card_ is not None and loaded.card_.regressor == regressor


def test_a_model_of_another_regressor_replaces_the_old_file(tmp_path: Path) -> None:
    save(fitted("xgboost", n=60), tmp_path / "dense")
    save(fitted("ridge", n=60), tmp_path / "dense")
    assert {p.name for p in (tmp_path / "dense").iterdir()} == {CARD_NAME, "model.skops"}
    assert load_model(tmp_path / "dense").regressor == "ridge"


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
        (
            lambda d: _edit_card(d, target_transform="log-relative"),
            {},
            "model card in .*: target transform 'log-relative' needs a work estimate",
        ),
    ],
)
def test_load_refuses_bad_models(
    saved_dir: Path, damage: Any, load_args: dict[str, str], message: str
) -> None:
    load_model(saved_dir)  # intact first
    damage(saved_dir)
    with pytest.raises(ModelError, match=message):
        load_model(saved_dir, **load_args)


def test_load_refuses_untrusted_skops_types(tmp_path: Path) -> None:
    directory = tmp_path / "dense"
    save(fitted("ridge", n=30), directory)
    # A file that would call os.system when used; its card hash is updated so only the
    # type allow-list stands in the way.
    skops.io.dump(FunctionTransformer(func=os.system), directory / "model.skops")
    _edit_card(directory, model_sha256=file_sha256(directory / "model.skops"))
    with pytest.raises(ModelError, match="contains types prmodel does not trust"):
        load_model(directory)


def test_saving_an_unfitted_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        save(LatencyModel("dense"), tmp_path / "dense")
    assert not (tmp_path / "dense" / CARD_NAME).exists()


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
    np.testing.assert_array_equal(
        models[LayerKind.CONV].predict(conv_train), conv.predict(conv_train)
    )
    cards = list_model_cards(workspace)
    assert [card.kind for _, card in cards] == ["conv", "dense"]
    # a model saved under the wrong kind's folder is refused
    save(xgb_model, workspace.model_dir(TARGET.target_id, "conv"))
    with pytest.raises(ModelError, match="is a dense model, not a conv model"):
        load_models(workspace, TARGET.target_id)


def test_load_path_imports_no_heavy_library(saved_dir: Path) -> None:
    # What `prmodel estimate` needs of a saved XGBoost model: load it and predict.
    code = (
        "import sys; from prmodel.train.artifacts import load_model; "
        "from prmodel.layers import LayerConfig; "
        f"load_model({str(saved_dir)!r}).predict("
        "[LayerConfig.create('dense', channels=64, out_channels=64)]); "
        "bad = [m for m in ('mlflow', 'optuna', 'xgboost', 'sklearn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
