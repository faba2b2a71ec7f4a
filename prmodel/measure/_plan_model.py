"""A sweep plan and the layers it expands to (its YAML form: :mod:`prmodel.measure.plans`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Literal

import numpy as np

from prmodel.errors import PrmodelError
from prmodel.layers import PARAMETERS, SHORTHANDS, InvalidLayerError, LayerConfig, LayerKind

Mode = Literal["sweep", "grid", "random", "points"]
MODES: tuple[Mode, ...] = ("sweep", "grid", "random", "points")
_RANDOM_ATTEMPTS_PER_POINT = 200

DEFAULT_MAX_POINTS = 50_000
"""The most points a plan (or one sweep) may have unless the user confirms a larger one: on a
CPU target that is several hours of measuring."""


class PlanError(PrmodelError, ValueError):
    """A sweep plan that cannot be read: the message names the file, plan and field."""


class PlanTooLargeError(PlanError):
    """A plan with more points than the limit, found by counting before building them."""

    def __init__(self, where: str, points: int, limit: int, *, duration: str = "") -> None:
        self.where = where
        self.points = points
        self.limit = limit
        took = f" ({duration})" if duration else ""
        super().__init__(
            f"{where} has {points:,} points{took}, more than the limit of {limit:,}; make it "
            f"smaller, or confirm with --max-points {points} (or --yes)"
        )


@dataclass(frozen=True)
class RandomSpec:
    """``count`` layers drawn with ``seed``: integers uniform in ``ranges``, or ``choices``."""

    count: int
    seed: int = 0
    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    choices: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPlan:
    """A named set of layers of one kind to benchmark (see the module docstring).

    Exactly one of ``sweep`` (one parameter), ``grid``, ``random`` or ``points`` is set.
    Parameter names are kept as written (a shorthand like ``kernel`` moves both axes).
    """

    name: str
    kind: LayerKind
    fixed: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, tuple[int, ...]] | None = None
    grid: Mapping[str, tuple[int, ...]] | None = None
    random: RandomSpec | None = None
    points: tuple[Mapping[str, Any], ...] | None = None
    activation: str | None = None
    residual: bool = False
    skip_invalid: bool = False
    description: str = ""
    made_for: Mapping[str, Any] | None = field(default=None, compare=False)
    """The target the plan file was drawn for (``target_id`` and ``fingerprint``), where the
    file names one (``target:`` beside ``plans:``): sweeping it elsewhere is refused."""

    def __post_init__(self) -> None:
        modes = [m for m in MODES if getattr(self, m) is not None]
        if len(modes) != 1:
            raise PlanError(
                f"plan {self.name!r}: needs exactly one of {', '.join(MODES)}, "
                f"got {', '.join(modes) or 'none'}"
            )
        if self.sweep is not None and len(self.sweep) != 1:
            raise PlanError(f"plan {self.name!r}: field 'sweep' must name exactly one parameter")

    @property
    def mode(self) -> Mode:
        """Which of sweep, grid, random or points this plan uses."""
        return next(m for m in MODES if getattr(self, m) is not None)

    @property
    def point_count(self) -> int:
        """How many points the plan asks for, counted without building them (duplicates
        and skipped invalid points included, so :meth:`layers` may return fewer)."""
        if self.points is not None:
            return len(self.points)
        if self.random is not None:
            return self.random.count
        axes = self.sweep if self.sweep is not None else self.grid
        assert axes is not None
        return math.prod(len(values) for values in axes.values())

    @property
    def swept_parameter(self) -> str | None:
        """The parameter of a 1-D sweep as written (``kernel`` moves both kernel axes)."""
        return next(iter(self.sweep)) if self.sweep is not None else None

    def layers(self) -> list[LayerConfig]:
        """Every layer of the plan, in plan order, without duplicates.

        Raises:
            PlanError: a point that is not a valid layer (unless ``skip_invalid``), or a
                random space that yields too few valid layers.
        """
        if self.random is not None:
            return self._random_layers(self.random)
        unique: dict[str, LayerConfig] = {}
        for params in self._point_params():
            layer = self._layer(params)
            if layer is not None:
                unique.setdefault(layer.key, layer)
        return list(unique.values())

    def sweep_points(self) -> list[tuple[int, LayerConfig]]:
        """A 1-D sweep's ``(value, layer)`` pairs in sweep order (invalid ones skipped if
        ``skip_invalid``).

        Raises:
            PlanError: the plan is not a 1-D sweep, or a point is invalid.
        """
        if self.sweep is None:
            raise PlanError(f"plan {self.name!r}: is a {self.mode} plan, not a 1-D sweep")
        ((name, values),) = self.sweep.items()
        pairs = []
        for value in values:
            layer = self._layer({name: value})
            if layer is not None:
                pairs.append((value, layer))
        return pairs

    def _base(self) -> dict[str, Any]:
        base = dict(self.fixed)
        if self.activation is not None:
            base["activation"] = self.activation
        if self.residual:
            base["residual"] = True
        return base

    def _point_params(self) -> Iterator[dict[str, Any]]:
        if self.points is not None:
            yield from (dict(point) for point in self.points)
            return
        axes = self.sweep if self.sweep is not None else self.grid
        assert axes is not None
        names = list(axes)
        for values in product(*(axes[n] for n in names)):
            yield dict(zip(names, values, strict=True))

    def _layer(self, point: Mapping[str, Any]) -> LayerConfig | None:
        try:
            return LayerConfig.create(self.kind, **{**self._base(), **point})
        except InvalidLayerError as exc:
            if self.skip_invalid:
                return None
            text = ", ".join(f"{k}={v}" for k, v in point.items())
            raise PlanError(
                f"plan {self.name!r}: point {text} is not a valid layer ({exc}); set "
                "'skip_invalid: true' to skip such points"
            ) from None

    def _random_layers(self, spec: RandomSpec) -> list[LayerConfig]:
        rng = np.random.default_rng(spec.seed)
        base = self._base()
        unique: dict[str, LayerConfig] = {}
        for _ in range(spec.count * _RANDOM_ATTEMPTS_PER_POINT):
            if len(unique) == spec.count:
                break
            draw = {name: int(rng.integers(lo, hi + 1)) for name, (lo, hi) in spec.ranges.items()}
            draw.update({name: int(rng.choice(vals)) for name, vals in spec.choices.items()})
            try:
                layer = LayerConfig.create(self.kind, **{**base, **draw})
            except InvalidLayerError:
                continue  # invalid draws are redrawn: the space is a box, valid layers are not
            unique.setdefault(layer.key, layer)
        if len(unique) < spec.count:
            raise PlanError(
                f"plan {self.name!r}: field 'random' yields only {len(unique)} distinct valid "
                f"layers of the {spec.count} asked for"
            )
        return list(unique.values())


def numeric_parameters(kind: LayerKind) -> tuple[str, ...]:
    """The integer parameters a plan may set for ``kind``, including square shorthands."""
    names = PARAMETERS[kind]
    shorthands = tuple(s for s, (h, w) in SHORTHANDS.items() if h in names and w in names)
    return (*names, *shorthands)


def geometric_values(lo: int, hi: int, n: int) -> tuple[int, ...]:
    """``n`` log-spaced integers from ``lo`` to ``hi`` (rounded; duplicates dropped)."""
    raw = np.rint(np.geomspace(lo, hi, n)).astype(int)
    return tuple(int(v) for v in np.unique(raw))


def plan_from_layers(
    name: str, layers: Sequence[LayerConfig], *, description: str = ""
) -> SweepPlan:
    """A points plan holding exactly ``layers`` (parameters they share go to ``fixed``).

    Raises:
        PlanError: no layers, or layers of more than one kind.
    """
    if not layers:
        raise PlanError(f"plan {name!r}: has no layers")
    kinds = {layer.kind for layer in layers}
    if len(kinds) != 1:
        found = ", ".join(sorted(k.value for k in kinds))
        raise PlanError(f"plan {name!r}: layers must all be of one kind, got {found}")
    dicts = [layer.to_dict() for layer in layers]
    for d in dicts:
        d.pop("kind")
        d.setdefault("activation", None)
        d.setdefault("residual", False)
    shared = {k: v for k, v in dicts[0].items() if all(d[k] == v for d in dicts)}
    points = tuple(_point_dict(d, shared) for d in dicts)
    activation = shared.pop("activation", None)
    residual = bool(shared.pop("residual", False))
    return SweepPlan(
        name=name,
        kind=kinds.pop(),
        fixed=shared,
        points=points,
        activation=activation,
        residual=residual,
        description=description,
    )


def _point_dict(params: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    point = {k: v for k, v in params.items() if k not in shared}
    if point.get("activation", "") is None:
        del point["activation"]
    if point.get("residual") is False:
        del point["residual"]
    return point
