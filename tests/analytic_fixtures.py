"""Shared test data for the model, artifact and training tests: the analytic target, its
dense PRs, random dense layers and a quickly fitted dense model."""

from __future__ import annotations

import numpy as np

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets.analytic import AnalyticTarget
from prmodel.train.model import LatencyModel

TARGET = AnalyticTarget()
PR = RepresentativeSet(
    TARGET.target_id,
    (
        ParameterSteps(LayerKind.DENSE, "out_channels", True, period=16),
        ParameterSteps(LayerKind.DENSE, "channels", True, period=8),
    ),
)
"""The analytic target's dense staircases (its default blocks: 16 outputs, 8 inputs)."""


def random_dense(n: int, seed: int, *, low: int = 1, high: int = 512) -> list[LayerConfig]:
    """``n`` seeded dense layers, 1-4 rows, widths between ``low`` and ``high``."""
    rng = np.random.default_rng(seed)
    return [
        LayerConfig.create(
            "dense",
            batch=int(rng.integers(1, 5)),
            channels=int(rng.integers(low, high + 1)),
            out_channels=int(rng.integers(low, high + 1)),
        )
        for _ in range(n)
    ]


FAST_PARAMS: dict[str, dict[str, int]] = {
    "xgboost": {"n_estimators": 80},
    "random_forest": {"n_estimators": 20},
    "extra_trees": {"n_estimators": 20},
    "hist_gradient_boosting": {"max_iter": 40},
    "knn": {},
    "ridge": {},
}
"""Small, fast settings per regressor: the tests check behaviour, not the best accuracy."""


def latencies(layers: list[LayerConfig]) -> list[float]:
    """The analytic target's latency of each layer (exact, no noise)."""
    return [TARGET.latency_us(layer) for layer in layers]


def fitted(regressor: str = "xgboost", n: int = 300, seed: int = 0) -> LatencyModel:
    """A dense model with the PR features, fitted on ``n`` seeded random layers."""
    train = random_dense(n, seed)
    model = LatencyModel(
        "dense", regressor=regressor, params=FAST_PARAMS[regressor], representatives=PR
    )
    return model.fit(train, latencies(train))
