"""The quickstart's settings and results, and where it writes its summary.

:class:`QuickstartSettings` says how much :func:`prmodel.workflows.quickstart.run_quickstart`
does; :class:`QuickstartResult` holds what every stage found and renders the summary rows
and the JSON summary written to :func:`summary_path`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prmodel.errors import PrmodelError
from prmodel.layers import LayerKind, parse_kind
from prmodel.measure.runner import MeasureSettings, SweepReport
from prmodel.networks import NetworkMeasureSettings
from prmodel.select.staircase import Plateau, StaircasePoint
from prmodel.train.training import TrainingReport
from prmodel.workflows.selection import SelectionResult
from prmodel.workspace import Workspace

QUICK_MEASURE = MeasureSettings(batch_ms=10.0, max_rounds=9)
"""Lighter than the runner's defaults (shorter batches, fewer rounds) to keep the quickstart
short; the statistic (minimum of interleaved round medians) is the same."""


class QuickstartError(PrmodelError, ValueError):
    """A quickstart setting that cannot work (one sentence names the setting)."""


# -- settings and results ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QuickstartSettings:
    """How much the quickstart does.

    Attributes:
        kinds: Layer kinds to select, benchmark and train.
        budget: PR-sampled training layers per kind.
        test_size: Random held-out test layers per kind.
        trials: Optuna trials per kind (0: the regressor's default hyper-parameters).
        networks: Extra ONNX files to estimate besides the tiny reference networks.
        tiny_networks: Write and estimate the tiny networks of :mod:`prmodel.zoo`.
        measure: Measurement settings for noisy targets.
        network_measure: How whole networks are timed on ONNX Runtime targets.
        track: Log training runs to MLflow.
    """

    kinds: tuple[LayerKind, ...] = (LayerKind.CONV, LayerKind.DENSE, LayerKind.RELU)
    budget: int = 200
    test_size: int = 50
    trials: int = 5
    networks: tuple[Path, ...] = ()
    tiny_networks: bool = True
    measure: MeasureSettings | None = QUICK_MEASURE
    network_measure: NetworkMeasureSettings | None = None
    track: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(dict.fromkeys(parse_kind(k) for k in self.kinds)))
        object.__setattr__(self, "networks", tuple(Path(p) for p in self.networks))
        if not self.kinds:
            raise QuickstartError("the quickstart needs at least one layer kind")
        if self.budget < 8:
            raise QuickstartError(f"--budget must be at least 8 layers per kind, got {self.budget}")
        if self.test_size < 4:
            raise QuickstartError(f"--test-size must be at least 4, got {self.test_size}")
        if self.trials < 0:
            raise QuickstartError(f"--trials cannot be negative, got {self.trials}")
        for path in self.networks:
            if not path.is_file():
                raise QuickstartError(f"network file {path} does not exist")


@dataclass(frozen=True)
class StaircaseResult:
    """What the first sweep measured and where it put things."""

    target_id: str
    report: SweepReport
    points: tuple[StaircasePoint, ...]
    plateaus: tuple[Plateau, ...]
    plot_path: Path
    store_path: Path
    plan_path: Path

    @property
    def jumps(self) -> list[int]:
        """The swept values at which latency jumps."""
        return [p.value for p in self.points if p.jump]


@dataclass(frozen=True)
class NetworkRow:
    """One reference network: its estimate next to its measured (or simulated) latency.

    ``estimated_us`` covers every kernel (fallbacks included); where ``unpriced`` kernels have
    no model (kinds the quickstart did not train, named in ``missing``) it is only a lower
    bound, and ``error_pct`` is None: a lower bound has no error to report. ``measured_us``
    is the whole network's measured latency on ONNX Runtime targets and None elsewhere. The
    ``modelled_*`` figures compare only the kernels the trained models price, with their
    profiled time on ONNX Runtime and the target's own layer latency on other targets
    (``truth`` says which).
    """

    network: str
    path: Path
    kernels: int
    modelled: int
    estimated_us: float
    measured_us: float | None
    modelled_estimated_us: float
    modelled_measured_us: float
    truth: str
    unpriced: int = 0
    missing: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether ``estimated_us`` leaves unpriced kernels out (a lower bound)."""
        return self.unpriced > 0

    @property
    def error_pct(self) -> float | None:
        """Error of the whole estimate against the measured network latency, in percent
        (None for a partial estimate: a lower bound is not an estimate to be wrong by)."""
        if self.partial or self.measured_us is None or self.measured_us <= 0:
            return None
        return 100 * (self.estimated_us - self.measured_us) / self.measured_us

    @property
    def modelled_error_pct(self) -> float | None:
        """Error of the modelled kernels' estimate against their truth, in percent."""
        if self.modelled_measured_us <= 0:
            return None
        return (
            100
            * (self.modelled_estimated_us - self.modelled_measured_us)
            / (self.modelled_measured_us)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "path"},
            "path": str(self.path),
            "missing": list(self.missing),
            "partial": self.partial,
            "error_pct": self.error_pct,
            "modelled_error_pct": self.modelled_error_pct,
        }


