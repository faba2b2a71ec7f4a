"""Features of a layer for the latency regressor: raw, derived and architecture-aware columns.

A :class:`FeatureSpec` fixes, for one layer kind and one set of Performance Representatives,
the ordered feature names (the schema written into the model card) and turns layers into a
feature matrix:

- the kind's raw parameters (``batch``, ``channels``, ...);
- for conv and dense, the fused activation (one column per activation) and, for conv, the
  fused residual add;
- derived work and traffic: output size, MACs, weight/activation/total bytes and arithmetic
  intensity (MACs per byte);
- from the PR set, for every parameter with a staircase: its plateau index, the value rounded
  up to the plateau's representative, the number of blocks and the fill of the last block
  (ANNETTE's efficiency factor ``n / (ceil(n/p)·p)``), plus the MACs of the layer with every
  stepped dimension rounded, the resulting overall efficiency and the rounded MACs per byte
  (which side of the roofline the padded kernel sits on).

The spec serialises to JSON with the step structure it needs, so a saved model rebuilds
exactly the same features without the PR file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.layers import ACTIVATIONS, FUSIBLE_KINDS, PARAMETERS, LayerConfig, LayerKind
from prmodel.representatives import ParameterSteps, RepresentativeSet

_WINDOWED = (LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.AVGPOOL)

_DERIVED: dict[str, Callable[[LayerConfig], float]] = {
    "output_elements": lambda layer: float(math.prod(layer.output_shape)),
    "macs": lambda layer: float(layer.macs),
    "weight_bytes": lambda layer: float(layer.weight_bytes),
    "activation_bytes": lambda layer: float(layer.activation_bytes),
    "total_bytes": lambda layer: float(layer.weight_bytes + layer.activation_bytes),
    "intensity": lambda layer: layer.macs / (layer.weight_bytes + layer.activation_bytes),
}


class FeatureError(ValueError):
    """A layer whose kind does not match the feature spec (a programming error)."""


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features of one layer kind, optionally aware of its PR step structure.

    Build it with :meth:`for_kind`; ``steps`` holds only the parameters of ``kind`` that
    have a staircase, in the kind's canonical parameter order.
    """

    kind: LayerKind
    steps: tuple[ParameterSteps, ...] = ()

    @classmethod
    def for_kind(
        cls, kind: LayerKind | str, representatives: RepresentativeSet | None = None
    ) -> FeatureSpec:
        """The spec of ``kind``, using the stepped parameters of ``representatives`` if given."""
        kind = LayerKind(kind)
        if representatives is None:
            return cls(kind)
        analysed = representatives.for_kind(kind)
        stepped = tuple(
            analysed[name]
            for name in PARAMETERS[kind]
            if name in analysed and analysed[name].has_steps
        )
        return cls(kind, stepped)

    # -- schema -------------------------------------------------------------------------------
    @property
    def raw_parameters(self) -> tuple[str, ...]:
        """The inputs the user controls: the kind's parameters and fused flags."""
        return (*PARAMETERS[self.kind], *self._fused_names())

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature name, in column order (the model card's feature schema)."""
        names = [*self.raw_parameters]
        if self.kind in _WINDOWED:
            names += ["output_height", "output_width"]
        if self.kind is LayerKind.CONV:
            names.append("group_channels")
        names += list(_DERIVED)
        for steps in self.steps:
            p = steps.parameter
            names += [f"{p}_plateau", f"{p}_rounded", f"{p}_blocks", f"{p}_fill"]
        if self.steps:
            names += ["macs_rounded", "rounded_efficiency", "rounded_intensity"]
        return tuple(names)

    def _fused_names(self) -> tuple[str, ...]:
        if self.kind not in FUSIBLE_KINDS:
            return ()
        names = tuple(f"act_{act}" for act in ACTIVATIONS)
        return (*names, "residual") if self.kind is LayerKind.CONV else names

    # -- transformation -----------------------------------------------------------------------
    def transform(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        """The feature matrix of ``layers``: one row per layer, columns as :attr:`names`.

        Raises:
            FeatureError: a layer of another kind than the spec's.
        """
        width = len(self.names)
        matrix = np.empty((len(layers), width), dtype=np.float64)
        rounder = RepresentativeSet(target_id="", steps=self.steps) if self.steps else None
        for i, layer in enumerate(layers):
            if layer.kind is not self.kind:
                raise FeatureError(f"a {layer.kind.value} layer given to the {self.kind} features")
            matrix[i] = self._row(layer, rounder)
        return matrix

    def frame(self, layers: Sequence[LayerConfig]) -> pd.DataFrame:
        """:meth:`transform` as a DataFrame with named columns (for plots and reports)."""
        return pd.DataFrame(self.transform(layers), columns=list(self.names))

    def _row(self, layer: LayerConfig, rounder: RepresentativeSet | None) -> list[float]:
        row = [float(v) for v in layer.params().values()]
        if self.kind in FUSIBLE_KINDS:
            row += [float(layer.activation == act) for act in ACTIVATIONS]
            if self.kind is LayerKind.CONV:
                row.append(float(layer.residual))
        if self.kind in _WINDOWED:
            row += [float(layer.output_height), float(layer.output_width)]
        if self.kind is LayerKind.CONV:
            row.append(float(layer.channels // layer.groups))
        row += [derive(layer) for derive in _DERIVED.values()]
        for steps in self.steps:
            row += _step_features(steps, getattr(layer, steps.parameter))
        if rounder is not None:
            rounded_macs = float(rounder.plateau_of(layer).macs)
            total_bytes = layer.weight_bytes + layer.activation_bytes
            row += [rounded_macs, layer.macs / rounded_macs, rounded_macs / total_bytes]
        return row

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, with the step structure needed to rebuild the features."""
        return {
            "kind": self.kind.value,
            "names": list(self.names),
            "steps": [_steps_to_dict(s) for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict` (the ``names`` entry is checked by the caller)."""
        kind = LayerKind(data["kind"])
        return cls(kind, tuple(_steps_from_dict(kind, s) for s in data.get("steps", ())))


def _step_features(steps: ParameterSteps, value: int) -> list[float]:
    rounded = steps.representative(value)
    if steps.period:
        blocks = math.ceil((rounded - steps.offset) / steps.period)
    else:
        blocks = steps.plateau_index(value) + 1
    return [float(steps.plateau_index(value)), float(rounded), float(blocks), value / rounded]


def _steps_to_dict(steps: ParameterSteps) -> dict[str, Any]:
    return {
        "parameter": steps.parameter,
        "has_steps": steps.has_steps,
        "period": steps.period,
        "offset": steps.offset,
        "breakpoints": list(steps.breakpoints),
        "representatives": list(steps.representatives),
        "start": steps.start,
    }


def _steps_from_dict(kind: LayerKind, data: Mapping[str, Any]) -> ParameterSteps:
    return ParameterSteps(
        kind=kind,
        parameter=str(data["parameter"]),
        has_steps=bool(data["has_steps"]),
        period=None if data.get("period") is None else int(data["period"]),
        offset=int(data.get("offset", 0)),
        breakpoints=tuple(int(b) for b in data.get("breakpoints", ())),
        representatives=tuple(int(r) for r in data.get("representatives", ())),
        start=int(data.get("start", 0)),
    )


__all__ = ["FeatureError", "FeatureSpec"]
