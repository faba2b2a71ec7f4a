"""Shared test data for the model and training tests: the analytic target and its dense PRs."""

from __future__ import annotations

from prmodel.layers import LayerKind
from prmodel.representatives import ParameterSteps, RepresentativeSet
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