@dataclass(frozen=True)
class MeasuredCounts:
    """Points measured, reused (already in the store) and failed over the whole quickstart."""

    measured: int = 0
    reused: int = 0
    failed: int = 0

    def plus(self, measured: int, reused: int, failed: int = 0) -> MeasuredCounts:
        return MeasuredCounts(self.measured + measured, self.reused + reused, self.failed + failed)


@dataclass(frozen=True, eq=False)
class QuickstartResult:
    """Everything the quickstart measured, trained and estimated, and where it wrote it."""

    target_id: str
    workspace: Workspace
    settings: QuickstartSettings
    staircase: StaircaseResult
    selection: SelectionResult
    training: TrainingReport
    networks: tuple[NetworkRow, ...]
    counts: MeasuredCounts
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def tracking_uri(self) -> str | None:
        """The MLflow store the training runs went to (None when not tracked)."""
        return self.training.tracking_uri

    def period_rows(self) -> list[dict[str, Any]]:
        """Per swept parameter: the steps found (period, offset, start) and the PR count."""
        return [
            {k: row[k] for k in ("kind", "parameter", "steps", "period", "confidence", "prs")}
            for row in self.selection.rows()
        ]

    def model_rows(self) -> list[dict[str, Any]]:
        """Per kind: training rows and the held-out test metrics."""
        rows = []
        for result in self.training.results:
            test = result.test_metrics or {}
            rows.append(
                {
                    "kind": result.kind.value,
                    "train_rows": result.train_rows,
                    "test_rows": len(result.test_layers),
                    "test_mape": test.get("mape"),
                    "rmspe": test.get("rmspe"),
                    "within_10": test.get("within_10"),
                    "spearman": test.get("spearman"),
                }
            )
        return rows

    def network_rows(self) -> list[dict[str, Any]]:
        """Per reference network: estimate vs measurement (see :class:`NetworkRow`)."""
        return [row.as_dict() for row in self.networks]

    def paths(self) -> dict[str, str]:
        """Where the results are: store, staircase plot, PR file and plots, models, MLflow."""
        ws = self.workspace
        return {
            "workspace": str(ws.root),
            "store": str(ws.store_path),
            "staircase_plot": str(self.staircase.plot_path),
            "representatives": str(self.selection.path),
            "representative_plots": str(ws.plots_dir(self.target_id)),
            "models": str(ws.models_dir / self.target_id),
            "networks": str(networks_dir(ws)),
            "mlflow": self.tracking_uri or "",
            "summary": str(summary_path(ws)),
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-friendly data."""
        return {
            "target_id": self.target_id,
            "settings": {
                "kinds": [k.value for k in self.settings.kinds],
                "budget": self.settings.budget,
                "test_size": self.settings.test_size,
                "trials": self.settings.trials,
                "networks": [str(p) for p in self.settings.networks],
            },
            "seconds": round(self.seconds, 1),
            "stage_seconds": {k: round(v, 1) for k, v in self.stage_seconds.items()},
            "measured": asdict(self.counts),
            "staircase": {
                "jumps": self.staircase.jumps,
                "plateaus": [asdict(p) for p in self.staircase.plateaus],
            },
            "periods": self.period_rows(),
            "models": self.model_rows(),
            "networks": self.network_rows(),
            "paths": self.paths(),
            "mlflow_ui": ui_command(self.workspace),
        }


def networks_dir(workspace: Workspace) -> Path:
    """Where the quickstart writes the reference networks."""
    return workspace.root / "networks"


def summary_path(workspace: Workspace) -> Path:
    """The JSON summary of the last quickstart."""
    return workspace.results_dir / "quickstart_summary.json"


def ui_command(workspace: Workspace) -> str:
    """The command that opens the MLflow UI on the workspace's runs."""
    return f"prmodel ui --workspace {workspace.root}"


__all__ = [
    "QUICK_MEASURE",
    "MeasuredCounts",
    "NetworkRow",
    "QuickstartError",
    "QuickstartResult",
    "QuickstartSettings",
    "StaircaseResult",
    "networks_dir",
    "summary_path",
    "ui_command",
]
