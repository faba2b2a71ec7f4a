"""Performance Representatives: the PR data types, the PR file and plateau mapping.

The data types here are shared by the selector, the samplers, the feature builder and the
estimator: :class:`ParameterSteps` (what one parameter's staircase looks like and which
values represent its plateaus) and :class:`RepresentativeSet` (all of them for a target).

A :class:`RepresentativeSet` is saved to and loaded from the PR file
(``representatives/<target_id>.yaml``); :func:`plateau_layer` moves a layer's stepped
parameters onto their plateaus' representatives. Choosing the representatives from measured
sweeps is :mod:`prmodel.select.selection`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prmodel.errors import PrmodelError
from prmodel.layers import PARAMETERS, InvalidLayerError, LayerConfig, LayerKind
from prmodel.select.steps import step_label

SCHEMA_VERSION = 1


class RepresentativesError(PrmodelError, ValueError):
    """A PR file that cannot be read or is inconsistent (one sentence names file and entry)."""


@dataclass(frozen=True)
class ParameterSteps:
    """The step structure of one parameter of one layer kind on one target.

    Plateau ``k`` covers the values ``(b[k-1], b[k]]`` where the boundaries ``b`` are
    ``offset + k * period`` for a regular staircase, or ``breakpoints`` for an irregular
    one. ``representatives`` are the chosen PR values, sorted. Without steps
    (``has_steps`` false) every value is its own plateau. Values up to ``start`` run another
    kernel without steps (each is its own plateau); the period applies above it.
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
    start: int = 0
    window: int = 0
    """Where the hardware folds a conv's whole window (input channels times kernel taps, a
    systolic array's rows) and this is the ``channels`` staircase: the kernel area of the
    swept base layer. The period then holds for ``channels * window`` taps, and a layer of
    another kernel has its channel plateaus at other values (:meth:`representative_for`).
    0 everywhere else."""

    def boundary_at_or_above(self, value: int) -> int:
        """The upper end of the plateau that contains ``value`` (``value`` without steps)."""
        if not self.has_steps or value <= 0 or value <= self.start:
            return value
        if self.period:
            j = max(self._first_boundary(), math.ceil((value - self.offset) / self.period))
            return self.offset + j * self.period
        for b in self.breakpoints:
            if b >= value:
                return b
        return value

    def plateau_index(self, value: int) -> int:
        """The index of the plateau that contains ``value`` (0 for the first).

        For a periodic staircase this counts periods from zero, also below ``start``.
        """
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

    def representative_for(self, layer: LayerConfig) -> int:
        """The PR value of ``layer``'s plateau in this parameter, with the layer's kernel.

        Where the window is folded (:attr:`window`), the staircase steps every
        ``period * window`` taps of ``channels * kernel area``: the plateau's upper end is
        the most channels with as many folds as the layer's. Elsewhere it is
        :meth:`representative` of the value.
        """
        value = int(getattr(layer, self.parameter))
        if not self.folds_window:
            return self.representative(value)
        area = layer.kernel_h * layer.kernel_w
        taps = self.taps_per_fold
        return max(value, (math.ceil(value * area / taps) * taps) // area)

    @property
    def folds_window(self) -> bool:
        """Whether the staircase is one of folded window taps (:attr:`window`)."""
        return bool(self.window and self.period and self.has_steps) and not (
            self.offset or self.start
        )

    @property
    def taps_per_fold(self) -> int:
        """Window taps (channels times kernel area) per step where :attr:`folds_window`."""
        return (self.period or 1) * max(self.window, 1)

    @property
    def maps_other_layers(self) -> bool:
        """Whether other layers may be moved onto these plateaus (see :func:`plateau_layer`).

        A periodic staircase comes from the hardware's blocking and holds whatever the other
        parameters are. Irregular breakpoints were found on the swept base layer only and
        usually depend on its other parameters (on a systolic array a conv's channel steps
        are the folds of ``channels * kernel_h * kernel_w``), so they do not carry over.
        """
        return self.has_steps and self.period is not None

    @property
    def label(self) -> str:
        """``period 16`` / ``period 16 + 3`` / ``5 breakpoints`` / ``no steps``."""
        return step_label(self.has_steps, self.period, self.offset, self.start, self.breakpoints)


@dataclass(frozen=True)
class RepresentativeSet:
    """The Performance Representatives of every swept parameter on one target.

    Saved as YAML (``representatives/<target_id>.yaml``)::

        schema: 1
        target_id: ort-cpu-avx2-3f9c-t1-all
        metadata: {profile: {...}, fingerprint_hash: ..., fingerprint: {...}, plan_file: ...}
        parameters:
        - kind: conv
          parameter: out_channels
          has_steps: true
          period: 16            # or null, with breakpoints: [3, 7, 10, ...]
          offset: 0             # boundaries at offset + k * period
          start: 0              # values up to start are step-free (another kernel)
          breakpoints: []
          confidence: 0.95
          representatives: [16, 32, 48, ...]
          evidence: {method, jump_ratios, flatness, step_share, noise, profile_periods,
                     profile_verdict, scores, note, hint, sweep: {plan, values, latency_us,
                     layer_keys}}
    """

    target_id: str
    steps: tuple[ParameterSteps, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def for_kind(self, kind: LayerKind | str) -> dict[str, ParameterSteps]:
        """The parameters of ``kind`` that were analysed, by name."""
        kind = LayerKind(kind)
        return {s.parameter: s for s in self.steps if s.kind is kind}

    def plateau_of(self, layer: LayerConfig) -> LayerConfig:
        """``layer`` with every stepped parameter moved to its plateau's representative.

        See :func:`plateau_layer`.
        """
        return plateau_layer(self.steps, layer)

    @property
    def kinds(self) -> tuple[LayerKind, ...]:
        """The layer kinds that have at least one analysed parameter, in file order."""
        return tuple(dict.fromkeys(s.kind for s in self.steps))

    def save(self, path: str | Path) -> Path:
        """Write the set as human-readable YAML (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "schema": SCHEMA_VERSION,
            "target_id": self.target_id,
            "metadata": to_plain(self.metadata),
            "parameters": [_steps_to_data(s) for s in self.steps],
        }
        header = (
            f"# prmodel Performance Representatives (schema {SCHEMA_VERSION}), "
            f"target {self.target_id}\n"
            "# One entry per swept parameter: the step structure found in its 1-D sweep, the\n"
            "# representative values (the upper end of every plateau) and the evidence.\n"
        )
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
        path.write_text(header + text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RepresentativeSet:
        """Read a PR file written by :meth:`save`, checking that it is consistent.

        Raises:
            RepresentativesError: unreadable file, bad YAML, a missing field, a bad period,
                representatives unsorted or not matching the steps, unknown kind/parameter.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise RepresentativesError(f"cannot read PR file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise RepresentativesError(f"PR file {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0]
            raise RepresentativesError(f"PR file {path} is not valid YAML: {first}") from None
        return _parse_set(data, str(path))


# -- the PR file ------------------------------------------------------------------------------


def _steps_to_data(steps: ParameterSteps) -> dict[str, Any]:
    return {
        "kind": steps.kind.value,
        "parameter": steps.parameter,
        "has_steps": steps.has_steps,
        "period": steps.period,
        "offset": steps.offset,
        "start": steps.start,
        "breakpoints": list(steps.breakpoints),
        "confidence": float(steps.confidence),
        "representatives": list(steps.representatives),
        **({"window": steps.window} if steps.window else {}),
        "evidence": to_plain(steps.evidence),
    }


def _parse_set(data: Any, source: str) -> RepresentativeSet:
    if not isinstance(data, dict):
        raise RepresentativesError(f"PR file {source} must be a YAML mapping")
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise RepresentativesError(
            f"PR file {source}: schema {data.get('schema')!r} is not {SCHEMA_VERSION}"
        )
    target_id = data.get("target_id")
    if not isinstance(target_id, str) or not target_id:
        raise RepresentativesError(f"PR file {source}: field 'target_id' is missing")
    entries = data.get("parameters")
    if not isinstance(entries, list):
        raise RepresentativesError(f"PR file {source}: field 'parameters' must be a list")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RepresentativesError(f"PR file {source}: field 'metadata' must be a mapping")
    steps: list[ParameterSteps] = []
    seen: set[tuple[LayerKind, str]] = set()
    for number, entry in enumerate(entries, start=1):
        parsed = _parse_steps(entry, f"PR file {source}: entry {number}")
        key = (parsed.kind, parsed.parameter)
        if key in seen:
            raise RepresentativesError(
                f"PR file {source}: entry {parsed.kind.value}.{parsed.parameter} appears twice"
            )
        seen.add(key)
        steps.append(parsed)
    return RepresentativeSet(target_id, tuple(steps), metadata)


def _parse_steps(entry: Any, where: str) -> ParameterSteps:
    if not isinstance(entry, dict):
        raise RepresentativesError(f"{where} must be a mapping")
    for name in ("kind", "parameter", "has_steps", "representatives"):
        if name not in entry:
            raise RepresentativesError(f"{where} lacks the field {name!r}")
    try:
        kind = LayerKind(str(entry["kind"]))
    except ValueError:
        raise RepresentativesError(f"{where}: unknown layer kind {entry['kind']!r}") from None
    parameter = str(entry["parameter"])
    where = f"{where} ({kind.value}.{parameter})"
    if parameter not in PARAMETERS[kind]:
        raise RepresentativesError(f"{where}: {parameter!r} is not a {kind.value} parameter")
    steps = ParameterSteps(
        kind=kind,
        parameter=parameter,
        has_steps=_field(entry, "has_steps", bool, where),
        period=_optional_int(entry.get("period"), "period", where),
        offset=_field(entry, "offset", int, where, default=0),
        breakpoints=_int_list(entry.get("breakpoints") or [], "breakpoints", where),
        representatives=_int_list(entry["representatives"], "representatives", where),
        confidence=float(_field(entry, "confidence", (int, float), where, default=0.0)),
        evidence=_field(entry, "evidence", dict, where, default={}),
        start=_field(entry, "start", int, where, default=0),
        window=_field(entry, "window", int, where, default=0),
    )
    _check_consistent(steps, where)
    return steps


def _field(entry: dict[str, Any], name: str, kind: Any, where: str, default: Any = None) -> Any:
    value = entry.get(name, default)
    if value is None:
        value = default
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise RepresentativesError(f"{where}: field {name!r} has the wrong type ({value!r})")
    return value


def _optional_int(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RepresentativesError(f"{where}: {name} must be an integer, got {value!r}")
    return value


def _int_list(values: Any, name: str, where: str) -> tuple[int, ...]:
    if not isinstance(values, list) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
    ):
        raise RepresentativesError(f"{where}: {name} must be a list of positive integers")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise RepresentativesError(f"{where}: {name} are not sorted in increasing order")
    return tuple(values)


def _check_consistent(steps: ParameterSteps, where: str) -> None:
    if not 0.0 <= steps.confidence <= 1.0:
        raise RepresentativesError(f"{where}: confidence {steps.confidence} is not in [0, 1]")
    if steps.start < 0:
        raise RepresentativesError(f"{where}: start must be >= 0, got {steps.start}")
    if steps.window < 0:
        raise RepresentativesError(f"{where}: window must be >= 0, got {steps.window}")
    if steps.has_steps:
        if steps.period is None and not steps.breakpoints:
            raise RepresentativesError(f"{where}: has_steps needs a period or breakpoints")
        if steps.period is not None and steps.period <= 0:
            raise RepresentativesError(f"{where}: period must be positive, got {steps.period}")
        if steps.period and not 0 <= steps.offset < steps.period:
            raise RepresentativesError(
                f"{where}: offset {steps.offset} is not in [0, period {steps.period})"
            )
    elif steps.period is not None or steps.breakpoints:
        raise RepresentativesError(
            f"{where}: has_steps is false but a period or breakpoints are set"
        )
    for value in steps.representatives:
        if steps.representative(value) != value:
            raise RepresentativesError(
                f"{where}: representative {value} is not the upper end of its plateau "
                f"({steps.representative(value)})"
            )


# -- plateau mapping --------------------------------------------------------------------------


def plateau_layer(steps: Sequence[ParameterSteps], layer: LayerConfig) -> LayerConfig:
    """``layer`` with each periodic stepped parameter at its plateau's representative.

    Grouped convolutions are left as they are (their staircases were not swept), and so are
    parameters with irregular breakpoints (:attr:`ParameterSteps.maps_other_layers`) and
    parameters whose rounding would make the layer invalid (for example output channels no
    longer divisible by groups).
    """
    if layer.kind is LayerKind.CONV and layer.groups > 1:
        return layer
    rounded = layer
    for parameter in steps:
        if parameter.kind is not layer.kind or not parameter.maps_other_layers:
            continue
        value = getattr(rounded, parameter.parameter)
        target = parameter.representative_for(rounded)
        if target != value:
            try:
                rounded = rounded.with_params(**{parameter.parameter: target})
            except InvalidLayerError:
                continue
    return rounded


def to_plain(value: Any) -> Any:
    """Plain YAML-safe data: tuples to lists, numpy scalars to Python, floats rounded."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, LayerKind):
        return value.value
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


__all__ = [
    "SCHEMA_VERSION",
    "ParameterSteps",
    "RepresentativeSet",
    "RepresentativesError",
    "plateau_layer",
    "to_plain",
]
