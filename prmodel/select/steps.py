"""Detecting latency steps (staircases) in 1-D parameter sweeps.

How steps are detected (:func:`detect_steps`). Latency is modelled in log scale, where the
jitter of a loaded machine is multiplicative and roughly constant. Three families of models
compete for the dense part of a 1-D sweep:

- *smooth*: robust fits of ``latency = a + b*v (+ c*v**2)`` and linear splines in ``v`` and
  ``log v`` (no steps);
- *periodic*: plateaus ``(offset + (k-1)*period, offset + k*period]``, optionally above a
  ``start`` below which another kernel runs (a profile hint), whose levels are either free
  (medians) or a smooth curve of the padded value ``offset + k*period`` (the hardware pads
  the work to its block: two parameters for all plateaus);
- *breakpoints*: piecewise constant with free boundaries (dynamic programming).

Each model is scored by a robust information criterion: squared residuals in noise units,
truncated at 3 for noisy targets (outliers) and not truncated for exact ones, plus ``log n``
per fitted level or coefficient and ``-2 log prior`` for the discrete choices (period,
offset, boundary positions). The noise is the median absolute deviation of the residuals of
the best two-parameter models, never below a floor (and the timer's rounding). Periods the
hardware profile proposes share 80 % of the prior and every other period from 2 to a third of
the dense span the rest, so a profile period wins a tie but a wrong one loses against the
data: a divisor of the true period pays for its extra plateaus, a multiple fits badly. The
lowest score wins; no step model beating the smooth ones means "no steps". Confidence is the
share of the latency rise that happens at plateau boundaries times how clearly the winner
beats the smooth models and the best incompatible alternative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prmodel.errors import PrmodelError
from prmodel.select._step_models import PROFILE_PRIOR as PROFILE_PRIOR
from prmodel.select._step_models import Fit, Search, dense_end, mad

MIN_POINTS = 8
"""Fewer distinct swept values than this cannot show a staircase."""
EXACT_MIN_STEP_SHARE = 0.8
"""On an exact sweep, steps must carry this share of the rise (a smooth curve has <= 2/3)."""
EXACT_TOLERANCE = 0.005
"""Noise scale assumed for deterministic (exact) sweeps: shape errors below 0.5 % are noise."""


class StepDetectionError(PrmodelError, ValueError):
    """A sweep that step detection cannot use (mismatched lengths, non-positive latency)."""


_EVIDENCE_SCALE = 10.0  # a score difference of 10 is "very strong" evidence (Kass & Raftery)


@dataclass(frozen=True)
class StepDetection:
    """What :func:`detect_steps` found in one 1-D sweep.

    Attributes:
        has_steps: Whether a staircase explains the sweep better than a smooth curve.
        method: ``periodic``, ``breakpoints`` or ``none``.
        period: Step period (periodic only).
        offset: Boundaries are ``offset + k * period`` (periodic only), ``0 <= offset < period``.
        start: Values up to ``start`` are a step-free regime (another kernel); 0 for none.
        breakpoints: Plateau upper ends seen inside the sweep.
        levels_us: Median latency of each plateau seen, in order.
        jump_ratios: Latency ratio between successive plateaus (next / previous).
        flatness: Median relative deviation of points from their plateau's level.
        step_share: Share of the latency rise that happens at plateau boundaries.
        confidence: 0-1; for "no steps" the confidence that there are none.
        noise: Robust relative noise of the sweep (floored).
        profile_periods: The periods the profile proposed.
        profile_verdict: ``agreed``, ``overruled`` or ``none`` (no proposal).
        scores: Score of the best model of each family (lower is better) and the runner-up.
        note: One sentence on what was found and how it compares with the profile.
    """

    has_steps: bool
    method: str
    period: int | None = None
    offset: int = 0
    start: int = 0
    breakpoints: tuple[int, ...] = ()
    levels_us: tuple[float, ...] = ()
    jump_ratios: tuple[float, ...] = ()
    flatness: float = 0.0
    step_share: float = 0.0
    confidence: float = 0.0
    noise: float = 0.0
    profile_periods: tuple[int, ...] = ()
    profile_verdict: str = "none"
    scores: Mapping[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def label(self) -> str:
        """``period 16`` / ``period 16 + 3`` / ``5 breakpoints`` / ``no steps``."""
        return step_label(self.has_steps, self.period, self.offset, self.start, self.breakpoints)

    def evidence(self) -> dict[str, Any]:
        """What the detection saw, for the PR file (which makes it YAML-safe)."""
        return {
            "method": self.method,
            "breakpoints_seen": self.breakpoints,
            "levels_us": self.levels_us,
            "jump_ratios": self.jump_ratios,
            "flatness": self.flatness,
            "step_share": self.step_share,
            "noise": self.noise,
            "profile_periods": self.profile_periods,
            "profile_verdict": self.profile_verdict,
            "scores": dict(self.scores),
            "note": self.note,
        }


def step_label(
    has_steps: bool, period: int | None, offset: int, start: int, breakpoints: Sequence[int]
) -> str:
    """A staircase in words: ``period 16 + 3 above 8``, ``5 breakpoints`` or ``no steps``."""
    if not has_steps:
        return "no steps"
    if period:
        text = f"period {period}" + (f" + {offset}" if offset else "")
        return text + (f" above {start}" if start else "")
    return f"{len(breakpoints)} breakpoints"


def detect_steps(
    values: Sequence[int] | np.ndarray,
    latencies: Sequence[float] | np.ndarray,
    *,
    candidate_periods: Iterable[int] = (),
    candidate_starts: Iterable[int] = (),
    noise_floor: float = 0.005,
    max_period: int | None = None,
    resolution: float | None = None,
    outliers: bool = True,
) -> StepDetection:
    """Find the step structure of a 1-D sweep (see the module docstring for the method).

    Args:
        values: The swept parameter's values (any order; repeats are merged by median).
        latencies: Latency of each value, positive (any unit; ratios are what matter).
        candidate_periods: Periods the hardware profile proposes (favoured, not trusted).
        candidate_starts: Values up to which the profile expects another, step-free kernel.
        noise_floor: Smallest relative noise assumed (deterministic targets have none).
        max_period: Largest period to try (default: a third of the dense swept span).
        resolution: Timer resolution of the latencies, in their unit (default: 1 where
            every latency is a whole or half number, as profiler times in whole µs and
            their medians are, else 0). Each point's noise is at least its rounding
            error, and plateaus that differ by no more than 1.5 resolutions are no steps.
        outliers: Whether the sweep may hold outliers (a noisy target). Their cost is
            capped at 3 noise units; a deterministic target's sweep (False) is exact, so
            every point a model misses counts in full.

    Raises:
        StepDetectionError: mismatched lengths or a non-positive or non-finite latency.
    """
    x, y = _prepare(values, latencies)
    quantum = _resolution(latencies) if resolution is None else resolution
    x, y, tail = _dense_part(x, y)
    proposed = tuple(sorted({int(p) for p in candidate_periods if int(p) >= 2}))
    if len(x) < MIN_POINTS:
        return StepDetection(
            has_steps=False,
            method="none",
            profile_periods=proposed,
            profile_verdict="overruled" if proposed else "none",
            note=f"only {len(x)} distinct values: too few to see steps",
        )
    starts = tuple(int(s) for s in candidate_starts)
    search = Search(x, y, proposed, starts, max_period, quantum, outliers)
    found = _detect(search, _noise(search, noise_floor, outliers=outliers))
    if tail:
        note = f"{found.note} ({tail} tail values above {x[-1]} not used)"
        found = replace(found, note=note)
    return found


def _noise(search: Search, floor: float, *, outliers: bool) -> float:
    if not outliers:
        # An exact sweep has no noise; a curve that a smooth model misses by less than
        # EXACT_TOLERANCE still counts as smooth, while missed steps are far larger.
        return max(floor, EXACT_TOLERANCE)
    sigma = _noise_scale(search.y, floor)
    smooth, periodic, _ = search.run(sigma)
    # Steps inflate the first noise estimate and drift that is correlated from one value to
    # the next deflates it; the residuals of the best two-parameter models (smooth, or
    # smooth in the padded value) measure the noise that matters.
    return _refine_noise(sigma, smooth, periodic, floor)


def _detect(search: Search, sigma: float) -> StepDetection:
    x, y, proposed = search.x, search.y, search.proposed
    smooth, periodic, irregular = search.run(sigma)
    best_periodic = min(periodic, key=lambda f: f.score, default=None)
    step_fits = [f for f in (best_periodic, irregular) if f is not None]
    best_step = min(step_fits, key=lambda f: f.score, default=None)
    if best_step is None or best_step.score >= smooth.score:
        return _no_steps(sigma, smooth, best_step, proposed)
    if search.quantum > 0 and _jumps_within_resolution(y, best_step, search.quantum):
        return _no_steps(sigma, smooth, best_step, proposed, why="rounding")
    if search.cap == math.inf and _step_share_of(x, y, best_step) < EXACT_MIN_STEP_SHARE:
        # An exact staircase rises at its boundaries; a smooth curve that the smooth models
        # miss (a kink, say) only looks like short plateaus that rise as much inside.
        return _no_steps(sigma, smooth, best_step, proposed, why="not flat")
    if best_step is best_periodic:
        best_step = _prefer_measured_boundaries(x, best_step, periodic)
    return _describe_steps(x, y, sigma, best_step, smooth, periodic, proposed)


def _prepare(values: Any, latencies: Any) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    t = np.asarray(latencies, dtype=float)
    if v.shape != t.shape or v.ndim != 1:
        raise StepDetectionError(
            f"a sweep needs one latency per value, got {v.size} values and {t.size} latencies"
        )
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        bad = t[~(np.isfinite(t) & (t > 0))][0]
        raise StepDetectionError(f"latencies must be positive and finite, got {bad}")
    if np.any(v != np.round(v)) or np.any(v < 1):
        raise StepDetectionError("swept values must be positive integers")
    x = np.unique(v).astype(int)
    logs = np.log(t)
    y = np.array([np.median(logs[v == value]) for value in x])
    return x, y


def _dense_part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The sweep up to its first wide gap, and how many tail values were left out.

    A coarse tail (64, 128, 256, ...) holds one value per plateau of any period the dense
    part can show, so it cannot confirm steps; it can only be fitted freely by a step model
    where a smooth model misses a cache cliff. Detection therefore uses the dense part.
    """
    end = dense_end(x)
    return x[: end + 1], y[: end + 1], len(x) - end - 1


