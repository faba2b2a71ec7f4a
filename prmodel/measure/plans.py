"""Sweep plans: which layers to benchmark, as YAML files in ``sweeps/``, validated on load.

A file holds one plan or ``plans: [...]``. A plan has a ``name``, a layer ``kind``, ``fixed``
base parameters (shorthands ``kernel``/``stride``/``padding``/``dilation`` allowed), optional
``activation``/``residual``/``description``/``skip_invalid``, and exactly one mode::

    name: conv_out_channels
    kind: conv
    fixed: {channels: 64, height: 56, width: 56, kernel: 3, padding: 1}
    sweep: {out_channels: {start: 1, stop: 256}}          # 1-D: exactly one parameter

    grid: {out_channels: [16, 32], kernel: [1, 3]}          # every combination
    random: {count: 50, seed: 0, space: {channels: [1, 512], kernel: [1, 3, 5, 7]}}
    points: [{out_channels: 17}, {out_channels: 33, kernel: 1}]

Values are a list of integers, ``{start, stop, step}`` (inclusive ``stop``, ``step``
default 1) or ``{geom: [lo, hi, n]}`` (``n`` log-spaced integers, duplicates dropped).
In a ``random`` space a two-element list ``[lo, hi]`` is an inclusive range and any other
value (a longer list, ``{choices: [...]}``, ``{start, ...}``, ``{geom: ...}``) a set of
choices. A point that is not a valid layer is an error naming it, unless the plan sets
``skip_invalid: true``; random draws that are invalid are drawn again.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise, product
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from prmodel.errors import PrmodelError
from prmodel.layers import (
    ACTIVATIONS,
    FUSIBLE_KINDS,
    PARAMETERS,
    SHORTHANDS,
    InvalidLayerError,
    LayerConfig,
    LayerKind,
)
from prmodel.workspace import Workspace

Mode = Literal["sweep", "grid", "random", "points"]
MODES: tuple[Mode, ...] = ("sweep", "grid", "random", "points")
_PLAN_FIELDS = ("name", "kind", "description", "fixed", "activation", "residual", "skip_invalid")
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


# -- loading ----------------------------------------------------------------------------------
def load_plans(path: str | Path, *, max_points: int | None = DEFAULT_MAX_POINTS) -> list[SweepPlan]:
    """Read and validate the plans of a YAML file (or of every ``*.yaml`` in a folder).

    Args:
        path: The file or folder.
        max_points: Refuse a plan of more points (None: no limit). Points are counted
            before any is built, so a plan of millions is refused at once.

    Raises:
        PlanError: an unreadable file or an invalid plan, naming the file, plan and field.
        PlanTooLargeError: a plan of more than ``max_points`` points.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.yaml"))
        if not files:
            raise PlanError(f"{path}: the folder holds no plan files (*.yaml)")
        plans = [p for f in files for p in load_plans(f, max_points=max_points)]
        _check_unique_names(plans, str(path))
        return plans
    data = _read_yaml(path)
    made_for = None
    if isinstance(data, Mapping) and "plans" in data:
        extra = sorted(set(data) - {"plans", "target"})
        if extra:
            raise PlanError(f"{path}: unknown top-level field {extra[0]!r} next to 'plans'")
        made_for = _made_for(data.get("target"), path)
        entries = data["plans"]
        if not isinstance(entries, list) or not entries:
            raise PlanError(f"{path}: field 'plans' must be a non-empty list of plans")
    elif isinstance(data, Mapping):
        entries = [data]
    else:
        raise PlanError(f"{path}: must hold one plan (a mapping) or 'plans: [...]'")
    plans = [_parse_plan(entry, path, i, max_points) for i, entry in enumerate(entries)]
    if made_for is not None:
        plans = [replace(plan, made_for=made_for) for plan in plans]
    _check_unique_names(plans, str(path))
    for plan in plans:
        if max_points is not None and plan.point_count > max_points:
            raise PlanTooLargeError(f"{path}: plan {plan.name!r}", plan.point_count, max_points)
        try:
            plan.layers()
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from None
    return plans


