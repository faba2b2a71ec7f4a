"""What an evaluation is asked and what it found: settings, result frames, acceptance figures.

:class:`EvaluationSettings` says what :func:`prmodel.workflows.evaluation.evaluate` compares;
:class:`EvaluationResult` holds its frames (curve rows have the columns of
:data:`CURVE_COLUMNS`) and derives the summaries, the issue's goals and a JSON-friendly copy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.layers import LayerKind, parse_kind
from prmodel.select.samplers import SAMPLER_NAMES, SAMPLERS

if TYPE_CHECKING:
    from prmodel.measure.runner import MeasureSettings
    from prmodel.networks import NetworkMeasureSettings
    from prmodel.select.spaces import ParameterSpace

METRICS: tuple[str, ...] = ("mape", "rmspe", "within_5", "within_10", "spearman")

CURVE_COLUMNS: tuple[str, ...] = (
    "kind",
    "sampler",
    "budget",
    "seed",
    "test_set",
    "train_rows",
    "dropped_overlap",
    *METRICS,
    "test_rows",
    "bench_seconds",
    "fit_seconds",
)
"""Columns of :attr:`EvaluationResult.curves`. ``test_set`` is ``random`` or ``networks``,
with ``-depthwise`` (groups = channels) and, where the test set has them, ``-grouped``
(other grouped convs) subsets for conv; ``train_rows`` the layers trained on (after dropping
test overlaps); ``bench_seconds`` the target time the training sample cost (calls times the
median run time of each measured layer)."""

NETWORK_COLUMNS: tuple[str, ...] = (
    "network",
    "sampler",
    "budget",
    "seed",
    "layers",
    "measured_us",
    "predicted_us",
    "error_pct",
    "truth",
)
"""Columns of :attr:`EvaluationResult.networks`; ``truth`` says what ``measured_us`` is."""


class EvaluationError(PrmodelError, ValueError):
    """An evaluation that cannot run as asked (one sentence names the setting at fault)."""


@dataclass(frozen=True, kw_only=True)
class EvaluationSettings:
    """What :func:`evaluate` compares and how hard.

    Attributes:
        kinds: Layer kinds to evaluate.
        budgets: Training-set sizes of the learning curves.
        samplers: Any of ``pr``, ``random``, ``adaptive`` and ``networks`` (the network
            prior, drawn around the layers of :func:`evaluate`'s ``prior_networks``).
        seeds: Repetitions of every (kind, sampler, budget), seeds 0 .. seeds-1.
        test_size: Random test layers per kind.
        network_budget: Budget of the whole-network comparison (default: the largest).
        regressor: One of :data:`prmodel.train.regressors.REGRESSORS`.
        trials: Optuna trials per fit (0: default hyper-parameters, bounded time).
        pr_features: Give every sampler's model the PR-aware features (the same features for
            all samplers, so only the samples differ).
        plateau_mapping: Models trained on PR samples predict a layer's plateau
            representative (:class:`~prmodel.train.model.LatencyModel`'s
            ``plateau_mapping``), as the PR method prescribes: a PR sample holds only plateau
            ends, so it says nothing about values inside a plateau. Other samplers' models
            never map.
        noise_points: Random test layers re-measured for the noise floor (None: all).
        measure: Measurement settings for noisy targets.
        network_measure: How whole networks are timed on ONNX Runtime targets.
        spaces: The parameter space of each kind that every sampler and the random test set
            draw from (default spaces for the kinds it lacks; None: the default spaces).
        whole_networks: Also compare the models on the test networks as wholes (on ONNX
            Runtime targets this runs every network).
    """

    kinds: tuple[LayerKind, ...] = (LayerKind.CONV, LayerKind.DENSE)
    budgets: tuple[int, ...] = (100, 300, 1000)
    samplers: tuple[str, ...] = SAMPLERS
    seeds: int = 3
    test_size: int = 200
    network_budget: int | None = None
    regressor: str = "xgboost"
    trials: int = 0
    pr_features: bool = True
    plateau_mapping: bool = True
    noise_points: int | None = None
    measure: MeasureSettings | None = None
    network_measure: NetworkMeasureSettings | None = None
    spaces: Mapping[LayerKind, ParameterSpace] | None = None
    whole_networks: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(parse_kind(k) for k in self.kinds))
        object.__setattr__(self, "budgets", tuple(sorted(set(self.budgets))))
        unknown = [s for s in self.samplers if s not in SAMPLER_NAMES]
        if unknown:
            raise EvaluationError(
                f"unknown sampler {unknown[0]!r} (choose from {', '.join(SAMPLER_NAMES)})"
            )
        if not self.kinds or not self.samplers or not self.budgets:
            raise EvaluationError("an evaluation needs at least one kind, sampler and budget")
        if self.budgets[0] < 4:
            raise EvaluationError(f"budget {self.budgets[0]} is too small; use at least 4")
        if self.seeds < 1 or self.test_size < 4:
            raise EvaluationError(
                f"seeds must be >= 1 and test_size >= 4, got {self.seeds} and {self.test_size}"
            )

    @property
    def whole_network_budget(self) -> int:
        """The budget whose models estimate whole networks."""
        return self.network_budget or self.budgets[-1]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = [k.value for k in self.kinds]
        data["measure"] = asdict(self.measure) if self.measure else None
        data["network_measure"] = asdict(self.network_measure) if self.network_measure else None
        data["spaces"] = (
            {k.value: space.to_dict() for k, space in self.spaces.items()} if self.spaces else None
        )
        return data


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Everything one :func:`evaluate` run measured and computed.

    Attributes:
        curves: One row per (kind, sampler, budget, seed, test set): :data:`CURVE_COLUMNS`.
        networks: Whole-network errors: :data:`NETWORK_COLUMNS`.
        noise: Per kind, the repeat-measurement error of the test layers (``mape`` ... and
            ``points``); zeros on deterministic targets.
        costs: Per (kind, sampler), the distinct layers benchmarked over all budgets and seeds,
            their target time and the wall time this run spent measuring them.
        test_sizes: Test rows per kind and test set.
    """

    target_id: str
    fingerprint_hash: str
    deterministic: bool
    settings: EvaluationSettings
    curves: pd.DataFrame
    networks: pd.DataFrame
    noise: pd.DataFrame
    costs: pd.DataFrame
    test_sizes: Mapping[str, Mapping[str, int]]
    representatives_path: Path | None
    network_names: tuple[str, ...] = ()
    seconds: float = 0.0
    machine: Mapping[str, Any] = field(default_factory=dict)

    def noise_floor(self, kind: LayerKind | str) -> float:
        """The repeat-measurement MAPE (percent) of ``kind``'s test layers."""
        rows = self.noise[self.noise["kind"] == parse_kind(kind).value]
        return float(rows["mape"].iloc[0]) if len(rows) else math.nan

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation, min and max of every metric over the seeds."""
        keys = ["kind", "test_set", "sampler", "budget"]
        grouped = self.curves.groupby(keys, sort=True)
        table = grouped[[*METRICS, "train_rows", "bench_seconds"]].mean()
        for metric in METRICS:
            table[f"{metric}_std"] = grouped[metric].std(ddof=0)
            table[f"{metric}_min"] = grouped[metric].min()
            table[f"{metric}_max"] = grouped[metric].max()
        table["seeds"] = grouped.size()
        return table.reset_index()

    def goals(self) -> list[dict[str, Any]]:
        """The issue's acceptance figures per kind, computed on the random test set."""
        return [_goals_of(self, kind) for kind in self.settings.kinds]

    def network_summary(self) -> pd.DataFrame:
        """Per sampler: mean absolute whole-network error over networks and seeds."""
        if self.networks.empty:
            return pd.DataFrame(columns=["sampler", "budget", "network_mape", "worst_pct"])
        frame = self.networks.assign(abs_error=self.networks["error_pct"].abs())
        grouped = frame.groupby(["sampler", "budget"])
        table = grouped["abs_error"].agg(["mean", "max"]).reset_index()
        return table.rename(columns={"mean": "network_mape", "max": "worst_pct"})

    def sample_ratios(
        self, kind: LayerKind | str, test_set: str, sampler: str, *, baseline: str = "random"
    ) -> list[dict[str, Any]]:
        """How many samples ``sampler`` needs to match ``baseline`` at each of its budgets.

        On the mean MAPE over seeds of one kind and test set: for every budget ``b`` of the
        baseline, the budget at which ``sampler``'s curve first reaches the baseline's MAPE
        at ``b`` (:func:`budget_to_reach`) and the ratio ``b`` over that budget (how many
        times fewer samples it needs). ``bound`` is ``"="`` (interpolated), ``"<="`` (reached
        at the sampler's smallest budget already: the ratio is a lower bound) or
        ``"not reached"`` (not within its largest budget: no budget and no ratio).
        """
        kind = parse_kind(kind).value
        rows = self.curves[(self.curves["kind"] == kind) & (self.curves["test_set"] == test_set)]
        mean = rows.groupby(["sampler", "budget"])["mape"].mean()
        if sampler not in mean.index.get_level_values(0) or baseline not in (
            mean.index.get_level_values(0)
        ):
            return []
        curve = {int(b): float(m) for b, m in mean[sampler].items()}
        found = []
        for budget, mape in mean[baseline].items():
            reached, bound = budget_to_reach(curve, float(mape))
            found.append(
                {
                    "kind": kind,
                    "test_set": test_set,
                    "sampler": sampler,
                    "baseline": baseline,
                    "baseline_budget": int(budget),
                    "baseline_mape": float(mape),
                    "budget": reached,
                    "bound": bound,
                    "ratio": int(budget) / reached if reached else None,
                }
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy of every figure."""
        return {
            "target_id": self.target_id,
            "fingerprint_hash": self.fingerprint_hash,
            "deterministic": self.deterministic,
            "settings": self.settings.as_dict(),
            "machine": dict(self.machine),
            "seconds": self.seconds,
            "representatives": str(self.representatives_path or ""),
            "networks_used": list(self.network_names),
            "test_sizes": {k: dict(v) for k, v in self.test_sizes.items()},
            "noise": _records(self.noise),
            "summary": _records(self.summary()),
            "goals": self.goals(),
            "network_summary": _records(self.network_summary()),
            "networks": _records(self.networks),
            "costs": _records(self.costs),
            "curves": _records(self.curves),
        }


# -- acceptance figures -----------------------------------------------------------------------


def budget_to_reach(curve: Mapping[int, float], mape: float) -> tuple[float | None, str]:
    """The budget at which a learning curve first reaches ``mape``, on log budget.

    Args:
        curve: Mean MAPE by budget.
        mape: The MAPE to reach.

    Returns:
        ``(budget, "=")`` interpolated linearly in MAPE between the two budgets around the
        first crossing, on a logarithmic budget axis; ``(smallest budget, "<=")`` where the
        curve starts at or below ``mape``; ``(None, "not reached")`` where it never gets there.
    """
    points = sorted((int(b), float(m)) for b, m in curve.items() if math.isfinite(m))
    if not points:
        return None, "not reached"
    if points[0][1] <= mape:
        return float(points[0][0]), "<="
    for (b0, m0), (b1, m1) in itertools.pairwise(points):
        if m1 <= mape < m0:
            share = (m0 - mape) / (m0 - m1)
            if share >= 1:
                return float(b1), "="
            return math.exp(math.log(b0) + share * (math.log(b1) - math.log(b0))), "="
    return None, "not reached"


def _goals_of(result: EvaluationResult, kind: LayerKind) -> dict[str, Any]:
    """The issue's goals for one kind: PR vs random at 1000, the 5x rule, the noise floor."""
    curves = result.curves[(result.curves["kind"] == kind.value)]
    curves = curves[curves["test_set"] == "random"]
    mean = curves.groupby(["sampler", "budget"])["mape"].mean()
    pr = mean.get("pr", pd.Series(dtype=float))
    rnd = mean.get("random", pd.Series(dtype=float))
    floor = result.noise_floor(kind)
    goals: dict[str, Any] = {"kind": kind.value, "noise_floor_mape": floor}
    at = 1000 if 1000 in pr.index and 1000 in rnd.index else _common_max(pr, rnd)
    if at is not None:
        goals["compared_at"] = int(at)
        goals["pr_mape"] = float(pr[at])
        goals["random_mape"] = float(rnd[at])
        goals["pr_over_random"] = float(pr[at] / rnd[at]) if rnd[at] > 0 else math.nan
        goals["pr_half_of_random"] = bool(pr[at] <= 0.5 * rnd[at])
    if len(rnd) and len(pr):
        top = int(rnd.index.max())
        reached = [int(n) for n in pr.index if pr[n] <= rnd[top]]
        goals["random_best_budget"] = top
        goals["random_best_mape"] = float(rnd[top])
        goals["pr_budget_to_match"] = min(reached) if reached else None
        goals["pr_5x_fewer"] = bool(reached) and min(reached) * 5 <= top
    small = pr[pr.index <= 2000] if len(pr) else pr
    if len(small):
        goals["pr_best_mape_le_2000"] = float(small.min())
        goals["within_1_5x_noise_floor"] = bool(floor > 0 and small.min() <= 1.5 * floor) or bool(
            floor == 0 and small.min() == 0
        )
    return goals


def _common_max(a: pd.Series, b: pd.Series) -> int | None:
    common = sorted(set(a.index) & set(b.index))
    return int(common[-1]) if common else None


# -- JSON -------------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "CURVE_COLUMNS",
    "METRICS",
    "NETWORK_COLUMNS",
    "EvaluationError",
    "EvaluationResult",
    "EvaluationSettings",
    "budget_to_reach",
]