def _resolution(latencies: Any) -> float:
    # Whole microseconds, or medians of them (halves): a profiler that reports whole µs.
    t = 2.0 * np.asarray(latencies, dtype=float)
    return 1.0 if np.allclose(t, np.round(t), rtol=0, atol=1e-9) else 0.0


def _noise_scale(y: np.ndarray, floor: float) -> float:
    # MAD of successive differences: plateaus give pure noise differences, steps and
    # outliers are a minority that the median ignores; sqrt(2) undoes the differencing.
    diffs = np.diff(y)
    return max(mad(diffs) / math.sqrt(2.0), floor)


def _refine_noise(sigma: float, smooth: Fit, periodic: list[Fit], floor: float) -> float:
    padded = [f for f in periodic if f.levels == "padded"]
    fits = [smooth, *([min(padded, key=lambda f: f.score)] if padded else [])]
    scales = [mad(f.residuals) for f in fits if f.residuals.size]
    return max(min(scales, default=sigma), floor)


def _prefer_measured_boundaries(x: np.ndarray, best: Fit, fits: list[Fit]) -> Fit:
    # Offsets that split the measured values identically fit identically; of those, prefer
    # the one whose boundaries sit on measured values (the last value of each plateau).
    same = [
        f
        for f in fits
        if f.period == best.period and f.start == best.start and f.groups == best.groups
    ]
    measured = set(x.tolist())

    def on_measured(f: Fit) -> tuple[int, float, int]:
        hits = sum(b in measured for b in f.boundaries)
        return (-hits, f.score, f.offset)

    return min(same, key=on_measured) if same else best


