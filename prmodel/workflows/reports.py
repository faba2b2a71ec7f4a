"""Reports of an evaluation: CSV tables, a markdown document, JSON, log-log plots, MLflow.

:func:`write_report` writes every figure of an
:class:`~prmodel.workflows.evaluation.EvaluationResult` into a folder (``curves.csv``,
``summary.csv``, ``networks.csv``, ``noise.csv``, ``costs.csv``, ``evaluation.json``,
``evaluation.md`` and one ``mape_<kind>.png`` per kind); :func:`log_evaluation` logs the run
to MLflow in the target's experiment. :func:`evaluate_and_report` does all three, as
``prmodel evaluate`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from prmodel.layers import LayerKind
from prmodel.targets.base import Target
from prmodel.train.tracking import mlflow_session, target_experiment_id, tracking_uri_for
from prmodel.workflows.evaluation import evaluate
from prmodel.workflows.evaluation_results import EvaluationResult, EvaluationSettings
from prmodel.workflows.review import evaluation_run_name, log_evaluation_review
from prmodel.workspace import Workspace


def write_report(result: EvaluationResult, folder: str | Path) -> list[Path]:
    """Write CSVs, ``evaluation.json``, ``evaluation.md`` and ``mape_<kind>.png`` plots.

    Returns the written paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    tables = {
        "curves.csv": result.curves,
        "summary.csv": result.summary(),
        "networks.csv": result.networks,
        "noise.csv": result.noise,
        "costs.csv": result.costs,
    }
    for name, table in tables.items():
        table.to_csv(folder / name, index=False)
        written.append(folder / name)
    json_path = folder / "evaluation.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
    md_path = folder / "evaluation.md"
    md_path.write_text(markdown_report(result))
    written += [json_path, md_path, *plot_curves(result, folder)]
    return written


