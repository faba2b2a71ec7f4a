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

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prmodel.errors import PrmodelError

MIN_POINTS = 8
"""Fewer distinct swept values than this cannot show a staircase."""
PROFILE_PRIOR = 0.8
"""Prior probability that the step period is one the hardware profile proposes."""
EXACT_MIN_STEP_SHARE = 0.8
"""On an exact sweep, steps must carry this share of the rise (a smooth curve has <= 2/3)."""
EXACT_TOLERANCE = 0.005
"""Noise scale assumed for deterministic (exact) sweeps: shape errors below 0.5 % are noise."""


class StepDetectionError(PrmodelError, ValueError):
    """A sweep that step detection cannot use (mismatched lengths, non-positive latency)."""


Noise = float | np.ndarray
"""A noise scale in log units: one for all points, or one per point."""

_TRUNCATE = 3.0  # on noisy sweeps, residuals beyond 3 noise units cost as outliers do
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


@dataclass(frozen=True)
class _Fit:
    """One candidate model: its score and, for step models, its plateau structure."""

    score: float
    family: str
    period: int | None = None
    offset: int = 0
    start: int = 0
    groups: tuple[tuple[int, int], ...] = ()  # (first, end) index ranges of plateaus
    boundaries: tuple[int, ...] = ()
    levels: str = "free"  # periodic: "padded" when levels follow a curve of the padded value
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)


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
    search = _Search(x, y, proposed, starts, max_period, quantum, outliers)
    found = _detect(search, _noise(search, noise_floor, outliers=outliers))
    if tail:
        note = f"{found.note} ({tail} tail values above {x[-1]} not used)"
        found = replace(found, note=note)
    return found


def _noise(search: _Search, floor: float, *, outliers: bool) -> float:
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


def _detect(search: _Search, sigma: float) -> StepDetection:
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
    end = _dense_end(x)
    return x[: end + 1], y[: end + 1], len(x) - end - 1


def _dense_end(x: np.ndarray) -> int:
    gaps = np.diff(x)
    if gaps.size == 0:
        return len(x) - 1
    wide = np.flatnonzero(gaps > 4 * np.median(gaps))
    return int(wide[0]) if wide.size else len(x) - 1


def _resolution(latencies: Any) -> float:
    # Whole microseconds, or medians of them (halves): a profiler that reports whole µs.
    t = 2.0 * np.asarray(latencies, dtype=float)
    return 1.0 if np.allclose(t, np.round(t), rtol=0, atol=1e-9) else 0.0


def _noise_scale(y: np.ndarray, floor: float) -> float:
    # MAD of successive differences: plateaus give pure noise differences, steps and
    # outliers are a minority that the median ignores; sqrt(2) undoes the differencing.
    diffs = np.diff(y)
    return max(_mad(diffs) / math.sqrt(2.0), floor)