# -- describing the result --


def _jumps_within_resolution(y: np.ndarray, fit: Fit, quantum: float) -> bool:
    """Whether the plateaus that differ at all differ by no more than the timer's rounding.

    A smooth ramp rounded to whole µs is a staircase whose every step is one quantum; real
    steps are larger (equal neighbouring plateaus, as a divisor of the period gives, are
    ignored).
    """
    levels = np.array([np.median(np.exp(y[a:b])) for a, b in fit.groups])
    jumps = np.abs(np.diff(levels))
    moving = jumps[jumps > 0.5 * quantum]
    return bool(moving.size == 0 or np.median(moving) <= 1.5 * quantum)


def _no_steps(
    sigma: float,
    smooth: Fit,
    best_step: Fit | None,
    proposed: tuple[int, ...],
    *,
    why: str = "",
) -> StepDetection:
    margin = (best_step.score - smooth.score) if best_step else math.inf
    confidence = 1.0 - math.exp(-max(margin, 0.0) / _EVIDENCE_SCALE)
    verdict = "overruled" if proposed else "none"
    note = "latency grows smoothly: no staircase"
    if why == "rounding":
        confidence = 0.0
        note = "plateaus differ by no more than the timer resolution: steps not resolvable"
    elif why == "not flat":
        note = "latency rises inside the would-be plateaus as much as between them: no steps"
    if proposed:
        note += f" (the profile proposed period {', '.join(map(str, proposed))})"
    scores = {"smooth": smooth.score}
    if best_step is not None:
        scores[best_step.family] = best_step.score
    return StepDetection(
        has_steps=False,
        method="none",
        confidence=confidence,
        noise=math.expm1(sigma),
        profile_periods=proposed,
        profile_verdict=verdict,
        scores=scores,
        note=note,
    )


