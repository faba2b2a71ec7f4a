"""The regressors a :class:`~prmodel.train.model.LatencyModel` can be built on.

Their names (:data:`REGRESSORS`), the hyper-parameters used where none are given
(:data:`DEFAULT_PARAMS`, which Optuna searches around), :func:`build_regressor` that makes a
fresh, unfitted one, and :func:`thread_limit` that keeps their thread pools to the threads
asked for. The libraries behind them (xgboost, scikit-learn) are imported only when one is
built: the estimator imports this module through the model, and ``prmodel estimate``
predicts without either library (see :mod:`prmodel.train.treeforest`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from threadpoolctl import threadpool_limits

from prmodel.errors import PrmodelError

REGRESSORS: tuple[str, ...] = (
    "xgboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "knn",
    "ridge",
)
"""Every regressor a latency model can use; ``xgboost`` is the default."""

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "n_estimators": 600,
        "max_depth": 6,
        "learning_rate": 0.05,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "min_child_weight": 1.0,
        "reg_lambda": 1.0,
    },
    "random_forest": {"n_estimators": 300, "max_features": 0.6, "min_samples_leaf": 1},
    "extra_trees": {"n_estimators": 300, "max_features": 0.8, "min_samples_leaf": 1},
    "hist_gradient_boosting": {
        "max_iter": 500,
        "learning_rate": 0.05,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 5,
        "l2_regularization": 1e-3,
    },
    "knn": {"n_neighbors": 5, "weights": "distance", "p": 2},
    "ridge": {"alpha": 1.0},
}
"""Hyper-parameters used where none are given (Optuna searches around these)."""


class ModelError(PrmodelError, ValueError):
    """A model that cannot be trained, saved or loaded as asked (one sentence says why).

    Defined here, at the bottom of the train stage, because an unknown regressor is the
    first thing that can be wrong; :mod:`prmodel.train.model` exports it too.
    """


def unknown_regressor(name: str) -> ModelError:
    """The error for a regressor name that is not one of :data:`REGRESSORS`."""
    return ModelError(f"unknown regressor {name!r} (choose from {', '.join(REGRESSORS)})")


def build_regressor(name: str, params: Mapping[str, Any], *, seed: int, n_jobs: int) -> Any:
    """A fresh, unfitted regressor ``name`` with ``params``; features arrive log1p-scaled.

    k-nearest neighbours and ridge get a standard scaler in front, since both depend on
    the scale of each feature; the tree ensembles do not.

    Args:
        name: One of :data:`REGRESSORS`.
        params: Its hyper-parameters (complete: defaults are not filled in here).
        seed: Random state of the regressors that draw random numbers.
        n_jobs: Threads the regressor may use.

    Raises:
        ModelError: an unknown regressor or a hyper-parameter it does not take.
    """
    if name not in _BUILDERS:
        raise unknown_regressor(name)
    try:
        return _BUILDERS[name](dict(params), seed, n_jobs)
    except TypeError as exc:
        raise ModelError(f"regressor {name!r} does not accept these settings ({exc})") from None


@contextmanager
def thread_limit(n_jobs: int) -> Iterator[None]:
    """Keep OpenMP and BLAS thread pools to ``n_jobs`` threads (at least one) inside.

    Histogram gradient boosting (and BLAS under ridge) use every core by default; on a
    shared machine that is slower and makes timings depend on the neighbours.
    """
    with threadpool_limits(limits=max(n_jobs, 1)):
        yield


# Each builder imports its library itself: this module is on the `prmodel estimate` import
# path (through LatencyModel), which must not pay for xgboost or scikit-learn.
def _xgboost(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from xgboost import XGBRegressor  # heavy: only when an xgboost model is built

    return XGBRegressor(**params, tree_method="hist", n_jobs=n_jobs, random_state=seed, verbosity=0)


def _random_forest(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor  # heavy: only when built

    return RandomForestRegressor(**params, random_state=seed, n_jobs=n_jobs)


def _extra_trees(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import ExtraTreesRegressor  # heavy: only when built

    return ExtraTreesRegressor(**params, random_state=seed, n_jobs=n_jobs)


def _hist_gradient_boosting(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor  # heavy: only when built

    # No early stopping: it would hold out a random 10 % and make small fits unstable.
    return HistGradientBoostingRegressor(**params, random_state=seed, early_stopping=False)


def _knn(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    # heavy: only when built
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsRegressor(**params, n_jobs=n_jobs))


def _ridge(params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    # heavy: only when built
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(**params))


_BUILDERS: dict[str, Callable[[dict[str, Any], int, int], Any]] = {
    "xgboost": _xgboost,
    "random_forest": _random_forest,
    "extra_trees": _extra_trees,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "knn": _knn,
    "ridge": _ridge,
}

__all__ = [
    "DEFAULT_PARAMS",
    "REGRESSORS",
    "ModelError",
    "build_regressor",
    "thread_limit",
    "unknown_regressor",
]
