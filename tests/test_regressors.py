"""Tests of the regressor catalogue: every regressor builds and fits, bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from prmodel.train.regressors import (
    DEFAULT_PARAMS,
    REGRESSORS,
    ModelError,
    build_regressor,
    thread_limit,
)


def test_every_regressor_has_defaults() -> None:
    assert set(DEFAULT_PARAMS) == set(REGRESSORS)


@pytest.mark.parametrize("regressor", REGRESSORS)
def test_every_regressor_builds_with_its_defaults_and_fits(regressor: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5, (60, 3))
    y = x[:, 0] + 2 * x[:, 1]
    model = build_regressor(regressor, DEFAULT_PARAMS[regressor], seed=0, n_jobs=1)
    model.fit(x, y)
    assert model.predict(x).shape == (60,)
    again = build_regressor(regressor, DEFAULT_PARAMS[regressor], seed=0, n_jobs=1).fit(x, y)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))  # seeded


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("svm", {}, "unknown regressor 'svm' \\(choose from xgboost, "),
        ("ridge", {"depth": 3}, "regressor 'ridge' does not accept these settings"),
        ("random_forest", {"alpha": 1.0}, "regressor 'random_forest' does not accept"),
    ],
)
def test_bad_settings_are_refused(name: str, params: dict[str, float], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_regressor(name, params, seed=0, n_jobs=1)


def test_thread_limit_caps_the_pools_inside_only() -> None:
    before = [pool["num_threads"] for pool in threadpool_info()]
    assert before, "numpy's BLAS is expected to be a thread pool"
    with thread_limit(0):  # at least one thread
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert [pool["num_threads"] for pool in threadpool_info()] == before
