"""Selection: the 1-D sweep design, step detection on measured sweeps, and the PRs.

:func:`initial_sweeps` designs the 1-D sweeps that step detection needs, from the hardware
profile and the parameter space: dense around the periods the profile proposes (every value
up to four periods, on the alignment the fast kernel needs), dense at small values plus a
coarse log-spaced tail where the profile has no idea.

:func:`select_representatives` takes the measured sweeps (:class:`ParameterSweep`), finds
their steps with :func:`prmodel.select.steps.detect_steps` (that module describes how) and
chooses one representative per plateau (its upper end), giving a
:class:`~prmodel.select.representatives.RepresentativeSet`. Nothing here measures: the
``prmodel select`` stage that measures the designed sweeps is
:func:`prmodel.workflows.selection.run_selection`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.plans import SweepPlan, plan_from_layers
from prmodel.select.representatives import ParameterSteps, RepresentativeSet, to_plain
from prmodel.select.spaces import IntRange, ParameterSpace, SpaceError, default_space, log_spaced
from prmodel.select.steps import detect_steps

if TYPE_CHECKING:
    import pandas as pd

    from prmodel.targets.profiles import HardwareProfile, StepHint


# -- the first 1-D sweeps ---------------------------------------------------------------------


@dataclass(frozen=True)
class InitialSweep:
    """A 1-D sweep of one parameter around the space's base layer, as a named plan."""

    kind: LayerKind
    parameter: str
    values: tuple[int, ...]
    layers: tuple[LayerConfig, ...]
    plan: SweepPlan