def plot_curves(result: EvaluationResult, folder: Path) -> list[Path]:
    """One log-log PNG per kind: test MAPE against budget, one line per sampler."""
    import matplotlib  # optional heavy dependency, only for the plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    paths = []
    for kind in result.settings.kinds:
        rows = summary[(summary["kind"] == kind.value) & (summary["test_set"] == "random")]
        if rows.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for sampler, line in rows.groupby("sampler"):
            ax.errorbar(
                line["budget"],
                line["mape"],
                yerr=line["mape_std"],
                marker="o",
                capsize=3,
                label=str(sampler),
            )
        floor = result.noise_floor(kind)
        if floor > 0:
            ax.axhline(floor, color="grey", linestyle="--", label=f"noise floor {floor:.2g} %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples (N)")
        ax.set_ylabel("test MAPE (%)")
        title = f"{kind.value} on {result.target_id}"
        ax.set_title(title + (" (deterministic: noise floor 0)" if floor == 0 else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / f"mape_{kind.value}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown_report(result: EvaluationResult) -> str:
    """The evaluation as a markdown document: curves, noise floor, networks, costs, goals."""
    s = result.settings
    lines = [
        f"# Evaluation on {result.target_id}",
        "",
        f"Machine: {result.machine.get('cpu')}, {result.machine.get('logical_cores')} cores. "
        f"Regressor {s.regressor}, {s.trials} Optuna trials per fit"
        f"{' (default hyper-parameters)' if s.trials == 0 else ''}, seeds 0-{s.seeds - 1}, "
        f"PR features {'on' if s.pr_features else 'off'} for every sampler. "
        f"Took {result.seconds:.0f} s.",
        "",
        f"Test sets: {_test_size_text(result)}. "
        f"Reference networks: {', '.join(result.network_names) or 'none'}.",
        "",
    ]
    summary = result.summary()
    for kind in s.kinds:
        lines += _kind_section(result, summary, kind)
    lines += _network_section(result)
    lines += ["## Cost (all budgets and seeds)", "", _markdown_table(result.costs), ""]
    lines += ["## Goals", "", _markdown_table(pd.DataFrame(result.goals())), ""]
    return "\n".join(lines)


def _test_size_text(result: EvaluationResult) -> str:
    return "; ".join(
        f"{kind}: {sizes['random']} random + {sizes['networks']} network layers"
        for kind, sizes in result.test_sizes.items()
    )


def _kind_section(result: EvaluationResult, summary: pd.DataFrame, kind: LayerKind) -> list[str]:
    floor = result.noise_floor(kind)
    lines = [
        f"## {kind.value}",
        "",
        f"Noise floor (repeat-measurement MAPE): {floor:.3g} %"
        + (" (deterministic target)" if result.deterministic else ""),
        "",
    ]
    rows = summary[summary["kind"] == kind.value]
    for test_set, part in rows.groupby("test_set", sort=False):
        table = part.assign(
            mape=[f"{m:.3g} ± {d:.2g}" for m, d in zip(part["mape"], part["mape_std"], strict=True)]
        )[
            [
                "sampler",
                "budget",
                "mape",
                "rmspe",
                "within_10",
                "spearman",
                "train_rows",
                "bench_seconds",
            ]
        ]
        lines += [f"Test set `{test_set}` (mean ± std over seeds):", "", _markdown_table(table), ""]
    return lines


def _network_section(result: EvaluationResult) -> list[str]:
    if result.networks.empty:
        return []
    truth = result.networks["truth"].iloc[0]
    return [
        f"## Whole networks (budget {result.settings.whole_network_budget}; truth: {truth})",
        "",
        _markdown_table(result.network_summary()),
        "",
        _markdown_table(
            result.networks.groupby(["network", "sampler"])["error_pct"]
            .mean()
            .unstack()
            .reset_index()
        ),
        "",
    ]


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in frame.to_dict("records"):
        lines.append("| " + " | ".join(_cell(record[c]) for c in frame.columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -- the whole command ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """An evaluation with where its report went.

    Attributes:
        result: Every figure of the evaluation.
        folder: The report folder.
        files: The files written into it.
        run_id: The MLflow run (None when not tracked).
    """

    result: EvaluationResult
    folder: Path
    files: tuple[Path, ...]
    run_id: str | None


def evaluate_and_report(
    target: Target,
    *,
    workspace: Workspace,
    settings: EvaluationSettings | None = None,
    networks: Sequence[str | Path] = (),
    prior_networks: Sequence[str | Path] = (),
    folder: Path | None = None,
    track: bool = True,
    progress: bool = True,
) -> EvaluationReport:
    """Run :func:`~prmodel.workflows.evaluation.evaluate`, write its report, log it to MLflow.

    Args:
        target: The target to evaluate on.
        workspace: The workspace (created if missing) whose store and PR set are used.
        settings: Kinds, budgets, samplers, seeds, test size, regressor.
        networks: Test ONNX networks (their layers join the test sets).
        prior_networks: ONNX networks the ``networks`` sampler draws around (never test
            networks).
        folder: The report folder (default: ``<workspace>/benchmarks/results/<target_id>``).
        track: Log the evaluation as an MLflow run.
        progress: Progress bars on stderr.
    """
    workspace.create()
    result = evaluate(
        target,
        workspace=workspace,
        settings=settings,
        networks=[str(p) for p in networks],
        prior_networks=[str(p) for p in prior_networks],
        progress=progress,
    )
    folder = folder or workspace.results_dir / target.target_id
    files = write_report(result, folder)
    run_id = log_evaluation(result, workspace=workspace, files=files) if track else None
    return EvaluationReport(result, folder, tuple(files), run_id)


# -- MLflow -----------------------------------------------------------------------------------


def log_evaluation(
    result: EvaluationResult, *, workspace: Workspace, files: Sequence[Path] = ()
) -> str:
    """Log the evaluation as one MLflow run in the target's experiment; returns the run id.

    Parameters are the settings, metrics the mean test MAPE per (kind, sampler, budget) on
    the random test set and the noise floors, artifacts the report files, plus the plots
    and description of :func:`~prmodel.workflows.review.log_evaluation_review`.
    """
    uri = tracking_uri_for(workspace)
    with mlflow_session(uri) as mlflow:
        experiment_id = target_experiment_id(mlflow, result.target_id, workspace, uri)
        name = evaluation_run_name(result)
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.set_tags({"target_id": result.target_id, "stage": "evaluation"})
            log_evaluation_review(mlflow, result)
            mlflow.log_params(_flat_params(result))
            mlflow.log_metrics(_evaluation_metrics(result))
            for path in files:
                mlflow.log_artifact(str(path), artifact_path="evaluation")
            run_id: str = run.info.run_id
    return run_id


def _flat_params(result: EvaluationResult) -> dict[str, Any]:
    params = {k: str(v) for k, v in result.settings.as_dict().items()}
    return {**params, "target_id": result.target_id, "fingerprint_hash": result.fingerprint_hash}


def _evaluation_metrics(result: EvaluationResult) -> dict[str, float]:
    metrics: dict[str, float] = {}
    summary = result.summary()
    for row in summary[summary["test_set"] == "random"].to_dict("records"):
        name = f"{row['kind']}_{row['sampler']}_N{row['budget']}_mape"
        metrics[name] = float(row["mape"])
    for row in result.noise.to_dict("records"):
        metrics[f"{row['kind']}_noise_floor_mape"] = float(row["mape"])
    for row in result.network_summary().to_dict("records"):
        metrics[f"network_{row['sampler']}_mape"] = float(row["network_mape"])
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


__all__ = [
    "EvaluationReport",
    "evaluate_and_report",
    "log_evaluation",
    "markdown_report",
    "plot_curves",
    "write_report",
]