def _made_for(data: Any, path: Path) -> Mapping[str, Any] | None:
    if data is None:
        return None
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("target_id"), str)
        or not isinstance(data.get("fingerprint"), Mapping)
    ):
        raise PlanError(f"{path}: field 'target' must hold a target_id and a fingerprint mapping")
    return {"target_id": data["target_id"], "fingerprint": dict(data["fingerprint"])}


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise PlanError(f"{path}: is a folder, not a plan file") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"{path}: is not a UTF-8 text file (byte {exc.start}); a plan is YAML text"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PlanError(f"{path}: is not valid YAML{where} ({problem})") from None


def _check_unique_names(plans: Sequence[SweepPlan], where: str) -> None:
    seen: set[str] = set()
    for plan in plans:
        if plan.name in seen:
            raise PlanError(f"{where}: plan name {plan.name!r} is used twice")
        seen.add(plan.name)


def _parse_plan(entry: Any, path: Path, index: int, max_points: int | None) -> SweepPlan:
    if not isinstance(entry, Mapping):
        raise PlanError(f"{path}: plan #{index + 1} must be a mapping of fields")
    name = entry.get("name")
    label = f"plan {name!r}" if isinstance(name, str) and name else f"plan #{index + 1}"
    parser = _PlanParser(f"{path}: {label}", max_points=max_points)
    return parser.parse(entry)