def _describe_steps(
    x: np.ndarray,
    y: np.ndarray,
    sigma: float,
    best: Fit,
    smooth: Fit,
    periodic: list[Fit],
    proposed: tuple[int, ...],
) -> StepDetection:
    levels = np.array([np.median(y[a:b]) for a, b in best.groups])
    deviations = np.concatenate(
        [np.abs(y[a:b] - lv) for (a, b), lv in zip(best.groups, levels, strict=False)]
    )
    share = _step_share(x, y, best.groups, levels)
    rival = _best_rival(best, periodic)
    margin_rival = (rival.score - best.score) if rival else math.inf
    confidence = (
        share
        * (1.0 - math.exp(-(smooth.score - best.score) / _EVIDENCE_SCALE))
        * (1.0 - math.exp(-max(margin_rival, 0.0) / _EVIDENCE_SCALE))
    )
    verdict, note = _verdict(best, proposed, rival)
    scores = {"smooth": smooth.score, best.family: best.score}
    if rival is not None:
        scores["runner_up"] = rival.score
        scores["runner_up_period"] = float(rival.period or 0)
    return StepDetection(
        has_steps=True,
        method=best.family,
        period=best.period,
        offset=best.offset,
        start=best.start,
        breakpoints=best.boundaries,
        levels_us=tuple(float(v) for v in np.exp(levels)),
        jump_ratios=tuple(float(v) for v in np.exp(np.diff(levels))),
        flatness=float(math.expm1(np.median(deviations))),
        step_share=share,
        confidence=float(min(max(confidence, 0.0), 1.0)),
        noise=math.expm1(sigma),
        profile_periods=proposed,
        profile_verdict=verdict,
        scores=scores,
        note=note,
    )


def _step_share_of(x: np.ndarray, y: np.ndarray, fit: Fit) -> float:
    levels = np.array([np.median(y[a:b]) for a, b in fit.groups])
    return _step_share(x, y, fit.groups, levels)


def _step_share(
    x: np.ndarray, y: np.ndarray, groups: tuple[tuple[int, int], ...], levels: np.ndarray
) -> float:
    """Share of the latency rise that happens at plateau boundaries.

    A common within-plateau slope (the median of the slopes of all pairs of points in the
    same plateau: robust to noise and outliers) gives the rise inside the plateaus (slope
    times their widths) and the part of each jump that the slope alone would produce over
    the gap between two measured plateaus; only the excess is a step.
    """
    slopes = []
    for a, b in groups:
        i, j = np.triu_indices(b - a, k=1)
        dx = (x[a:b][j] - x[a:b][i]).astype(float)
        slopes.append((y[a:b][j] - y[a:b][i]) / dx)
    pooled = np.concatenate(slopes) if slopes else np.zeros(0)
    slope = abs(float(np.median(pooled))) if pooled.size else 0.0
    inside = slope * float(sum(x[b - 1] - x[a] for a, b in groups))
    gaps = np.array([x[b] - x[b - 1] for _, b in groups[:-1]], dtype=float)
    jumps = np.abs(np.diff(levels))
    excess = float(np.maximum(jumps - slope * gaps, 0.0).sum())
    total = float(jumps.sum()) + inside
    return excess / total if total > 0 else 0.0


def _cuts(fit: Fit) -> set[int]:
    """Indices of the measured values where a new plateau (or the stepped regime) begins."""
    return {a for a, _ in fit.groups if a > 0}


def _best_rival(best: Fit, periodic: list[Fit]) -> Fit | None:
    """The best periodic fit that splits the measured values in an incompatible way.

    A fit whose plateau cuts contain or refine the winner's (a divisor or multiple of its
    period, or an offset that splits the sweep identically) is the same answer, not a rival.
    """
    mine = _cuts(best)
    rivals = [f for f in periodic if not (_cuts(f) <= mine or mine <= _cuts(f))]
    return min(rivals, key=lambda f: f.score, default=None)


def _verdict(best: Fit, proposed: tuple[int, ...], rival: Fit | None) -> tuple[str, str]:
    if best.family == "periodic":
        found = f"period {best.period}" + (f", offset {best.offset}" if best.offset else "")
        if best.start:
            found += f" above {best.start}"
    else:
        found = f"irregular steps at {', '.join(map(str, best.boundaries))}"
    if not proposed:
        return "none", f"found {found} (no profile proposal)"
    if best.period in proposed:
        return "agreed", f"found {found}, as the profile proposed"
    said = ", ".join(map(str, proposed))
    return "overruled", f"found {found}; the profile proposed period {said}, the data overrules it"


__all__ = [
    "MIN_POINTS",
    "StepDetection",
    "StepDetectionError",
    "detect_steps",
    "step_label",
]
