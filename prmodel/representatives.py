"""Performance Representatives: step detection, PR selection and plateau mapping.

The data types here are shared by the selector, the samplers, the feature builder and the
estimator: :class:`ParameterSteps` (what one parameter's staircase looks like and which
values represent its plateaus) and :class:`RepresentativeSet` (all of them for a target).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind


@dataclass(frozen=True)
class ParameterSteps:
    """The step structure of one parameter of one layer kind on one target.

    Plateau ``k`` covers the values ``(b[k-1], b[k]]`` where the boundaries ``b`` are
    ``offset + k * period`` for a regular staircase, or ``breakpoints`` for an irregular
    one. ``representatives`` are the chosen PR values, sorted. Without steps
    (``has_steps`` false) every value is its own plateau.
    """

    kind: LayerKind
    parameter: str
    has_steps: bool
    period: int | None = None
    offset: int = 0
    breakpoints: tuple[int, ...] = ()
    representatives: tuple[int, ...] = ()
    confidence: float = 0.0
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def boundary_at_or_above(self, value: int) -> int:
        """The upper end of the plateau that contains ``value`` (``value`` without steps)."""
        if not self.has_steps or value <= 0:
            return value
        if self.period:
            j = max(self._first_boundary(), math.ceil((value - self.offset) / self.period))
            return self.offset + j * self.period
        for b in self.breakpoints:
            if b >= value:
                return b
        return value

    def plateau_index(self, value: int) -> int:
        """The index of the plateau that contains ``value`` (0 for the first)."""
        if not self.has_steps or value <= 0:
            return 0
        if self.period:
            j = math.ceil((value - self.offset) / self.period)
            return max(j - self._first_boundary(), 0)
        return sum(1 for b in self.breakpoints if b < value)

    def _first_boundary(self) -> int:
        # Boundaries are offset + j * period for j >= 0, counting only positive values.
        return 0 if self.offset >= 1 else 1

    def representative(self, value: int) -> int:
        """The PR value that stands for ``value``'s plateau (its upper end)."""
        return self.boundary_at_or_above(value)


@dataclass(frozen=True)
class RepresentativeSet:
    """The Performance Representatives of every swept parameter on one target."""

    target_id: str
    steps: tuple[ParameterSteps, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def for_kind(self, kind: LayerKind | str) -> dict[str, ParameterSteps]:
        """The parameters of ``kind`` that were analysed, by name."""
        kind = LayerKind(kind)
        return {s.parameter: s for s in self.steps if s.kind is kind}

    def plateau_of(self, layer: LayerConfig) -> LayerConfig:
        """``layer`` with every stepped parameter moved to its plateau's representative.

        Parameters whose rounding would make the layer invalid (for example output
        channels no longer divisible by groups) keep their value.
        """
        rounded = layer
        for name, steps in self.for_kind(layer.kind).items():
            if not steps.has_steps:
                continue
            value = getattr(rounded, name)
            target = steps.representative(value)
            if target != value:
                try:
                    rounded = rounded.with_params(**{name: target})
                except InvalidLayerError:
                    continue
        return rounded