class _PlanParser:
    """Turns one plan mapping into a SweepPlan; every error names ``where`` and the field."""

    def __init__(self, where: str, *, max_points: int | None = None) -> None:
        self.where = where
        self.max_points = max_points

    def count(self, points: int) -> None:
        """Refuse an axis or a count beyond the limit before it is built."""
        if self.max_points is not None and points > self.max_points:
            raise PlanTooLargeError(self.where, points, self.max_points)

    def fail(self, field_name: str, problem: str) -> PlanError:
        return PlanError(f"{self.where}: field {field_name!r} {problem}")

    def parse(self, entry: Mapping[str, Any]) -> SweepPlan:
        unknown = sorted(set(entry) - set(_PLAN_FIELDS) - set(MODES))
        if unknown:
            known = ", ".join((*_PLAN_FIELDS, *MODES))
            raise self.fail(unknown[0], f"is not a plan field (fields: {known})")
        for required in ("name", "kind"):
            if required not in entry:
                raise self.fail(required, "is missing")
        modes = [m for m in MODES if m in entry]
        if len(modes) != 1:
            got = f"got {' and '.join(modes)}" if modes else "got none"
            raise PlanError(f"{self.where}: needs exactly one of {', '.join(MODES)} ({got})")
        kind = self.kind(entry["kind"])
        mode = modes[0]
        return SweepPlan(
            name=self.text(entry, "name"),
            kind=kind,
            fixed=self.fixed(kind, entry.get("fixed", {})),
            activation=self.activation(kind, entry.get("activation")),
            residual=self.flag(entry, "residual"),
            skip_invalid=self.flag(entry, "skip_invalid"),
            description=self.text(entry, "description", default=""),
            **{mode: self.mode_value(kind, mode, entry[mode])},
        )

    # -- scalar fields ---------------------------------------------------------------------
    def text(self, entry: Mapping[str, Any], name: str, default: str | None = None) -> str:
        value = entry.get(name, default)
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        return value

    def flag(self, entry: Mapping[str, Any], name: str) -> bool:
        value = entry.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def kind(self, value: Any) -> LayerKind:
        try:
            return LayerKind(str(value).lower())
        except ValueError:
            known = ", ".join(k.value for k in LayerKind)
            raise self.fail(
                "kind", f"names unknown layer kind {value!r} (known: {known})"
            ) from None

    def activation(self, kind: LayerKind, value: Any) -> str | None:
        if value is None:
            return None
        if kind not in FUSIBLE_KINDS:
            raise self.fail("activation", f"does not apply to a {kind.value} layer")
        if not isinstance(value, str) or value.lower() not in ACTIVATIONS:
            raise self.fail("activation", f"must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
        return value.lower()

    def fixed(self, kind: LayerKind, value: Any, field_name: str = "fixed") -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(field_name, f"must be a mapping of parameter: value, got {value!r}")
        fixed: dict[str, Any] = {}
        for name, item in value.items():
            if name in ("activation", "residual"):
                fixed[name] = item
                continue
            self.parameter(field_name, kind, name)
            fixed[name] = self.integer(f"{field_name}.{name}", item)
        return fixed

    def parameter(self, field_name: str, kind: LayerKind, name: Any) -> str:
        allowed = numeric_parameters(kind)
        if name not in allowed:
            raise self.fail(
                field_name,
                f"names parameter {name!r}, which a {kind.value} layer does not take "
                f"(it takes {', '.join(allowed)})",
            )
        return str(name)

    def integer(self, field_name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field_name, f"must be an integer, got {value!r}")
        return value

    # -- modes -----------------------------------------------------------------------------
    def mode_value(self, kind: LayerKind, mode: Mode, value: Any) -> Any:
        if mode == "points":
            return self.points(kind, value)
        if mode == "random":
            return self.random(kind, value)
        if not isinstance(value, Mapping) or not value:
            raise self.fail(
                mode, f"must be a non-empty mapping of parameter: values, got {value!r}"
            )
        if mode == "sweep" and len(value) != 1:
            raise self.fail(
                "sweep",
                f"must name exactly one parameter, got {', '.join(map(str, value))} "
                "(use 'grid' for several)",
            )
        return {
            self.parameter(mode, kind, name): self.values(f"{mode}.{name}", spec)
            for name, spec in value.items()
        }

    def values(self, field_name: str, spec: Any) -> tuple[int, ...]:
        if isinstance(spec, list):
            values = tuple(self.integer(field_name, v) for v in spec)
        elif isinstance(spec, Mapping) and "geom" in spec:
            values = self.geom(field_name, spec)
        elif isinstance(spec, Mapping) and "start" in spec:
            values = self.arange(field_name, spec)
        else:
            raise self.fail(
                field_name,
                f"must be a list, {{start, stop, step}} or {{geom: [lo, hi, n]}}, got {spec!r}",
            )
        if not values:
            raise self.fail(field_name, "is empty")
        return values

    def arange(self, field_name: str, spec: Mapping[str, Any]) -> tuple[int, ...]:
        unknown = sorted(set(spec) - {"start", "stop", "step"})
        if unknown or "stop" not in spec:
            raise self.fail(field_name, "must have start and stop and optionally step")
        start = self.integer(f"{field_name}.start", spec["start"])
        stop = self.integer(f"{field_name}.stop", spec["stop"])
        step = self.integer(f"{field_name}.step", spec.get("step", 1))
        if step <= 0:
            raise self.fail(f"{field_name}.step", f"must be positive, got {step}")
        self.count(len(range(start, stop + 1, step)))
        return tuple(range(start, stop + 1, step))

    def geom(self, field_name: str, spec: Mapping[str, Any]) -> tuple[int, ...]:
        args = spec["geom"]
        if len(spec) != 1 or not isinstance(args, list) or len(args) != 3:
            raise self.fail(field_name, f"geom must be [lo, hi, n], got {args!r}")
        lo, hi, n = (self.integer(f"{field_name}.geom", a) for a in args)
        if not 0 < lo <= hi or n < 1:
            raise self.fail(field_name, f"geom needs 0 < lo <= hi and n >= 1, got {args!r}")
        self.count(n)
        return geometric_values(lo, hi, n)

    def points(self, kind: LayerKind, value: Any) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("points", "must be a non-empty list of parameter mappings")
        points = []
        for i, point in enumerate(value):
            points.append(self.fixed(kind, point, f"points[{i}]"))
        return tuple(points)

    def random(self, kind: LayerKind, value: Any) -> RandomSpec:
        if not isinstance(value, Mapping) or set(value) - {"count", "seed", "space"}:
            raise self.fail("random", "must be a mapping with count, seed and space")
        if "count" not in value or "space" not in value:
            raise self.fail("random", "needs count and space")
        count = self.integer("random.count", value["count"])
        if count < 1:
            raise self.fail("random.count", f"must be positive, got {count}")
        self.count(count)
        space = value["space"]
        if not isinstance(space, Mapping) or not space:
            raise self.fail("random.space", "must be a non-empty mapping of parameter: range")
        ranges: dict[str, tuple[int, int]] = {}
        choices: dict[str, tuple[int, ...]] = {}
        for name, spec in space.items():
            name = self.parameter("random.space", kind, name)
            self.random_axis(f"random.space.{name}", name, spec, ranges, choices)
        seed = self.integer("random.seed", value.get("seed", 0))
        return RandomSpec(count=count, seed=seed, ranges=ranges, choices=choices)

    def random_axis(
        self,
        field_name: str,
        name: str,
        spec: Any,
        ranges: dict[str, tuple[int, int]],
        choices: dict[str, tuple[int, ...]],
    ) -> None:
        if isinstance(spec, list) and len(spec) == 2:
            lo, hi = (self.integer(field_name, v) for v in spec)
            if lo > hi:
                raise self.fail(field_name, f"range [{lo}, {hi}] has lo > hi")
            ranges[name] = (lo, hi)
        elif isinstance(spec, Mapping) and "choices" in spec:
            if len(spec) != 1:
                raise self.fail(field_name, "must be {choices: [...]} with nothing else")
            choices[name] = self.values(field_name, spec["choices"])
        else:
            choices[name] = self.values(field_name, spec)


def shipped_plans_dir() -> Path:
    """The folder of sweep plans shipped with prmodel.

    Package data: ``prmodel/measure/shipped_sweeps``.

    ``prmodel init`` copies them into a workspace's ``sweeps/``; ``prmodel sweep NAME`` finds
    them by name.

    Raises:
        PlanError: prmodel was installed without its shipped plans.
    """
    folder = Path(__file__).resolve().parent / "shipped_sweeps"
    if not folder.is_dir():
        raise PlanError(f"{folder}: the shipped sweep plans are not installed here")
    return folder


def find_plans(
    names: Sequence[str | Path],
    workspace: Workspace,
    *,
    max_points: int | None = DEFAULT_MAX_POINTS,
) -> list[SweepPlan]:
    """The plans of several plan files or folders, as a command line names them.

    Each name is a path; where no such file exists, a plan file of that name (with or without
    ``.yaml``) in the workspace's ``sweeps/`` folder, else among the shipped plans.

    Raises:
        PlanError: a file that cannot be read or is malformed, or one plan name in two files.
        PlanTooLargeError: a plan of more than ``max_points`` points (None: no limit).
    """
    plans = [
        plan
        for name in names
        for plan in load_plans(_plan_path(Path(name), workspace), max_points=max_points)
    ]
    counts = {plan.name: 0 for plan in plans}
    for plan in plans:
        counts[plan.name] += 1
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise PlanError(f"plan name {repeated[0]!r} appears in more than one plan file")
    return plans


def _plan_path(path: Path, workspace: Workspace) -> Path:
    if path.exists():
        return path
    for folder in (workspace.sweeps_dir, shipped_plans_dir()):
        for candidate in (folder / path, folder / f"{path}.yaml"):
            if candidate.exists():
                return candidate
    return path  # load_plans names it in its error


def copy_shipped_plans(workspace: Workspace) -> list[str]:
    """Copy the shipped plans into the workspace's ``sweeps/`` folder, keeping existing files.

    Returns:
        The names of the files copied (none where all were there already).
    """
    workspace.sweeps_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for plan_file in sorted(shipped_plans_dir().glob("*.yaml")):
        destination = workspace.sweeps_dir / plan_file.name
        if not destination.exists():
            shutil.copyfile(plan_file, destination)
            copied.append(plan_file.name)
    return copied


def numeric_parameters(kind: LayerKind) -> tuple[str, ...]:
    """The integer parameters a plan may set for ``kind``, including square shorthands."""
    names = PARAMETERS[kind]
    shorthands = tuple(s for s, (h, w) in SHORTHANDS.items() if h in names and w in names)
    return (*names, *shorthands)


def geometric_values(lo: int, hi: int, n: int) -> tuple[int, ...]:
    """``n`` log-spaced integers from ``lo`` to ``hi`` (rounded; duplicates dropped)."""
    raw = np.rint(np.geomspace(lo, hi, n)).astype(int)
    return tuple(int(v) for v in np.unique(raw))


# -- writing ----------------------------------------------------------------------------------
def save_plans(
    plans: Sequence[SweepPlan], path: str | Path, *, made_for: Mapping[str, Any] | None = None
) -> Path:
    """Write ``plans`` as one YAML file (``plans: [...]``) that :func:`load_plans` reads back.

    ``made_for`` (``target_id`` and ``fingerprint``) records the target the plans were drawn
    for, as the field ``target``; sweeping the file on another machine is then refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"target": dict(made_for)} if made_for else {}
    data["plans"] = [plan_to_dict(plan) for plan in plans]
    path.write_text(yaml.dump(data, Dumper=_FlowDumper, sort_keys=False, width=100))
    return path


def plan_to_dict(plan: SweepPlan) -> dict[str, Any]:
    """A plan as the mapping a YAML plan file holds."""
    data: dict[str, Any] = {"name": plan.name, "kind": plan.kind.value}
    if plan.description:
        data["description"] = plan.description
    if plan.fixed:
        data["fixed"] = _FlowMap(plan.fixed)
    if plan.activation is not None:
        data["activation"] = plan.activation
    if plan.residual:
        data["residual"] = True
    if plan.skip_invalid:
        data["skip_invalid"] = True
    data[plan.mode] = _mode_to_data(plan)
    return data


def _mode_to_data(plan: SweepPlan) -> Any:
    if plan.points is not None:
        return [_FlowMap(point) for point in plan.points]
    if plan.random is not None:
        space: dict[str, Any] = {name: _FlowList(r) for name, r in plan.random.ranges.items()}
        space.update(
            {n: _FlowMap({"choices": _FlowList(c)}) for n, c in plan.random.choices.items()}
        )
        return {"count": plan.random.count, "seed": plan.random.seed, "space": space}
    axes = plan.sweep if plan.sweep is not None else plan.grid
    assert axes is not None
    return {name: _values_to_data(values) for name, values in axes.items()}


def _values_to_data(values: tuple[int, ...]) -> Any:
    steps = {b - a for a, b in pairwise(values)}
    if len(values) > 3 and len(steps) == 1 and (step := steps.pop()) > 0:
        data = {"start": values[0], "stop": values[-1]}
        return _FlowMap(data if step == 1 else {**data, "step": step})
    return _FlowList(values)


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


class _FlowMap(dict[str, Any]):
    """A mapping that YAML writes on one line (a point, a range)."""


class _FlowList(list[int]):
    """A list that YAML writes on one line."""


class _FlowDumper(yaml.SafeDumper):
    pass


_FlowDumper.add_representer(
    _FlowMap,
    lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", dict(data), flow_style=True),
)
_FlowDumper.add_representer(
    _FlowList,
    lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True),
)


__all__ = [
    "DEFAULT_MAX_POINTS",
    "MODES",
    "PlanError",
    "PlanTooLargeError",
    "RandomSpec",
    "SweepPlan",
    "copy_shipped_plans",
    "find_plans",
    "geometric_values",
    "load_plans",
    "numeric_parameters",
    "plan_from_layers",
    "plan_to_dict",
    "save_plans",
    "shipped_plans_dir",
]
