"""The dimensions of a parameter space: what one parameter may take, and their file schema.

A dimension is a fixed value (:class:`Fixed`), an integer range (:class:`IntRange`), a set of
choices (:class:`Choice`, optionally weighted) or a tie to another parameter (:class:`Tied`);
:class:`Limits` bound a layer's work. :func:`parse_dimension`, :func:`parse_limits` and
:func:`dimension_to_data` read and write them in the YAML schema of
:mod:`prmodel.select.spaces`, which builds layers from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig

SAME = "same"
DEPTHWISE = "depthwise"
GROUP_WIDTH = "width"
"""Prefix of the symbolic groups value ``width<N>``: groups of ``N`` channels each."""


class SpaceError(PrmodelError, ValueError):
    """A parameter space that is malformed, or from which no valid layer can be drawn."""


@dataclass(frozen=True)
class Fixed:
    """A parameter that keeps one value (an integer, ``same`` padding, an activation...)."""

    value: Any


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` inclusive, drawn log-uniformly or uniformly."""

    low: int
    high: int
    log: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high or (self.log and self.low < 1):
            raise SpaceError(f"range [{self.low}, {self.high}] is empty or not positive")

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # Draw in log space over [low, high + 1) so the top value is as likely as its
            # neighbours after flooring.
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return min(int(value), self.high)
        return int(rng.integers(self.low, self.high + 1))

    def contains(self, value: int) -> bool:
        return self.low <= value <= self.high

    def coarse(self, count: int) -> tuple[int, ...]:
        """About ``count`` values spread over the range (log-spaced where ``log``)."""
        if self.log:
            return log_spaced(self.low, self.high, count)
        return tuple(sorted({round(v) for v in np.linspace(self.low, self.high, count)}))


