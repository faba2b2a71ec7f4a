"""The candidate models of step detection and their scores (smooth, periodic, breakpoints).

:class:`Search` fits every model of the three families to one 1-D sweep in log latency and
scores it by a robust information criterion; :mod:`prmodel.select.steps` picks the winner and
describes it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

PROFILE_PRIOR = 0.8
"""Prior probability that the step period is one the hardware profile proposes."""

Noise = float | np.ndarray
"""A noise scale in log units: one for all points, or one per point."""

_TRUNCATE = 3.0  # on noisy sweeps, residuals beyond 3 noise units cost as outliers do


@dataclass(frozen=True)
class Fit:
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


def dense_end(x: np.ndarray) -> int:
    """Index of the last value before the sweep's first wide gap (its dense part's end)."""
    gaps = np.diff(x)
    if gaps.size == 0:
        return len(x) - 1
    wide = np.flatnonzero(gaps > 4 * np.median(gaps))
    return int(wide[0]) if wide.size else len(x) - 1


def mad(values: np.ndarray) -> float:
    """Median absolute deviation, scaled to a normal standard deviation (0 when empty)."""
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def _loss(residuals: np.ndarray, sigma: Noise, cap: float) -> float:
    return float(_rho(residuals / sigma, cap).sum())


def _rho(scaled: np.ndarray, cap: float) -> np.ndarray:
    """Squared residuals in noise units, truncated at ``cap`` (outliers cost ``cap``)."""
    return np.minimum(scaled**2, cap)


class Search:
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

    def run(self, noise: float) -> tuple[Fit, list[Fit], Fit | None]:
        sigma = np.sqrt(noise**2 + self.rounding**2)  # per point
        return self.smooth(sigma), self.periodic(sigma), self.breakpoints(sigma)

    # -- smooth models --
    def smooth(self, sigma: np.ndarray) -> Fit:
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
        best = Fit(math.inf, "smooth")
        for residuals, size in candidates:
            score = _loss(residuals, sigma, self.cap) + size * self.log_n
            if score < best.score:
                best = Fit(score, "smooth", residuals=residuals)
        return best

    # -- periodic models --
    def periodic(self, sigma: np.ndarray) -> list[Fit]:
        fits: list[Fit] = []
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
    ) -> Fit | None:
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
        return Fit(
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
    def breakpoints(self, sigma: np.ndarray) -> Fit | None:
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
        return Fit(score, "breakpoints", groups=groups, boundaries=boundaries)


def _dense_span(x: np.ndarray) -> int:
    """The span of the sweep's dense part (periods are searched up to a third of it)."""
    return int(x[dense_end(x)] - x[0]) + 1


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
