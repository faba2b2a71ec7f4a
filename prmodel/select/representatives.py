"""Performance Representatives: the PR data types, the PR file, plateau mapping and selection.

The data types here are shared by the selector, the samplers, the feature builder and the
estimator: :class:`ParameterSteps` (what one parameter's staircase looks like and which
values represent its plateaus) and :class:`RepresentativeSet` (all of them for a target).

A :class:`RepresentativeSet` is saved to and loaded from the PR file
(``representatives/<target_id>.yaml``); :func:`plateau_layer` moves a layer's stepped
parameters onto their plateaus' representatives. :func:`select_representatives` chooses one
representative per plateau (its upper end) from the steps that
:func:`prmodel.select.steps.detect_steps` finds in each 1-D sweep
(:mod:`prmodel.select.steps` describes how
steps are detected); :func:`run_selection` is the whole ``prmodel select`` stage, and
:func:`save_plots` draws each sweep with its steps and representatives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import yaml

from prmodel.errors import PrmodelError
from prmodel.layers import PARAMETERS, InvalidLayerError, LayerConfig, LayerKind
from prmodel.select.steps import detect_steps, step_label

if TYPE_CHECKING:
    import pandas as pd

    from prmodel.select.spaces import ParameterSpace
    from prmodel.targets.profiles import HardwareProfile, StepHint

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
        target_id: ort-cpu-t1-all
        metadata: {profile: {...}, fingerprint_hash: ..., plan_file: ...}
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
            "metadata": _plain(self.metadata),
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
        "evidence": _plain(steps.evidence),
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
        target = parameter.representative(value)
        if target != value:
            try:
                rounded = rounded.with_params(**{parameter.parameter: target})
            except InvalidLayerError:
                continue
    return rounded


# -- selection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSweep:
    """A measured 1-D sweep: one parameter of one kind varied around a base layer."""

    kind: LayerKind
    parameter: str
    values: tuple[int, ...]
    latencies_us: tuple[float, ...]
    plan: str = ""
    layer_keys: tuple[str, ...] = ()

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, kind: LayerKind | str, parameter: str, plan: str = ""
    ) -> ParameterSweep:
        """A sweep from store rows (columns ``parameter``, ``latency_us``, ``layer_key``)."""
        rows = frame.sort_values(parameter)
        return cls(
            kind=LayerKind(kind),
            parameter=parameter,
            values=tuple(int(v) for v in rows[parameter]),
            latencies_us=tuple(float(v) for v in rows["latency_us"]),
            plan=plan,
            layer_keys=tuple(str(k) for k in rows["layer_key"]),
        )


def select_representatives(
    sweeps: Sequence[ParameterSweep],
    *,
    target_id: str,
    profile: HardwareProfile | None = None,
    spaces: Mapping[LayerKind, ParameterSpace] | None = None,
    coarse_count: int = 8,
    min_confidence: float = 0.25,
    noise_floor: float = 0.005,
    deterministic: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> RepresentativeSet:
    """Detect the steps of every sweep and choose one representative per plateau.

    The representative of a plateau is its upper end: there the hardware's block is fully
    used, every smaller value of the plateau costs the same, and it is what
    :meth:`RepresentativeSet.plateau_of` maps layers to. Representatives cover the parameter's
    whole range in its space (the period is extrapolated beyond the sweep); values up to a
    ``start`` and parameters without steps (or with a confidence below ``min_confidence``) get
    ``coarse_count`` log-spaced values instead. Range parameters of a space that were not
    swept get coarse values too.

    Args:
        sweeps: One measured sweep per (kind, parameter).
        target_id: The target the sweeps were measured on.
        profile: The hardware profile whose hints are checked (None: no hints).
        spaces: Parameter spaces per kind (default: :func:`prmodel.select.spaces.default_space`).
        coarse_count: Number of values for parameters (or regimes) without steps.
        min_confidence: Detected steps below this confidence are treated as none.
        noise_floor: Smallest relative noise assumed by detection.
        deterministic: The sweeps are exact (a simulator): no outliers to allow for.
        metadata: Extra facts to store in the file (profile, plans, fingerprint...).
    """
    from prmodel.select.spaces import default_space

    steps: list[ParameterSteps] = []
    for sweep in sweeps:
        space = (spaces or {}).get(sweep.kind) or default_space(sweep.kind)
        hint = profile.hint(sweep.kind, sweep.parameter) if profile else None
        steps.append(
            _select_one(
                sweep,
                space,
                hint,
                coarse_count=coarse_count,
                min_confidence=min_confidence,
                noise_floor=noise_floor,
                outliers=not deterministic,
            )
        )
    steps += _unswept(sweeps, spaces, coarse_count)
    info = {**(metadata or {})}
    if profile is not None:
        info.setdefault("profile", _profile_record(profile))
    return RepresentativeSet(target_id, tuple(steps), _plain(info))


def _profile_record(profile: HardwareProfile) -> dict[str, Any]:
    # The whole profile travels with the PR set: the features rebuild the GEMM blocking
    # from it, so a model never needs the profile file itself.
    return {**profile.to_dict(), "source": profile.source}


def _select_one(
    sweep: ParameterSweep,
    space: ParameterSpace,
    hint: StepHint | None,
    *,
    coarse_count: int,
    min_confidence: float,
    noise_floor: float,
    outliers: bool,
) -> ParameterSteps:
    detection = detect_steps(
        sweep.values,
        sweep.latencies_us,
        candidate_periods=hint.periods if hint else (),
        candidate_starts=hint.starts if hint else (),
        noise_floor=noise_floor,
        outliers=outliers,
    )
    low, high = _range(space, sweep)
    evidence: dict[str, Any] = {
        **detection.evidence(),
        "sweep": {
            "plan": sweep.plan,
            "values": list(sweep.values),
            "latency_us": list(sweep.latencies_us),
            "layer_keys": list(sweep.layer_keys),
        },
    }
    if hint is not None:
        evidence["hint"] = hint.to_dict()
    if not detection.has_steps or detection.confidence < min_confidence:
        if detection.has_steps:
            evidence["note"] = (
                f"{detection.note}; confidence {detection.confidence:.2f} is below "
                f"{min_confidence}, so the parameter is treated as step-free"
            )
        reps = _log_spaced(low, high, coarse_count)
        return ParameterSteps(
            sweep.kind,
            sweep.parameter,
            has_steps=False,
            representatives=reps,
            confidence=round(detection.confidence, 4),
            evidence=_plain(evidence),
        )
    steps = ParameterSteps(
        sweep.kind,
        sweep.parameter,
        has_steps=True,
        period=detection.period,
        offset=detection.offset,
        breakpoints=() if detection.period else detection.breakpoints,
        confidence=round(detection.confidence, 4),
        evidence=_plain(evidence),
        start=detection.start,
    )
    return replace(steps, representatives=_plateau_representatives(steps, low, high, coarse_count))


def _range(space: ParameterSpace, sweep: ParameterSweep) -> tuple[int, int]:
    from prmodel.select.spaces import SpaceError

    try:
        dim = space.range_of(sweep.parameter)
        return dim.low, dim.high
    except SpaceError:
        return min(sweep.values), max(sweep.values)


def _log_spaced(low: int, high: int, count: int) -> tuple[int, ...]:
    from prmodel.select.spaces import log_spaced

    return tuple(v for v in log_spaced(max(low, 1), max(high, 1), count) if v >= 1)


def _plateau_representatives(
    steps: ParameterSteps, low: int, high: int, coarse_count: int
) -> tuple[int, ...]:
    values: set[int] = set()
    if steps.start >= low:
        values |= set(_log_spaced(low, min(steps.start, high), coarse_count))
    if steps.period:
        first = max(low, steps.start + 1)
        boundary = steps.boundary_at_or_above(first)
        while boundary < high:
            values.add(boundary)
            boundary += steps.period
        # The plateau holding ``high`` is represented by its upper end, even above the range.
        values.add(steps.boundary_at_or_above(high))
    else:
        values |= {b for b in steps.breakpoints if low <= b}
        last = steps.breakpoints[-1]
        if high > last:
            values |= {v for v in _log_spaced(last + 1, high, coarse_count)}
    return tuple(sorted(v for v in values if steps.representative(v) == v))


def _unswept(
    sweeps: Sequence[ParameterSweep],
    spaces: Mapping[LayerKind, ParameterSpace] | None,
    coarse_count: int,
) -> list[ParameterSteps]:
    swept = {(s.kind, s.parameter) for s in sweeps}
    kinds = dict.fromkeys(s.kind for s in sweeps)
    extra: list[ParameterSteps] = []
    for kind in kinds:
        space = (spaces or {}).get(kind)
        if space is None:
            continue
        for name in space.swept_parameters:
            if (kind, name) in swept:
                continue
            dim = space.range_of(name)
            extra.append(
                ParameterSteps(
                    kind,
                    name,
                    has_steps=False,
                    representatives=_log_spaced(dim.low, dim.high, coarse_count),
                    evidence={"note": "not swept: coarse log-spaced values"},
                )
            )
    return extra


# -- the whole selection on a target ----------------------------------------------------------


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`run_selection` did and wrote."""

    representatives: RepresentativeSet
    path: Path
    plan_path: Path
    plots: tuple[Path, ...]
    sweeps: tuple[ParameterSweep, ...]
    profile: HardwareProfile
    measured: int
    skipped: int
    failed: int
    seconds: float

    TABLE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "kind",
        "parameter",
        "steps",
        "offset",
        "start",
        "confidence",
        "prs",
        "points",
        "profile",
    )
    """The columns of :meth:`rows` that a summary table shows, in order."""

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per analysed parameter (the CLI's and the benchmark's table)."""
        return [_summary_row(steps) for steps in self.representatives.steps]


def _summary_row(steps: ParameterSteps) -> dict[str, Any]:
    evidence = steps.evidence if isinstance(steps.evidence, Mapping) else {}
    sweep = evidence.get("sweep") or {}
    return {
        "kind": steps.kind.value,
        "parameter": steps.parameter,
        "steps": steps.label if sweep else "not swept",
        "period": steps.period,
        "offset": steps.offset if steps.period else None,
        "start": steps.start or None,
        "confidence": round(float(steps.confidence), 3),
        "prs": len(steps.representatives),
        "points": len(sweep.get("values", [])),
        "profile": _profile_column(evidence),
    }


def _profile_column(evidence: Mapping[str, Any]) -> str:
    verdict = str(evidence.get("profile_verdict", "none"))
    proposed = evidence.get("profile_periods") or []
    if verdict == "none" or not proposed:
        return "no proposal"
    return f"{verdict} ({'/'.join(str(p) for p in proposed)})"


def run_selection(
    target: Any,
    *,
    workspace: Any,
    kinds: Iterable[LayerKind | str] | None = None,
    profile: HardwareProfile | None = None,
    spaces: Mapping[LayerKind, ParameterSpace] | None = None,
    settings: Any = None,
    progress: bool = True,
    plots: bool = True,
    min_confidence: float = 0.25,
) -> SelectionResult:
    """Sweep, detect and select on ``target``: the whole ``prmodel select`` stage.

    Designs the initial 1-D sweeps from the profile and the spaces
    (:func:`prmodel.select.samplers.initial_sweeps`), writes them as the plan file
    ``sweeps/initial-<target_id>.yaml``, measures what the store lacks through the sweep
    runner (plans ``initial-<kind>-<parameter>``; already measured points are reused), detects
    the steps, selects the representatives and writes ``representatives/<target_id>.yaml``
    and one plot per swept parameter into ``representatives/<target_id>/``.

    Args:
        target: The target to measure (a :class:`~prmodel.targets.base.Target`).
        workspace: The :class:`~prmodel.workspace.Workspace` to read and write.
        kinds: Layer kinds to analyse (default: every kind).
        profile: The hardware profile (default: :func:`prmodel.targets.profiles.profile_for`).
        spaces: Parameter spaces per kind (default: the default spaces).
        settings: :class:`prmodel.measure.runner.MeasureSettings` for noisy targets.
        progress: Show the runner's progress bars.
        plots: Write the PNG plots.
        min_confidence: Steps below this confidence are treated as none.
    """
    import time

    from prmodel.measure.plans import save_plans
    from prmodel.select.samplers import initial_sweeps
    from prmodel.targets.base import fingerprint_hash
    from prmodel.targets.profiles import profile_for

    started = time.perf_counter()
    profile = profile or profile_for(target)
    designs = initial_sweeps(list(kinds or LayerKind), profile=profile, spaces=spaces)
    plan_path = save_plans(
        [d.plan for d in designs], workspace.sweeps_dir / f"initial-{target.target_id}.yaml"
    )
    sweeps, counts = _measure_sweeps(designs, target, workspace, settings, progress=progress)
    metadata = {
        "profile": _profile_record(profile),
        "fingerprint_hash": fingerprint_hash(target.fingerprint()),
        "plan_file": _relative(plan_path, workspace.root),
        "min_confidence": min_confidence,
    }
    representatives = select_representatives(
        sweeps,
        target_id=target.target_id,
        profile=profile,
        spaces=spaces,
        min_confidence=min_confidence,
        deterministic=bool(getattr(target, "deterministic", False)),
        metadata=metadata,
    )
    path = representatives.save(workspace.representatives_path(target.target_id))
    written = save_plots(representatives, workspace.plots_dir(target.target_id)) if plots else []
    return SelectionResult(
        representatives=representatives,
        path=path,
        plan_path=plan_path,
        plots=tuple(written),
        sweeps=tuple(sweeps),
        profile=profile,
        seconds=time.perf_counter() - started,
        **counts,
    )


def _measure_sweeps(
    designs: Sequence[Any], target: Any, workspace: Any, settings: Any, *, progress: bool
) -> tuple[list[ParameterSweep], dict[str, int]]:
    """Measure what the store lacks of every designed sweep, in random order (plan
    membership recorded)."""
    from prmodel.measure.runner import run_sweep
    from prmodel.measure.store import MeasurementStore

    sweeps: list[ParameterSweep] = []
    counts = {"measured": 0, "skipped": 0, "failed": 0}
    rng = np.random.default_rng(0)
    with MeasurementStore(workspace.store_path) as store:
        for design in designs:
            # Measured in sweep order, a drift of the machine (or the runner's chunks of
            # neighbouring values) would look like plateaus; a random order turns it into
            # noise that detection averages out.
            shuffled = [design.layers[i] for i in rng.permutation(len(design.layers))]
            report = run_sweep(
                shuffled,
                target,
                store=store,
                settings=settings,
                progress=progress,
                plan_name=design.plan.name,
            )
            for name in counts:
                counts[name] += getattr(report, name)
            frame = store.frame(
                target_id=target.target_id,
                fingerprint_hash=report.fingerprint_hash,
                layer_keys=[layer.key for layer in design.layers],
            )
            if len(frame):  # a kind the target cannot run has no rows
                plan = design.plan.name
                sweeps.append(
                    ParameterSweep.from_frame(
                        frame, kind=design.kind, parameter=design.parameter, plan=plan
                    )
                )
    return sweeps, counts


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


# -- plots ------------------------------------------------------------------------------------


def save_plots(representatives: RepresentativeSet, folder: str | Path) -> list[Path]:
    """One PNG per swept parameter: the sweep, the plateau levels, boundaries and the PRs.

    Plots are drawn from the evidence stored in the set, so a reloaded PR file can be
    re-plotted. Returns the written paths (``<kind>-<parameter>.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for steps in representatives.steps:
        sweep = steps.evidence.get("sweep") if isinstance(steps.evidence, Mapping) else None
        if not sweep or not sweep.get("values"):
            continue
        figure, axes = plt.subplots(figsize=(8, 4.5))
        try:
            _draw(axes, steps, sweep, representatives.target_id)
            path = folder / f"{steps.kind.value}-{steps.parameter}.png"
            figure.tight_layout()
            figure.savefig(path, dpi=110)
            paths.append(path)
        finally:
            plt.close(figure)
    return paths


def _draw(axes: Any, steps: ParameterSteps, sweep: Mapping[str, Any], target_id: str) -> None:
    values = np.asarray(sweep["values"], dtype=float)
    latency = np.asarray(sweep["latency_us"], dtype=float)
    axes.plot(values, latency, "o", ms=3.5, color="tab:blue", label="measured")
    if steps.has_steps:
        edges = _plateau_edges(steps, values)
        for low, high in edges:
            inside = (values > low) & (values <= high)
            if inside.any():
                level = float(np.median(latency[inside]))
                axes.hlines(level, values[inside].min(), values[inside].max(), color="tab:orange")
        for boundary in (b for _, b in edges[:-1]):
            axes.axvline(boundary + 0.5, color="grey", lw=0.6, ls="--")
    in_sweep = [r for r in steps.representatives if values.min() <= r <= values.max()]
    marks = [latency[np.argmin(np.abs(values - r))] for r in in_sweep]
    axes.plot(in_sweep, marks, "v", color="tab:red", ms=8, label="representatives")
    axes.set_xlabel(steps.parameter)
    axes.set_ylabel("latency (µs)")
    axes.set_title(
        f"{target_id}: {steps.kind.value} {steps.parameter}: {steps.label}, "
        f"confidence {steps.confidence:.2f}"
    )
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)


def _plateau_edges(steps: ParameterSteps, values: np.ndarray) -> list[tuple[float, int]]:
    """(lower, upper] value intervals of the plateaus that hold swept values."""
    uppers = sorted({steps.boundary_at_or_above(int(v)) for v in values if v > steps.start})
    lowers = [steps.start, *uppers[:-1]]
    if steps.period:
        lowers = [max(u - steps.period, steps.start) for u in uppers]
    return list(zip(lowers, uppers, strict=False))


def _plain(value: Any) -> Any:
    """Plain YAML-safe data: tuples to lists, numpy scalars to Python, floats rounded."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
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
    "ParameterSteps",
    "ParameterSweep",
    "RepresentativeSet",
    "RepresentativesError",
    "save_plots",
    "select_representatives",
]