@dataclass(frozen=True)
class Choice:
    """One of a few values (integers, ``same``, ``depthwise``, activations, booleans).

    ``weights`` (one positive number per value, None: all equal) say how often random draws
    take each value; grids and sweeps still visit every value once.
    """

    values: tuple[Any, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.values:
            raise SpaceError("a choice needs at least one value")
        if self.weights is not None and (
            len(self.weights) != len(self.values) or not all(w > 0 for w in self.weights)
        ):
            raise SpaceError(
                f"choice weights must be one positive number per value "
                f"({len(self.values)}), got {list(self.weights)}"
            )

    def shares(self, values: tuple[Any, ...] | None = None) -> npt.NDArray[np.float64]:
        """The probability of each of ``values`` (default: all of them) in a random draw.

        Values outside the choice get the mean weight (a value list that a caller extended).
        """
        values = self.values if values is None else values
        weights = dict(zip(self.values, self.weights or (1.0,) * len(self.values), strict=True))
        mean = float(np.mean(list(weights.values())))
        raw = np.array([weights.get(v, mean) for v in values], dtype=np.float64)
        return raw / raw.sum()

    def sample(self, rng: np.random.Generator) -> Any:
        """One value, drawn by the weights (uniformly where there are none)."""
        if self.weights is None:
            return self.values[int(rng.integers(len(self.values)))]
        return self.values[int(rng.choice(len(self.values), p=self.shares()))]


@dataclass(frozen=True)
class Tied:
    """A parameter that always equals another one (``width`` follows ``height``)."""

    source: str


Dimension = Fixed | IntRange | Choice | Tied


LIMIT_NAMES = ("max_macs", "max_weight_bytes", "max_activation_bytes", "max_reduction")
"""The fields of :class:`Limits`, as a space file names them."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on a layer's work, so that every drawn layer stays affordable to measure.

    ``max_reduction`` bounds :attr:`~prmodel.layers.LayerConfig.reduction` (the GEMM's K):
    a simulator's cost grows with the folds of K over its array, which MACs and bytes leave
    unbounded for a layer with few outputs and a long window.
    """

    max_macs: int | None = None
    max_weight_bytes: int | None = None
    max_activation_bytes: int | None = None
    max_reduction: int | None = None

    def allows(self, layer: LayerConfig) -> bool:
        checks = (
            (self.max_macs, layer.macs),
            (self.max_weight_bytes, layer.weight_bytes),
            (self.max_activation_bytes, layer.activation_bytes),
            (self.max_reduction, layer.reduction),
        )
        return all(limit is None or value <= limit for limit, value in checks)

    def to_dict(self) -> dict[str, int]:
        return {n: int(v) for n in LIMIT_NAMES if (v := getattr(self, n)) is not None}


def group_width(value: Any) -> int | None:
    """``N`` of a ``width<N>`` groups value (N >= 2), None for anything else."""
    if not isinstance(value, str) or not value.startswith(GROUP_WIDTH):
        return None
    digits = value[len(GROUP_WIDTH) :]
    return int(digits) if digits.isdigit() and int(digits) >= 2 else None


def log_spaced(low: int, high: int, count: int) -> tuple[int, ...]:
    """About ``count`` unique integers from ``low`` to ``high``, evenly spaced in log scale."""
    if high <= low:
        return (low,)
    start = max(low, 1)
    values = {round(v) for v in np.geomspace(start, high, max(count, 2))}
    return tuple(sorted(values | {low, high}))


def dimension_to_data(dim: Dimension) -> Any:
    """``dim`` as plain data in the file schema (a value, ``{range}``, ``{choices}``...)."""
    if isinstance(dim, Fixed):
        return dim.value
    if isinstance(dim, IntRange):
        return {"range": [dim.low, dim.high], "scale": "log" if dim.log else "uniform"}
    if isinstance(dim, Choice):
        if dim.weights is None:
            return {"choices": list(dim.values)}
        return {"choices": list(dim.values), "weights": list(dim.weights)}
    return {"same_as": dim.source}


def parse_dimension(where: str, spec: Any) -> Dimension:
    """The dimension that ``spec`` writes in the file schema (``where`` opens errors).

    Raises:
        SpaceError: a malformed spec.
    """
    if isinstance(spec, int | str | bool) or spec is None:
        return Fixed(spec)
    if not isinstance(spec, dict) or len(spec) - ("scale" in spec) - ("weights" in spec) != 1:
        raise SpaceError(
            f"{where} must be a value, {{range: [lo, hi]}}, {{choices}} or {{same_as}}"
        )
    if "weights" in spec and "choices" not in spec:
        raise SpaceError(f"{where}: weights belong to a list of choices")
    if "range" in spec:
        bounds = spec["range"]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_int(b) for b in bounds)):
            raise SpaceError(f"{where}: range must be [low, high] integers, got {bounds!r}")
        scale = spec.get("scale", "log")
        if scale not in ("log", "uniform"):
            raise SpaceError(f"{where}: scale must be log or uniform, got {scale!r}")
        try:
            return IntRange(bounds[0], bounds[1], log=scale == "log")
        except SpaceError as exc:
            raise SpaceError(f"{where}: {exc}") from None
    if "choices" in spec:
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: choices must be a non-empty list, got {values!r}")
        weights = spec.get("weights")
        if weights is None:
            return Choice(tuple(values))
        if not isinstance(weights, list) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in weights
        ):
            raise SpaceError(f"{where}: weights must be a list of numbers, got {weights!r}")
        try:
            return Choice(tuple(values), tuple(float(w) for w in weights))
        except SpaceError as exc:
            raise SpaceError(f"{where}: {exc}") from None
    if "same_as" in spec:
        return Tied(str(spec["same_as"]))
    raise SpaceError(f"{where}: unknown form {sorted(spec)[0]!r}")


def parse_limits(where: str, data: Any) -> Limits:
    """The limits of a space's ``limits`` field (``where`` opens errors).

    Raises:
        SpaceError: an unknown limit or one that is not a positive integer.
    """
    if not isinstance(data, dict) or set(data) - set(LIMIT_NAMES):
        raise SpaceError(f"{where}: field 'limits' may only hold {', '.join(LIMIT_NAMES)}")
    for name, value in data.items():
        if not _is_int(value) or value < 1:
            raise SpaceError(f"{where}: limit {name} must be a positive integer, got {value!r}")
    return Limits(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = [
    "DEPTHWISE",
    "GROUP_WIDTH",
    "LIMIT_NAMES",
    "SAME",
    "Choice",
    "Dimension",
    "Fixed",
    "IntRange",
    "Limits",
    "SpaceError",
    "Tied",
    "dimension_to_data",
    "group_width",
    "log_spaced",
    "parse_dimension",
    "parse_limits",
]
