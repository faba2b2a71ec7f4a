"""Shared test data for the model and training tests: the analytic target, its dense PRs,
random dense layers."""

from __future__ import annotations

import numpy as np

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets.analytic import AnalyticTarget

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
