"""Writing sweep plans back as YAML files that :func:`prmodel.measure.plans.load_plans` reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from prmodel.measure._plan_model import SweepPlan


def save_plans(
    plans: Sequence[SweepPlan], path: str | Path, *, made_for: Mapping[str, Any] | None = None
) -> Path:
    """Write ``plans`` as one YAML file (``plans: [...]``) that :func:`.plans.load_plans` reads.

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