def _mad(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def _refine_noise(sigma: float, smooth: _Fit, periodic: list[_Fit], floor: float) -> float:
    padded = [f for f in periodic if f.levels == "padded"]
    fits = [smooth, *([min(padded, key=lambda f: f.score)] if padded else [])]
    scales = [_mad(f.residuals) for f in fits if f.residuals.size]
    return max(min(scales, default=sigma), floor)


def _loss(residuals: np.ndarray, sigma: Noise, cap: float) -> float:
    return float(_rho(residuals / sigma, cap).sum())


def _rho(scaled: np.ndarray, cap: float) -> np.ndarray:
    """Squared residuals in noise units, truncated at ``cap`` (outliers cost ``cap``)."""
    return np.minimum(scaled**2, cap)


class _Search:
    """Scores every candidate model of one sweep for a given noise scale."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        proposed: tuple[int, ...],
        starts: tuple[int, ...],
        max_period: int | None,
        quantum: float,
        outliers: bool,
    ) -> None:
        self.x, self.y = x, y
        self.quantum = quantum
        # A deterministic sweep has no outliers: every miss counts in full there.
        self.cap = _TRUNCATE**2 if outliers else math.inf
        # Rounding to the timer's resolution is uniform noise of quantum / sqrt(12), in log
        # scale relative to the latency.
        self.rounding = quantum / (math.sqrt(12.0) * np.exp(y))
        self.log_n = math.log(len(x))
        self.proposed = proposed
        self.starts = sorted({0, *(s for s in starts if x[0] <= s < x[-3])})
        self.max_period = max_period

    def run(self, noise: float) -> tuple[_Fit, list[_Fit], _Fit | None]:
        sigma = np.sqrt(noise**2 + self.rounding**2)  # per point
        return self.smooth(sigma), self.periodic(sigma), self.breakpoints(sigma)

    # -- smooth models --
    def smooth(self, sigma: np.ndarray) -> _Fit:
        x, y = self.x, self.y
        u = np.log(x.astype(float))
        xs = x.astype(float)
        bases = [
            np.ones((len(x), 1)),
            _spline_basis(u, ()),
            _spline_basis(xs, ()),
            _spline_basis(u, _knots(u, 3, by_quantile=False)),
            _spline_basis(xs, _knots(xs, 3, by_quantile=True)),
        ]
        candidates = [
            (y - basis @ _robust_lstsq(basis, y, sigma), basis.shape[1]) for basis in bases
        ]
        candidates.append((y - _robust_affine(xs, y, sigma), 2))
        candidates.append((y - _robust_affine(xs, y, sigma, degree=2), 3))  # area-like growth
        best = _Fit(math.inf, "smooth")
        for residuals, size in candidates:
            score = _loss(residuals, sigma, self.cap) + size * self.log_n
            if score < best.score:
                best = _Fit(score, "smooth", residuals=residuals)
        return best

    # -- periodic models --
    def periodic(self, sigma: np.ndarray) -> list[_Fit]:
        fits: list[_Fit] = []
        for start in self.starts:
            above = self.x > start
            span = _dense_span(self.x[above])
            limit = self.max_period or max(span // 3, 2)
            periods = sorted(
                set(range(2, limit + 1)) | {p for p in self.proposed if p <= span // 2}
            )
            others = [p for p in periods if p not in self.proposed]
            below = self._lower_regime_cost(~above, sigma)
            for period in periods:
                prior = self._period_prior(period, len(others)) + (2 * math.log(2) if start else 0)
                for offset in range(period):
                    fit = self._periodic_fit(sigma, period, offset, start, above)
                    if fit is not None:
                        score = fit.score + below + prior + _offset_prior(offset, period)
                        fits.append(replace(fit, score=score))
        return fits

    def _period_prior(self, period: int, others: int) -> float:
        """-2 log prior of ``period``: PROFILE_PRIOR of the mass on the proposed periods."""
        if not self.proposed:
            return 2 * math.log(max(others, 1))
        if period in self.proposed:
            return 2 * math.log(len(self.proposed) / PROFILE_PRIOR)
        return 2 * math.log(max(others, 1) / (1 - PROFILE_PRIOR))

    def _lower_regime_cost(self, below: np.ndarray, sigma: np.ndarray) -> float:
        x, y, sigma = self.x[below], self.y[below], sigma[below]
        if len(x) == 0:
            return 0.0
        if len(x) < 3:
            return len(x) * self.log_n  # each value its own level
        residuals = y - _robust_line(np.log(x.astype(float)), y, sigma)
        return _loss(residuals, sigma, self.cap) + 2 * self.log_n

    def _periodic_fit(
        self, sigma: np.ndarray, period: int, offset: int, start: int, above: np.ndarray
    ) -> _Fit | None:
        first = int(np.argmax(above))
        sigma = sigma[first:]
        ids = np.ceil((self.x[first:] - offset) / period).astype(int)
        edges = np.concatenate(([0], np.flatnonzero(np.diff(ids)) + 1, [len(ids)]))
        if len(edges) - 1 < 3 or np.diff(edges).max() < 2:
            return None  # fewer than three plateaus, or no plateau with two points
        ya = self.y[first:]
        lengths = np.diff(edges)
        free = ya - np.repeat(_group_medians(ya, edges), lengths)
        free_score = _loss(free, sigma, self.cap) + len(lengths) * self.log_n
        # Hardware pads the work to the block, so plateau levels usually follow a smooth
        # curve of the padded value: two parameters instead of one level per plateau.
        padded = (offset + ids * period).astype(float)
        best_levels, residuals, score = "free", free, free_score
        for fitted in (
            ya - _robust_affine(padded, ya, sigma),  # latency = a + b * padded work
            ya - _robust_line(np.log(padded), ya, sigma),  # a power law of the padded value
        ):
            candidate = _loss(fitted, sigma, self.cap) + 2 * self.log_n
            if candidate < score:
                best_levels, residuals, score = "padded", fitted, candidate
        groups = tuple((first + int(a), first + int(b)) for a, b in itertools.pairwise(edges))
        boundaries = tuple(int(offset + ids[b - 1] * period) for b in edges[1:-1])
        return _Fit(
            score + 2 * math.log(2),
            "periodic",
            period,
            offset,
            start,
            groups,
            boundaries,
            best_levels,
            residuals,
        )

    # -- free breakpoints --
    def breakpoints(self, sigma: np.ndarray) -> _Fit | None:
        y, n = self.y, len(self.y)
        segment_cost = _segment_costs(y, sigma, self.cap)
        # A segment costs its level; each boundary its position (-2 log 1/n) on top.
        best = np.full(n + 1, np.inf)
        best[0] = -2 * self.log_n  # the first segment has no boundary position
        back = np.zeros(n + 1, dtype=int)
        for b in range(2, n + 1):
            totals = best[:b] + segment_cost[:b, b] + 3 * self.log_n
            back[b] = int(np.argmin(totals))
            best[b] = totals[back[b]]
        edges = [n]
        while edges[-1] > 0:
            edges.append(int(back[edges[-1]]))
        edges.reverse()
        if len(edges) < 3:
            return None  # one segment: no steps
        groups = tuple((a, b) for a, b in itertools.pairwise(edges))
        boundaries = tuple(int(self.x[b - 1]) for _, b in groups[:-1])
        # Irregular staircases are the exception: the family itself costs a prior of
        # 2 log n, so a periodic fit that only misses an outlier at a plateau edge wins.
        score = float(best[n]) + 2 * self.log_n
        return _Fit(score, "breakpoints", groups=groups, boundaries=boundaries)


def _dense_span(x: np.ndarray) -> int:
    """The span of the sweep's dense part (periods are searched up to a third of it)."""
    return int(x[_dense_end(x)] - x[0]) + 1


def _offset_prior(offset: int, period: int) -> float:
    # Hardware blocks are usually aligned to zero: half the prior mass on offset 0.
    return 2 * math.log(2) if offset == 0 else 2 * math.log(2 * (period - 1))


def _group_medians(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Medians of the contiguous groups ``values[edges[i]:edges[i+1]]`` (vectorised)."""
    lengths = np.diff(edges)
    ids = np.repeat(np.arange(len(lengths)), lengths)
    ordered = values[np.lexsort((values, ids))]  # sorted within each group
    low = edges[:-1] + (lengths - 1) // 2
    high = edges[:-1] + lengths // 2
    return (ordered[low] + ordered[high]) / 2


def _segment_costs(y: np.ndarray, sigma: np.ndarray, cap: float) -> np.ndarray:
    """Loss of every segment ``y[a:b]`` (at least two points) around its median."""
    n = len(y)
    costs = np.full((n + 1, n + 1), np.inf)
    for a in range(n - 1):
        tail = y[a:]
        m = len(tail)
        table = np.where(np.tri(m, dtype=bool), tail[None, :], np.nan)[1:]  # rows: tail[:k]
        ordered = np.sort(table, axis=1)  # NaN sorts last
        counts = np.arange(2, m + 1)
        rows = np.arange(m - 1)
        medians = (ordered[rows, (counts - 1) // 2] + ordered[rows, counts // 2]) / 2
        scaled = _rho((table - medians[:, None]) / sigma[None, a:], cap)
        costs[a, a + 2 :] = np.nansum(scaled, axis=1)
    return costs


def _knots(t: np.ndarray, count: int, *, by_quantile: bool) -> tuple[float, ...]:
    if by_quantile:
        inner = np.quantile(t, np.linspace(0, 1, count + 2)[1:-1])
    else:
        inner = np.linspace(t.min(), t.max(), count + 2)[1:-1]
    return tuple(float(k) for k in np.unique(inner))


def _spline_basis(t: np.ndarray, knots: tuple[float, ...]) -> np.ndarray:
    columns = [np.ones_like(t), t - t.mean()]
    columns += [np.maximum(t - k, 0.0) for k in knots]
    return np.column_stack(columns)


def _tukey_weights(residuals: np.ndarray, sigma: Noise) -> np.ndarray:
    scaled = residuals / (4.685 * np.maximum(sigma, 1e-12))
    return np.where(np.abs(scaled) < 1, (1 - scaled**2) ** 2, 0.0)


def _robust_lstsq(basis: np.ndarray, y: np.ndarray, sigma: Noise) -> np.ndarray:
    # Iteratively reweighted least squares with Tukey's biweight: outliers get weight 0.
    weights = np.ones_like(y)
    coef = np.zeros(basis.shape[1])
    for _ in range(6):
        root = np.sqrt(weights)[:, None]
        coef = np.linalg.lstsq(basis * root, y * root[:, 0], rcond=None)[0]
        weights = _tukey_weights(y - basis @ coef, sigma)
        if weights.sum() < basis.shape[1]:
            break
    return coef


def _robust_line(t: np.ndarray, y: np.ndarray, sigma: Noise) -> np.ndarray:
    """Fitted values of a robust straight line through (t, y) (closed-form IRLS)."""
    weights = np.ones_like(y)
    fitted = np.full_like(y, np.median(y))
    for _ in range(6):
        total = weights.sum()
        if total < 2:
            break
        tm = (weights * t).sum() / total
        ym = (weights * y).sum() / total
        spread = (weights * (t - tm) ** 2).sum()
        slope = (weights * (t - tm) * (y - ym)).sum() / spread if spread > 0 else 0.0
        fitted = ym + slope * (t - tm)
        weights = _tukey_weights(y - fitted, sigma)
    return fitted


def _robust_affine(t: np.ndarray, y: np.ndarray, sigma: Noise, *, degree: int = 1) -> np.ndarray:
    """Log of a robust fit ``latency = a + b * t (+ c * t**2)`` with relative residuals.

    Weighted least squares in latency with weights ``1 / fitted**2`` makes the residuals
    relative; Tukey weights on the log residuals drop outliers. Falls back to a straight line
    in log scale where the fit turns non-positive.
    """
    latency = np.exp(y)
    scale = max(float(np.abs(t).max()), 1.0)
    basis = np.vander(t / scale, degree + 1, increasing=True)
    fitted = latency.copy()
    robust = np.ones_like(y)
    for _ in range(6):
        root = np.sqrt(robust) / fitted
        coef = np.linalg.lstsq(basis * root[:, None], latency * root, rcond=None)[0]
        fitted = basis @ coef
        if np.any(fitted <= 0):
            return _robust_line(t, y, sigma)
        robust = _tukey_weights(y - np.log(fitted), sigma)
        if robust.sum() < degree + 1:
            break
    return np.log(fitted)


def _prefer_measured_boundaries(x: np.ndarray, best: _Fit, fits: list[_Fit]) -> _Fit:
    # Offsets that split the measured values identically fit identically; of those, prefer
    # the one whose boundaries sit on measured values (the last value of each plateau).
    same = [
        f
        for f in fits
        if f.period == best.period and f.start == best.start and f.groups == best.groups
    ]
    measured = set(x.tolist())

    def on_measured(f: _Fit) -> tuple[int, float, int]:
        hits = sum(b in measured for b in f.boundaries)
        return (-hits, f.score, f.offset)

    return min(same, key=on_measured) if same else best


# -- describing the result --


def _jumps_within_resolution(y: np.ndarray, fit: _Fit, quantum: float) -> bool:
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
    smooth: _Fit,
    best_step: _Fit | None,
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
    best: _Fit,
    smooth: _Fit,
    periodic: list[_Fit],
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


def _step_share_of(x: np.ndarray, y: np.ndarray, fit: _Fit) -> float:
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


def _cuts(fit: _Fit) -> set[int]:
    """Indices of the measured values where a new plateau (or the stepped regime) begins."""
    return {a for a, _ in fit.groups if a > 0}


def _best_rival(best: _Fit, periodic: list[_Fit]) -> _Fit | None:
    """The best periodic fit that splits the measured values in an incompatible way.

    A fit whose plateau cuts contain or refine the winner's (a divisor or multiple of its
    period, or an offset that splits the sweep identically) is the same answer, not a rival.
    """
    mine = _cuts(best)
    rivals = [f for f in periodic if not (_cuts(f) <= mine or mine <= _cuts(f))]
    return min(rivals, key=lambda f: f.score, default=None)


def _verdict(best: _Fit, proposed: tuple[int, ...], rival: _Fit | None) -> tuple[str, str]:
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


# -- plain data -------------------------------------------------------------------------------


__all__ = [
    "MIN_POINTS",
    "StepDetection",
    "StepDetectionError",
    "detect_steps",
    "step_label",
]
