"""Tests of TreeForest: xgboost's predictions without xgboost, and refusing what it cannot do."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets.analytic import AnalyticTarget
from prmodel.train import treeforest
from prmodel.train.artifacts import save_model
from prmodel.train.model import LatencyModel
from prmodel.train.regressors import DEFAULT_PARAMS, build_regressor
from prmodel.train.treeforest import TreeForest, TreeForestError, _UbjReader

xgb = pytest.importorskip("xgboost")

RTOL = 1e-6


def regression_data(
    seed: int, *, rows: int = 300, features: int = 5, nan_share: float = 0.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, (rows, features))
    # Positive everywhere, so gamma, Poisson and squared-log objectives accept it.
    y = (
        3
        + np.sin(x[:, 0])
        + 0.3 * x[:, 1] ** 1.5
        + x[:, 2] * x[:, 3] / 20
        + rng.normal(0, 0.1, rows)
    )
    x[rng.random(x.shape) < nan_share] = np.nan
    return x, y


def fit_and_save(model: Any, tmp_path: Path, fmt: str, seed: int = 0, **fit: Any) -> Path:
    x, y = regression_data(seed, nan_share=0.1)
    model.fit(x, y, **fit)
    path = tmp_path / f"model.{fmt}"
    model.save_model(str(path))
    return path


def probe_rows(seed: int, *, nan_share: float = 0.2) -> npt.NDArray[np.float64]:
    # Beyond the training range too, and exactly on float32 thresholds' neighbourhoods.
    x, _ = regression_data(seed + 1000, rows=400, nan_share=nan_share)
    return np.concatenate([x, x * 1.5 - 2])


def reloaded(path: Path) -> Any:
    model = xgb.XGBRegressor()
    model.load_model(str(path))
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("base_score", [None, 0.5, -3.25, 1e3])
def test_predictions_equal_xgboost(
    tmp_path: Path, seed: int, depth: int, base_score: float | None
) -> None:
    model = xgb.XGBRegressor(
        n_estimators=40,
        max_depth=depth,
        learning_rate=0.2,
        subsample=0.8,
        tree_method="hist",
        base_score=base_score,
        random_state=seed,
    )
    path = fit_and_save(model, tmp_path, "ubj", seed)
    model.save_model(str(tmp_path / "model.json"))
    x = probe_rows(seed)
    expected = reloaded(path).predict(x)
    for saved_as in (path, tmp_path / "model.json"):
        forest = TreeForest.load(saved_as)
        np.testing.assert_allclose(forest.predict(x), expected, rtol=RTOL)
    assert forest.n_features == forest.n_features_in_ == x.shape[1]
    assert forest.n_trees == 40
    assert repr(forest).startswith(f"TreeForest(n_features=5, n_trees=40, max_depth={depth},")


@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_values_on_and_next_to_thresholds_follow_xgboost(tmp_path: Path, fmt: str) -> None:
    # A split sends x left only when x < threshold in float32: probe exactly there.
    model = xgb.XGBRegressor(n_estimators=30, max_depth=6, tree_method="hist")
    path = fit_and_save(model, tmp_path, fmt)
    forest = TreeForest.load(path)
    inner = forest.left != np.arange(len(forest.left))
    columns = []
    for j in range(forest.n_features):
        cuts = forest.threshold[inner & (forest.feature == j)].astype(np.float64)
        below = np.nextafter(cuts.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
        columns.append(np.resize(np.concatenate([cuts, below]), 600))
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.permutation(c) for c in columns])
    np.testing.assert_allclose(forest.predict(x), reloaded(path).predict(x), rtol=RTOL)


@pytest.mark.parametrize("seed", [0, 7])
def test_built_xgboost_regressor_equals_xgboost(tmp_path: Path, seed: int) -> None:
    # Exactly the settings prmodel trains with, on log-scaled features as it does.
    model = build_regressor("xgboost", DEFAULT_PARAMS["xgboost"], seed=seed, n_jobs=1)
    x, y = regression_data(seed)
    model.fit(np.log1p(x), np.log(np.abs(y) + 1))
    path = tmp_path / "model.ubj"
    model.save_model(str(path))
    probe = np.log1p(np.abs(probe_rows(seed, nan_share=0.0)))
    np.testing.assert_allclose(
        TreeForest.load(path).predict(probe), model.predict(probe), rtol=RTOL
    )


def test_latency_model_artifact_equals_its_estimator(tmp_path: Path) -> None:
    target = AnalyticTarget()
    rng = np.random.default_rng(3)
    layers = [
        LayerConfig.create(
            "dense",
            batch=int(rng.integers(1, 5)),
            channels=int(rng.integers(1, 513)),
            out_channels=int(rng.integers(1, 513)),
        )
        for _ in range(200)
    ]
    model = LatencyModel(LayerKind.DENSE, params={"n_estimators": 60})
    model.fit(layers, [target.latency_us(layer) for layer in layers])
    save_model(model, tmp_path, target_id=target.target_id, fingerprint_hash="abc")
    features = np.log1p(model.feature_spec_.transform(layers[:60]))
    forest = TreeForest.load(tmp_path / "model.ubj")
    np.testing.assert_allclose(
        forest.predict(features), model.estimator_.predict(features), rtol=RTOL
    )


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "reg:absoluteerror"},
        {"objective": "reg:pseudohubererror", "huber_slope": 0.5},
        {"objective": "reg:squaredlogerror"},
        {"objective": "reg:quantileerror", "quantile_alpha": 0.8},
        {"num_parallel_tree": 3, "subsample": 0.7, "colsample_bynode": 0.6},
    ],
    ids=["absolute", "huber", "squaredlog", "quantile", "parallel-trees"],
)
def test_other_supported_models_equal_xgboost(tmp_path: Path, params: dict[str, Any]) -> None:
    model = xgb.XGBRegressor(n_estimators=30, max_depth=4, tree_method="hist", **params)
    path = fit_and_save(model, tmp_path, "ubj")
    x = probe_rows(0)
    np.testing.assert_allclose(
        TreeForest.load(path).predict(x), reloaded(path).predict(x), rtol=RTOL
    )


def test_random_forest_regressor_equals_xgboost(tmp_path: Path) -> None:
    path = fit_and_save(xgb.XGBRFRegressor(n_estimators=25, max_depth=5), tmp_path, "ubj")
    x = probe_rows(0)
    forest = TreeForest.load(path)
    assert forest.n_trees == 25
    np.testing.assert_allclose(forest.predict(x), reloaded(path).predict(x), rtol=RTOL)


@pytest.fixture
def early_stopped(tmp_path: Path) -> Path:
    model = xgb.XGBRegressor(
        n_estimators=400, learning_rate=0.3, max_depth=6, early_stopping_rounds=5
    )
    x_val, y_val = regression_data(99, rows=100)
    return fit_and_save(model, tmp_path, "ubj", eval_set=[(x_val, y_val)], verbose=False)


def test_best_iteration_is_used_like_xgbregressor(early_stopped: Path) -> None:
    forest = TreeForest.load(early_stopped)
    expected = reloaded(early_stopped)
    assert forest.best_iteration == expected.best_iteration
    assert forest.best_iteration is not None and forest.best_iteration + 1 < forest.n_trees
    x = probe_rows(0)
    np.testing.assert_allclose(forest.predict(x), expected.predict(x), rtol=RTOL)


@pytest.mark.parametrize("iteration_range", [(0, 1), (0, 3), (2, 5), (0, 10)])
def test_iteration_range_equals_booster(
    early_stopped: Path, iteration_range: tuple[int, int]
) -> None:
    x = probe_rows(0)
    booster = xgb.Booster(model_file=str(early_stopped))
    expected = booster.predict(xgb.DMatrix(x), iteration_range=iteration_range)
    got = TreeForest.load(early_stopped).predict(x, iteration_range=iteration_range)
    np.testing.assert_allclose(got, expected, rtol=RTOL)


@pytest.mark.parametrize("iteration_range", [(0, 10_000), (3, 2), (-1, 2)])
def test_iteration_range_outside_the_model_is_refused(
    early_stopped: Path, iteration_range: tuple[int, int]
) -> None:
    with pytest.raises(TreeForestError, match="iteration range"):
        TreeForest.load(early_stopped).predict(probe_rows(0), iteration_range=iteration_range)


@pytest.mark.parametrize("shape", [(10, 4), (10, 6), (5,), (2, 3, 5)])
def test_rows_of_the_wrong_width_are_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=3), tmp_path, "ubj")
    with pytest.raises(TreeForestError, match="5 features"):
        TreeForest.load(path).predict(np.zeros(shape))


@pytest.mark.parametrize("block_elements", [1, 39, 41, 1000])
def test_predictions_in_blocks_of_rows_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_elements: int
) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=40, max_depth=4), tmp_path, "ubj")
    forest = TreeForest.load(path)
    x = probe_rows(0)[:101]
    whole = forest.predict(x)
    monkeypatch.setattr(treeforest, "_BLOCK_ELEMENTS", block_elements)
    np.testing.assert_array_equal(forest.predict(x), whole)


def test_no_rows_give_no_predictions(tmp_path: Path) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=3), tmp_path, "ubj")
    assert TreeForest.load(path).predict(np.zeros((0, 5))).shape == (0,)


def categorical_model(tmp_path: Path) -> Path:
    x, y = regression_data(0)
    frame = pd.DataFrame(x[:, :2], columns=["a", "b"])
    frame["c"] = pd.Categorical(np.where(x[:, 2] > 5, "big", "small"))
    model = xgb.XGBRegressor(n_estimators=5, tree_method="hist", enable_categorical=True)
    model.fit(frame, y + 3 * (x[:, 2] > 5))
    path = tmp_path / "model.ubj"
    model.save_model(str(path))
    return path


def multi_output_model(tmp_path: Path, strategy: str) -> Path:
    x, y = regression_data(0)
    model = xgb.XGBRegressor(n_estimators=5, tree_method="hist", multi_strategy=strategy)
    model.fit(x, np.column_stack([y, -y]))
    path = tmp_path / "model.ubj"
    model.save_model(str(path))
    return path


def saved(model: Any, tmp_path: Path) -> Path:
    return fit_and_save(model, tmp_path, "ubj")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: saved(xgb.XGBRegressor(n_estimators=5, booster="dart"), p), "'dart' booster"),
        (lambda p: saved(xgb.XGBRegressor(n_estimators=5, booster="gblinear"), p), "gblinear"),
        (lambda p: saved(xgb.XGBRegressor(n_estimators=5, objective="reg:gamma"), p), "link"),
        (lambda p: saved(xgb.XGBRegressor(n_estimators=5, objective="count:poisson"), p), "link"),
        (categorical_model, "categorical splits"),
        (lambda p: multi_output_model(p, "one_output_per_tree"), "2 outputs"),
        (lambda p: multi_output_model(p, "multi_output_tree"), "2 outputs"),
    ],
    ids=["dart", "gblinear", "gamma", "poisson", "categorical", "multi-target", "vector-leaf"],
)
def test_unsupported_models_are_refused_naming_the_file(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(TreeForestError, match=message) as info:
        TreeForest.load(path)
    assert str(path) in str(info.value)


def test_classifier_is_refused(tmp_path: Path) -> None:
    x, y = regression_data(0)
    model = xgb.XGBClassifier(n_estimators=3)
    model.fit(x, (y > np.median(y)).astype(int))
    path = tmp_path / "model.json"
    model.save_model(str(path))
    with pytest.raises(TreeForestError, match="binary:logistic"):
        TreeForest.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable"),
        (b"not a model", "not a readable"),
        (b'{"learner": 1', "not a readable"),
        (b"{L\x00\x00\x00\x00\x00\x00\x00\x07learn", "not a readable"),
        (b'{"version": [3, 2, 0]}', "not a complete"),
        (b"[1, 2]", "not a readable"),
    ],
    ids=["empty", "text", "broken-json", "truncated-ubj", "no-learner", "array"],
)
def test_broken_files_are_refused_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "model.ubj"
    path.write_bytes(content)
    with pytest.raises(TreeForestError, match=message) as info:
        TreeForest.load(path)
    assert str(path) in str(info.value)


def test_truncated_real_model_is_refused(tmp_path: Path) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=5), tmp_path, "ubj")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(TreeForestError, match="not a readable"):
        TreeForest.load(path)


def test_tree_pointing_outside_itself_is_refused(tmp_path: Path) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=2, max_depth=2), tmp_path, "json")
    document = json.loads(path.read_text())
    document["learner"]["gradient_booster"]["model"]["trees"][1]["left_children"][0] = 99
    path.write_text(json.dumps(document))
    with pytest.raises(TreeForestError, match="outside its tree"):
        TreeForest.load(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TreeForestError, match="cannot be read"):
        TreeForest.load(tmp_path / "absent.ubj")


# -- the UBJSON reader ------------------------------------------------------------------------
def as_plain(value: Any) -> Any:
    """JSON-like value with numpy arrays as lists and floats rounded to float32."""
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, list | np.ndarray):
        return [as_plain(v) for v in list(value)]
    if isinstance(value, float | np.floating):
        return float(np.float32(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def test_ubj_reader_reads_what_xgboost_writes_as_json(tmp_path: Path) -> None:
    model = xgb.XGBRegressor(n_estimators=4, max_depth=3)
    fit_and_save(model, tmp_path, "ubj")
    model.save_model(str(tmp_path / "model.json"))
    from_ubj = _UbjReader((tmp_path / "model.ubj").read_bytes()).document()
    from_json = json.loads((tmp_path / "model.json").read_text())
    assert as_plain(from_ubj) == as_plain(from_json)


def key(name: str) -> bytes:
    return b"U" + bytes([len(name)]) + name.encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{" + key("a") + b"i\xff" + b"}", {"a": -1}),
        (b"{" + key("b") + b"I\x01\x00" + key("c") + b"l\x00\x00\x01\x00}", {"b": 256, "c": 256}),
        (b"{" + key("x") + b"D" + struct.pack(">d", 0.1) + b"}", {"x": 0.1}),
        (b"{" + key("s") + b"SU\x03abc" + key("c") + b"Cz}", {"s": "abc", "c": "z"}),
        (
            b"{" + key("t") + b"T" + key("f") + b"F" + key("z") + b"Z}",
            {"t": True, "f": False, "z": None},
        ),
        (b"{" + key("h") + b"HU\x041e-3}", {"h": 1e-3}),
        (b"{N" + key("a") + b"N[U\x01i\x02SU\x01q]}", {"a": [1, 2, "q"]}),
        (b"{" + key("a") + b"[#U\x02U\x05d" + struct.pack(">f", 1.5) + b"}", {"a": [5, 1.5]}),
        (b"{" + key("a") + b"[$I#U\x02\x00\x01\xff\xfe}", {"a": [1, -2]}),
        (b"{" + key("a") + b"[$S#U\x02U\x01xU\x02yz}", {"a": ["x", "yz"]}),
        (b"{$U#U\x02" + key("a") + b"\x07" + key("b") + b"\x08", {"a": 7, "b": 8}),
        (b"{#U\x01" + key("a") + b"{}", {"a": {}}),
    ],
    ids=[
        "int8",
        "int16-int32",
        "float64",
        "string-char",
        "bool-null",
        "high-precision",
        "noop-array",
        "counted-array",
        "typed-int16",
        "typed-strings",
        "typed-object",
        "counted-object",
    ],
)
def test_ubj_reader_reads_the_format(data: bytes, expected: dict[str, Any]) -> None:
    assert as_plain(_UbjReader(data).document()) == as_plain(expected)


@pytest.mark.parametrize(
    "data",
    [b"{" + key("a") + b"X}", b"{" + key("a") + b"[$d" + b"}", b"{}{}", b"{" + key("a") + b"i"],
    ids=["unknown-marker", "typed-without-count", "trailing", "truncated"],
)
def test_ubj_reader_rejects_malformed_data(data: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        _UbjReader(data).document()


def test_module_imports_no_heavy_library(tmp_path: Path) -> None:
    path = fit_and_save(xgb.XGBRegressor(n_estimators=3), tmp_path, "ubj")
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from prmodel.train.treeforest import TreeForest\n"
        f"TreeForest.load({str(path)!r}).predict(np.zeros((3, 5)))\n"
        "heavy = [m for m in ('xgboost', 'sklearn', 'scipy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