def sweep_values(
    dimension: IntRange, hint: StepHint | None, *, dense_to: int = 32, tail: int = 6
) -> tuple[int, ...]:
    """The values of a 1-D sweep over ``dimension``, dense enough to show the hinted steps.

    With proposed periods: every value up to the hinted ``start``, then every ``step``-th
    value up to four times the largest period above it (at least ``dense_to + 16``), so every
    proposed period shows three or more plateaus. Without: every value up to ``dense_to``
    (periods up to a third of that are visible) and a ``tail`` of log-spaced values up to the
    top of the range, for the overall trend.
    """
    low, high = dimension.low, dimension.high
    if hint is not None and hint.periods:
        start = max(hint.starts, default=0)
        stop = max(start + 4 * max(hint.periods), dense_to + 16)
        first = (start // hint.step + 1) * hint.step
        values = set(range(low, start + 1)) | set(range(first, stop + 1, hint.step))
    else:
        values = set(range(low, dense_to + 1))
        if high > dense_to:
            values |= set(log_spaced(dense_to + 1, high, tail + 1)[1:])
    return tuple(sorted(v for v in values if low <= v <= high))


def initial_sweeps(
    kinds: Iterable[LayerKind | str],
    *,
    profile: HardwareProfile | None = None,
    spaces: Mapping[LayerKind, ParameterSpace] | None = None,
    dense_to: int = 32,
    tail: int = 6,
) -> list[InitialSweep]:
    """One 1-D sweep per integer-range parameter of every kind, designed from the profile.

    Each sweep varies one parameter of the space's base layer (tied parameters follow, so a
    ``height`` sweep keeps inputs square); values whose layer is invalid or over the space's
    limits are left out. Plans are named ``initial-<kind>-<parameter>``.
    """
    sweeps = []
    for kind in dict.fromkeys(parse_kind(k) for k in kinds):
        space = (spaces or {}).get(kind) or default_space(kind)
        for name in space.swept_parameters:
            hint = profile.hint(kind, name) if profile else None
            base = _sweep_base(kind, name, space, profile)
            pairs = []
            for value in sweep_values(space.range_of(name), hint, dense_to=dense_to, tail=tail):
                layer = space.try_build({**base, name: value})
                if layer is not None and getattr(layer, name) == value:
                    pairs.append((value, layer))
            if len(pairs) < 2:
                continue
            values, layers = zip(*pairs, strict=True)
            plan = _sweep_plan(f"initial-{kind.value}-{name}", name, layers, hint)
            sweeps.append(InitialSweep(kind, name, tuple(values), tuple(layers), plan))
    return sweeps


def _sweep_plan(
    name: str, parameter: str, layers: Sequence[LayerConfig], hint: StepHint | None
) -> SweepPlan:
    why = f"; {hint.note}" if hint and hint.note else ""
    description = f"1-D sweep of {parameter} for step detection{why}"
    dicts = [layer.to_dict() for layer in layers]
    varying = {k for k in dicts[0] if any(d.get(k) != dicts[0][k] for d in dicts)}
    if varying != {parameter}:  # tied parameters move too: an explicit points plan
        return plan_from_layers(name, layers, description=description)
    fixed = {k: v for k, v in dicts[0].items() if k not in ("kind", parameter)}
    activation = fixed.pop("activation", None)
    residual = bool(fixed.pop("residual", False))
    return SweepPlan(
        name=name,
        kind=layers[0].kind,
        fixed=fixed,
        sweep={parameter: tuple(d[parameter] for d in dicts)},
        activation=activation,
        residual=residual,
        description=description,
    )


# -- steps and representatives ---------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSweep:
    """A measured 1-D sweep: one parameter of one kind varied around a base layer."""

    kind: LayerKind
    parameter: str
    values: tuple[int, ...]
    latencies_us: tuple[float, ...]
    plan: str = ""
    layer_keys: tuple[str, ...] = ()
    kernel_area: int = 0
    """Kernel taps of the swept layers (conv), 0 where unknown."""

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, kind: LayerKind | str, parameter: str, plan: str = ""
    ) -> ParameterSweep:
        """A sweep from store rows (columns ``parameter``, ``latency_us``, ``layer_key``, and
        ``kernel_h`` and ``kernel_w`` where the store has them)."""
        rows = frame.sort_values(parameter)
        area = 0
        if {"kernel_h", "kernel_w"} <= set(rows.columns) and len(rows):
            area = int(rows["kernel_h"].iloc[0]) * int(rows["kernel_w"].iloc[0])
        return cls(
            kind=LayerKind(kind),
            parameter=parameter,
            values=tuple(int(v) for v in rows[parameter]),
            latencies_us=tuple(float(v) for v in rows["latency_us"]),
            plan=plan,
            layer_keys=tuple(str(k) for k in rows["layer_key"]),
            kernel_area=area,
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
    steps: list[ParameterSteps] = []
    for sweep in sweeps:
        space = (spaces or {}).get(sweep.kind) or default_space(sweep.kind)
        hint = profile.hint(sweep.kind, sweep.parameter) if profile else None
        found = _select_one(
            sweep,
            space,
            hint,
            coarse_count=coarse_count,
            min_confidence=min_confidence,
            noise_floor=noise_floor,
            outliers=not deterministic,
        )
        if found.period:  # a period found on a folded window holds in its taps
            found = replace(found, window=_folded_window(sweep, space, profile))
        steps.append(found)
    steps += _unswept(sweeps, spaces, coarse_count)
    info = {**(metadata or {})}
    if profile is not None:
        info.setdefault("profile", profile_record(profile))
    return RepresentativeSet(target_id, tuple(steps), to_plain(info))


def _folded_window(
    sweep: ParameterSweep, space: ParameterSpace, profile: HardwareProfile | None
) -> int:
    """The base layer's kernel area where the profile folds a conv's whole window (channels
    times kernel taps) and ``sweep`` is its channel sweep, else 0 (see ParameterSteps.window)."""
    if sweep.kind is not LayerKind.CONV or sweep.parameter != "channels":
        return 0
    if not _folds_window(profile):
        return 0
    if sweep.kernel_area:
        return sweep.kernel_area
    base = space.build({})
    return base.kernel_h * base.kernel_w


def _folds_window(profile: HardwareProfile | None) -> bool:
    """Whether ``profile``'s hardware folds a conv's whole window (channels times kernel taps)
    over a block, as a systolic array's rows do."""
    blocks = profile.gemm_blocks(LayerKind.CONV) if profile is not None else None
    return blocks is not None and blocks.reduction == "window" and blocks.k > 1


def _sweep_base(
    kind: LayerKind, parameter: str, space: ParameterSpace, profile: HardwareProfile | None
) -> dict[str, int]:
    """What a sweep changes in the space's base layer besides its own parameter.

    On hardware that folds a conv's whole window, the channel steps of a 3x3 layer fall
    every ``block / 9`` channels, which no integer period describes; at a 1x1 kernel they are
    the block itself. So the channel sweep runs at 1x1 where the space allows it, and the
    plateaus of other kernels follow from it (:meth:`ParameterSteps.representative_for`).
    """
    if kind is not LayerKind.CONV or parameter != "channels" or not _folds_window(profile):
        return {}
    if space.build({}).kernel_h == 1 or "kernel_h" not in space.free_parameters:
        return {}
    return {"kernel_h": 1} if 1 in space.values_of("kernel_h") else {}


def profile_record(profile: HardwareProfile) -> dict[str, Any]:
    """The profile as the PR file's metadata stores it (its fields and its source)."""
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
            evidence=to_plain(evidence),
        )
    steps = ParameterSteps(
        sweep.kind,
        sweep.parameter,
        has_steps=True,
        period=detection.period,
        offset=detection.offset,
        breakpoints=() if detection.period else detection.breakpoints,
        confidence=round(detection.confidence, 4),
        evidence=to_plain(evidence),
        start=detection.start,
    )
    return replace(steps, representatives=_plateau_representatives(steps, low, high, coarse_count))


def _range(space: ParameterSpace, sweep: ParameterSweep) -> tuple[int, int]:
    try:
        dim = space.range_of(sweep.parameter)
        return dim.low, dim.high
    except SpaceError:
        return min(sweep.values), max(sweep.values)


def _log_spaced(low: int, high: int, count: int) -> tuple[int, ...]:
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


__all__ = [
    "InitialSweep",
    "ParameterSweep",
    "initial_sweeps",
    "profile_record",
    "select_representatives",
    "sweep_values",
]
