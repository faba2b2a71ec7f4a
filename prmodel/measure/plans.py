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

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from prmodel.layers import ACTIVATIONS, FUSIBLE_KINDS, LayerKind
from prmodel.measure._plan_model import (
    DEFAULT_MAX_POINTS,
    MODES,
    Mode,
    PlanError,
    PlanTooLargeError,
    RandomSpec,
    SweepPlan,
    geometric_values,
    numeric_parameters,
    plan_from_layers,
)
from prmodel.measure._plan_writer import plan_to_dict, save_plans
from prmodel.workspace import Workspace

_PLAN_FIELDS = ("name", "kind", "description", "fixed", "activation", "residual", "skip_invalid")


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
