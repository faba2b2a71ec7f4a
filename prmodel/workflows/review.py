"""Whole-network accuracy in MLflow: the calibration and estimate runs a reviewer reads.

Training runs (one per layer kind, :mod:`prmodel.train.tracking`) tell how well each layer
model predicts lone layers. What a user deploys on is a network's total; these runs show it,
in the target's experiment beside the training runs:

- ``calibration`` runs (:func:`calibrate_and_log`, ``prmodel calibrate``): per network the
  measurement and its spread, the plain kernel sum, the calibrated and the left-out
  (leave-one-network-out) estimate; per-kernel errors; the fitted coefficients.
- ``estimate`` runs (:func:`log_estimate`, ``prmodel estimate --log``): one network's
  estimate and its kernels and, where it was measured, the same tables and plots.
- evaluation runs (:func:`prmodel.workflows.reports.log_evaluation`) get the plots of
  :func:`log_evaluation_review`.

Tables are CSV artifacts under ``tables/`` (the MLflow UI shows them as tables), plots PNGs
under ``plots/``. Tags name what a run used: ``model.<kind>`` the registered model version
(``prmodel.<target>.<kind> v3``), ``model.<kind>.run_id`` the training run behind it,
``calibration_sha256`` and ``calibration_run_id`` the calibration; ``models_used.json`` has
the sha256 of every model file. ``prmodel.stage`` says
what the run is and ``mlflow.note.content`` describes it in words.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prmodel.errors import PrmodelError
from prmodel.estimate.calibration import Calibration, calibration_path
from prmodel.estimate.compare import Comparison
from prmodel.estimate.estimator import NetworkEstimate
from prmodel.estimate.kernels import InputShapes, ModelInput
from prmodel.networks import NetworkMeasureSettings
from prmodel.targets import get_target
from prmodel.targets.base import Target
from prmodel.train.artifacts import list_model_cards
from prmodel.train.model_registry import VersionLink, find_versions
from prmodel.train.tracking import (
    NOTE_TAG,
    STAGE_TAG,
    mlflow_session,
    target_experiment_id,
    tracking_uri_for,
)
from prmodel.workflows.accuracy import (
    errors_by_group,
    kernel_table,
    network_table,
    plot_kernel_errors,
    plot_kernel_scatter,
    plot_networks,
    wrap_title,
)
from prmodel.workflows.calibrate import calibrate_workspace
from prmodel.workflows.evaluation_results import EvaluationResult
from prmodel.workspace import Workspace


class ReviewLogError(PrmodelError, RuntimeError):
    """Logging to MLflow failed after the work itself was done and saved."""


# -- links to what a run used -----------------------------------------------------------------


def model_digests_of(workspace: Workspace, target_id: str) -> dict[str, str]:
    """The sha256 of every saved model of ``target_id``, by kind (from the model cards)."""
    return {card.kind: card.model_sha256 for _, card in list_model_cards(workspace, target_id)}


def model_tags(
    links: Mapping[str, VersionLink | None], digests: Mapping[str, str]
) -> dict[str, str]:
    """``model.<kind>``: the registered version (or ``not registered (sha256 …)``), and
    ``model.<kind>.run_id``: the training run behind it (the artifact ``models_used.json``
    has the full sha256 of every model file)."""
    tags = {}
    for kind, digest in sorted(digests.items()):
        link = links.get(kind)
        tags[f"model.{kind}"] = (
            link.label if link is not None else f"not registered (sha256 {digest[:12]})"
        )
        if link is not None and link.run_id:
            tags[f"model.{kind}.run_id"] = link.run_id
    return tags


def _models_used(
    links: Mapping[str, VersionLink | None], digests: Mapping[str, str]
) -> list[dict[str, Any]]:
    used = []
    for kind, digest in sorted(digests.items()):
        link = links.get(kind)
        found = {**asdict(link), "registered": True} if link is not None else {"registered": False}
        used.append({"kind": kind, "sha256": digest, **found})
    return used


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, None where it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _calibration_run(mlflow: Any, experiment_id: str, digest: str) -> str | None:
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=(
            f"tags.calibration_sha256 = '{digest}' and tags.`{STAGE_TAG}` = 'calibration'"
        ),
        output_format="list",
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


# -- calibration runs -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrackedCalibration:
    """A fitted calibration, the comparisons it was fitted from and its MLflow run.

    Attributes:
        calibration: The fit (saved at ``path``).
        comparisons: Each network's uncalibrated estimate next to its measurement.
        path: Where the calibration was saved.
        run_id: The MLflow run (None when not tracked).
    """

    calibration: Calibration
    comparisons: tuple[Comparison, ...]
    path: Path
    run_id: str | None


def calibrate_and_log(
    networks: Sequence[ModelInput],
    target: Target | str,
    *,
    workspace: Workspace | str | Path = ".",
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_network: Callable[[Comparison], None] | None = None,
    on_round: Callable[[int], None] | None = None,
    track: bool = True,
) -> TrackedCalibration:
    """Fit and save the target's calibration, then log it as a ``calibration`` run.

    :func:`~prmodel.workflows.calibrate.calibrate_workspace`, then :func:`log_calibration`:
    what ``prmodel calibrate`` does.

    Raises:
        EstimateError: no trained models for the target, or a network cannot be read or run.
        CalibrationError: nothing to fit.
        ReviewLogError: the calibration was saved but logging it to MLflow failed.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
    resolved = get_target(target) if isinstance(target, str) else target
    comparisons: list[Comparison] = []

    def collect(comparison: Comparison) -> None:
        comparisons.append(comparison)
        if on_network is not None:
            on_network(comparison)

    calibration = calibrate_workspace(
        networks,
        resolved,
        workspace=ws,
        input_shapes=input_shapes,
        settings=settings,
        on_network=collect,
        on_round=on_round,
    )
    path = calibration_path(ws, calibration.target_id)
    run_id = None
    if track:
        run_id = _logged(
            lambda: log_calibration(
                calibration, comparisons, workspace=ws, settings=settings, path=path
            ),
            f"the calibration is saved to {path}",
            ws,
        )
    return TrackedCalibration(calibration, tuple(comparisons), path, run_id)


def log_calibration(
    calibration: Calibration,
    comparisons: Sequence[Comparison],
    *,
    workspace: Workspace,
    settings: NetworkMeasureSettings | None = None,
    path: Path | None = None,
) -> str:
    """Log a calibration as a ``calibration`` run of its target's experiment; returns the run id.

    Args:
        calibration: The fitted calibration.
        comparisons: The uncalibrated estimate of each network next to its measurement (what
            :func:`~prmodel.workflows.calibrate.calibrate` passes to ``on_network``).
        workspace: Its MLflow store is used unless ``MLFLOW_TRACKING_URI`` is set; its model
            cards name the models where the calibration does not.
        settings: How the networks were measured.
        path: The saved ``calibration.json`` (attached, and its sha256 tagged so estimates
            that use it link back to this run).
    """
    target_id = calibration.target_id
    networks = network_table(comparisons, calibration)
    kernels = kernel_table(comparisons)
    by_group = errors_by_group(kernels)
    digests = dict(calibration.notes.get("models") or {}) or model_digests_of(workspace, target_id)
    settings = settings or (comparisons[0].measurement.settings if comparisons else None)
    rounds = f" · {settings.rounds} rounds" if settings is not None else ""
    uri = tracking_uri_for(workspace)
    with mlflow_session(uri) as mlflow:
        experiment_id = target_experiment_id(mlflow, target_id, workspace, uri)
        links = find_versions(mlflow, target_id, digests)
        name = f"calibration · {len(networks)} networks{rounds}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            tags = {"target_id": target_id, STAGE_TAG: "calibration"}
            tags |= model_tags(links, digests)
            digest = file_sha256(path) if path is not None else None
            if digest:
                tags["calibration_sha256"] = digest
            mlflow.set_tags(tags)
            mlflow.set_tag(NOTE_TAG, _calibration_note(calibration, networks, links))
            mlflow.log_params(_calibration_params(calibration, settings))
            mlflow.log_metrics(_calibration_metrics(calibration, networks, kernels))
            if path is not None and path.is_file():
                mlflow.log_artifact(str(path))
            else:
                mlflow.log_dict(calibration.to_dict(), "calibration.json")
            _log_tables(mlflow, networks, kernels, by_group)
            unmodelled = pd.DataFrame(
                [{**asdict(fit), "gbps": fit.gbps} for fit in calibration.unmodelled]
            )
            mlflow.log_text(
                unmodelled.to_csv(index=False, float_format="%.6g"), "tables/unmodelled_ops.csv"
            )
            mlflow.log_dict({"models": _models_used(links, digests)}, "models_used.json")
            title = f"calibration of {target_id}: {calibration.formula}"
            context = f"{len(networks)} networks on {target_id}"
            _log_plots(
                mlflow, networks, kernels, by_group, title=wrap_title(title), context=context
            )
            run_id: str = run.info.run_id
    return run_id


def _calibration_note(
    calibration: Calibration, networks: pd.DataFrame, links: Mapping[str, VersionLink | None]
) -> str:
    loo = (
        f"leave-one-network-out MAPE **{calibration.loo_mape:.2f} %** (each network estimated "
        "by a calibration fitted without it: the figure to trust for a new network)"
        if calibration.loo_mape is not None
        else "no leave-one-network-out figure (too few networks for the chosen terms)"
    )
    lines = [
        f"Whole-network calibration of `{calibration.target_id}` from {len(networks)} measured "
        f"networks: {loo}; the fitted networks' own MAPE "
        f"{networks['error_pct'].abs().mean():.2f} %, the plain kernel sum's "
        f"{networks['sum_error_pct'].abs().mean():.2f} %.",
        f"Formula: `total = {calibration.formula}`.",
        "Plots: `plots/networks_estimated_vs_measured.png` (per network) and "
        "`plots/kernel_errors_by_kind.png` (per kernel); tables under `tables/`.",
        "Models: " + _links_text(links) + ".",
    ]
    if calibration.excluded:
        lines.append(
            f"Left out of the fit (kernel sum > 3x off): {', '.join(calibration.excluded)}."
        )
    return "\n\n".join(lines)


def _links_text(links: Mapping[str, VersionLink | None]) -> str:
    if not links:
        return "none named"
    return ", ".join(
        f"{kind}: {link.label}" if link is not None else f"{kind}: not registered"
        for kind, link in sorted(links.items())
    )


def _calibration_params(
    calibration: Calibration, settings: NetworkMeasureSettings | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "target_id": calibration.target_id,
        "networks": ", ".join(fit.name for fit in calibration.networks),
        "terms": ", ".join(calibration.terms),
        "formula": calibration.formula,
        "weight_cap_bytes": calibration.weight_cap_bytes,
        "core_cache_bytes": calibration.core_cache_bytes,
        "excluded": ", ".join(calibration.excluded) or "none",
        "created": calibration.created,
    }
    if settings is not None:
        params |= {f"measure_{k}": v for k, v in asdict(settings).items()}
    return params


def _calibration_metrics(
    calibration: Calibration, networks: pd.DataFrame, kernels: pd.DataFrame
) -> dict[str, float]:
    metrics = {
        "networks": float(len(networks)),
        "fit_mape": float(networks["error_pct"].abs().mean()),
        "sum_mape": float(networks["sum_error_pct"].abs().mean()),
        "worst_fit_error_pct": _worst(networks["error_pct"]),
        "measurement_spread_pct_max": float(networks["spread_pct"].max()),
        "kernel_mape": float(kernels["error_pct"].abs().mean()),
        "coef_scale": calibration.scale,
        "coef_capped_scale": calibration.capped_scale,
        "coef_us_cap": calibration.us_cap,
        "coef_us_per_cached_mb": calibration.us_per_cached_mb,
        "coef_us_per_weight_mb": calibration.us_per_weight_mb,
        "coef_us_per_kernel": calibration.us_per_kernel,
        "coef_offset_us": calibration.offset_us,
    }
    if calibration.loo_mape is not None:
        metrics["loo_mape"] = calibration.loo_mape
        metrics["worst_loo_error_pct"] = _worst(networks["left_out_error_pct"])
    metrics |= _per_network_metrics(networks)
    return _finite(metrics)


# -- estimate runs ----------------------------------------------------------------------------


def log_estimate(
    estimate: NetworkEstimate,
    comparison: Comparison | None = None,
    *,
    workspace: Workspace | str | Path = ".",
    model_path: str | Path | None = None,
) -> str:
    """Log one network's estimate (and its measurement, if any) as an ``estimate`` run.

    The run holds the total, the per-kernel table and, with a measurement, the network and
    per-kernel errors with their plots; its tags name the registered model versions (found
    by the sha256 in the workspace's model cards) and the calibration run it used.

    Raises:
        ReviewLogError: logging to MLflow failed (the estimate itself is unaffected).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
    return _logged(lambda: _log_estimate(estimate, comparison, ws, model_path), None, ws)


def _log_estimate(
    estimate: NetworkEstimate,
    comparison: Comparison | None,
    workspace: Workspace,
    model_path: str | Path | None,
) -> str:
    target_id = estimate.target_id
    digests = model_digests_of(workspace, target_id)
    calibration_digest = (
        file_sha256(calibration_path(workspace, target_id)) if estimate.calibrated else None
    )
    summary = estimate.to_dict()
    measured = " vs measured" if comparison is not None else ""
    uri = tracking_uri_for(workspace)
    with mlflow_session(uri) as mlflow:
        experiment_id = target_experiment_id(mlflow, target_id, workspace, uri)
        links = find_versions(mlflow, target_id, digests)
        tags = {"target_id": target_id, STAGE_TAG: "estimate", "network": estimate.network}
        tags |= model_tags(links, digests)
        if calibration_digest:
            tags["calibration_sha256"] = calibration_digest
            calibration_run = _calibration_run(mlflow, experiment_id, calibration_digest)
            tags["calibration_run_id"] = calibration_run or "not logged"
        name = f"estimate · {estimate.network}{measured}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.set_tags(tags)
            mlflow.set_tag(NOTE_TAG, _estimate_note(estimate, comparison, links))
            params = {
                "network": estimate.network,
                "target_id": target_id,
                "runtime": estimate.runtime,
                "calibrated": estimate.calibrated,
                "total_note": estimate.total_note,
            }
            if model_path is not None:
                params["model_file"] = str(model_path)
            if comparison is not None:
                params |= {
                    f"measure_{k}": v for k, v in asdict(comparison.measurement.settings).items()
                }
            mlflow.log_params(params)
            metrics = {
                "estimated_us": estimate.total_us,
                "sum_us": estimate.sum_us,
                "unmodelled_share_pct": 100 * estimate.unmodelled_share,
                "kernels": float((estimate.layers["status"] != "free").sum()),
            }
            if summary.get("partial"):
                mlflow.set_tag("estimate", "partial: some kernels unpriced, total is a lower bound")
            mlflow.log_dict(summary, "estimate.json")
            if comparison is None:
                mlflow.log_text(estimate.layers.to_csv(index=False), "tables/kernels.csv")
            else:
                networks = network_table([comparison])
                kernels = kernel_table([comparison])
                by_group = errors_by_group(kernels)
                row = networks.iloc[0]
                metrics |= {
                    "measured_us": float(row["measured_us"]),
                    "error_pct": float(row["error_pct"]),
                    "sum_error_pct": float(row["sum_error_pct"]),
                    "spread_pct": float(row["spread_pct"]),
                    "kernel_mape": float(row["kernel_mape_pct"]),
                }
                _log_tables(mlflow, networks, kernels, by_group)
                title = f"{estimate.network} on {target_id}: {estimate.total_note}"
                context = f"{estimate.network} on {target_id}"
                _log_plots(
                    mlflow, networks, kernels, by_group, title=wrap_title(title), context=context
                )
            mlflow.log_metrics(_finite(metrics))
            mlflow.log_dict({"models": _models_used(links, digests)}, "models_used.json")
            run_id: str = run.info.run_id
    return run_id


def _estimate_note(
    estimate: NetworkEstimate,
    comparison: Comparison | None,
    links: Mapping[str, VersionLink | None],
) -> str:
    lines = [
        f"Estimate of **{estimate.network}** on `{estimate.target_id}`: "
        f"{estimate.total_us / 1e3:.3f} ms ({estimate.total_note}); "
        f"{100 * estimate.unmodelled_share:.1f} % of the kernel sum priced by fallbacks."
    ]
    if comparison is not None:
        measurement = comparison.measurement
        lines.append(
            f"Measured {measurement.total_us / 1e3:.3f} ms (p10-p90 spread "
            f"{measurement.spread_pct:.1f} % over {measurement.runs} runs): error "
            f"**{comparison.total_error_pct:+.1f} %**, plain kernel sum "
            f"{comparison.sum_error_pct:+.1f} %. Plots under `plots/`, per-kernel table "
            "`tables/kernels.csv`."
        )
    lines.append("Models: " + _links_text(links) + ".")
    return "\n\n".join(lines)


# -- evaluation runs --------------------------------------------------------------------------


def evaluation_run_name(result: EvaluationResult) -> str:
    """``evaluation · pr, random · conv, dense · N 100-1000 · 3 seeds``."""
    s = result.settings
    budgets = f"N {s.budgets[0]}" + (f"-{s.budgets[-1]}" if len(s.budgets) > 1 else "")
    kinds = ", ".join(k.value for k in s.kinds)
    return f"evaluation · {', '.join(s.samplers)} · {kinds} · {budgets} · {s.seeds} seeds"


def log_evaluation_review(mlflow: Any, result: EvaluationResult) -> None:
    """Add the reviewer's tags, description and plots to an active evaluation run.

    ``plots/error_by_kind.png``: test MAPE per kind and sampler at the largest budget (random
    test set); ``plots/networks_error.png``: each reference network's whole-network error per
    sampler (mean over seeds), where networks were given; the network table as
    ``tables/networks.csv``. The models are fitted inside the evaluation (one per kind,
    sampler, budget and seed) and registered nowhere; the ``models`` tag says so.
    """
    mlflow.set_tags(
        {
            STAGE_TAG: "evaluation",
            "models": "fitted inside the evaluation, not registered",
            NOTE_TAG: _evaluation_note(result),
        }
    )
    summary = result.summary()
    rows = summary[summary["test_set"] == "random"]
    if not rows.empty:
        budget = int(rows["budget"].max())
        best = rows[rows["budget"] == budget]
        mlflow.log_figure(
            _plot_grouped_bars(
                best.pivot_table(index="kind", columns="sampler", values="mape"),
                best.pivot_table(index="kind", columns="sampler", values="mape_std"),
                ylabel="test MAPE (%), mean ± std over seeds",
                title=f"Layer error by kind on {result.target_id} (N = {budget}, random test set)",
            ),
            "plots/error_by_kind.png",
        )
    if not result.networks.empty:
        mlflow.log_text(result.networks.to_csv(index=False), "tables/networks.csv")
        errors = result.networks.pivot_table(index="network", columns="sampler", values="error_pct")
        spread = result.networks.pivot_table(
            index="network", columns="sampler", values="error_pct", aggfunc="std"
        )
        truth = result.networks["truth"].iloc[0]
        mlflow.log_figure(
            _plot_grouped_bars(
                errors,
                spread.fillna(0.0),
                ylabel="whole-network error (%), mean ± std over seeds",
                title=f"Networks on {result.target_id} (truth: {truth})",
                band=10.0,
            ),
            "plots/networks_error.png",
        )


def _evaluation_note(result: EvaluationResult) -> str:
    s = result.settings
    tuning = f"{s.trials} Optuna trials per fit" if s.trials else "default hyper-parameters"
    lines = [
        f"Samplers {', '.join(s.samplers)} compared on `{result.target_id}`: for each kind "
        f"({', '.join(k.value for k in s.kinds)}) and budget "
        f"({', '.join(str(b) for b in s.budgets)} layers), {s.seeds} seeds of a {s.regressor} "
        f"model ({tuning}), each tested on {s.test_size} random layers.",
        "Plots: `plots/error_by_kind.png` (test MAPE per kind at the largest budget) and the "
        "learning curves `evaluation/mape_<kind>.png`; report `evaluation/evaluation.md`.",
    ]
    if result.network_names:
        lines.append(
            f"Whole networks ({', '.join(result.network_names)}) at budget "
            f"{s.whole_network_budget}: `plots/networks_error.png`, `tables/networks.csv`."
        )
    return "\n\n".join(lines)


def _plot_grouped_bars(
    values: pd.DataFrame, errors: pd.DataFrame, *, ylabel: str, title: str, band: float = 0.0
) -> Figure:
    figure = Figure(figsize=(max(6.0, 1.1 * len(values) + 2), 4.5), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(values))
    width = 0.8 / max(1, len(values.columns))
    for index, column in enumerate(values.columns):
        offset = (index - (len(values.columns) - 1) / 2) * width
        ax.bar(
            x + offset,
            values[column],
            width,
            yerr=errors.reindex_like(values)[column],
            capsize=3,
            label=str(column),
        )
    if band:
        for bound in (-band, band):
            ax.axhline(bound, color="0.5", ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [str(i) for i in values.index], rotation=20 if len(values) > 6 else 0)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(title="sampler", fontsize="small")
    return figure


# -- shared -----------------------------------------------------------------------------------


def _log_tables(
    mlflow: Any, networks: pd.DataFrame, kernels: pd.DataFrame, by_group: pd.DataFrame
) -> None:
    # Six significant digits: what the measurements hold, and readable in the artifact view.
    for table, name in (
        (networks, "networks"),
        (kernels, "kernels"),
        (by_group, "kernel_errors_by_kind"),
    ):
        mlflow.log_text(table.to_csv(index=False, float_format="%.6g"), f"tables/{name}.csv")


def _log_plots(
    mlflow: Any,
    networks: pd.DataFrame,
    kernels: pd.DataFrame,
    by_group: pd.DataFrame,
    *,
    title: str,
    context: str,
) -> None:
    # Plain Figures (not pyplot's): no GUI backend, and nothing to close afterwards.
    mlflow.log_figure(
        plot_networks(networks, title=title), "plots/networks_estimated_vs_measured.png"
    )
    mlflow.log_figure(
        plot_kernel_errors(kernels, by_group, title=f"per-kernel error by kind: {context}"),
        "plots/kernel_errors_by_kind.png",
    )
    mlflow.log_figure(
        plot_kernel_scatter(kernels, title=f"kernels: predicted vs profiled\n{context}"),
        "plots/kernels_predicted_vs_measured.png",
    )


def _per_network_metrics(networks: pd.DataFrame) -> dict[str, float]:
    metrics = {}
    for row in networks.to_dict("records"):
        name = _metric_name(str(row["network"]))
        metrics[f"network.{name}.error_pct"] = row["error_pct"]
        metrics[f"network.{name}.left_out_error_pct"] = row["left_out_error_pct"]
        metrics[f"network.{name}.sum_error_pct"] = row["sum_error_pct"]
        metrics[f"network.{name}.measured_ms"] = row["measured_us"] / 1e3
    return metrics


def _metric_name(text: str) -> str:
    """MLflow keys allow letters, digits, ``_-. /``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", text)[:200]


def _worst(errors: pd.Series) -> float:
    values = errors.dropna().to_numpy(dtype=np.float64)
    return float(values[np.argmax(np.abs(values))]) if len(values) else math.nan


def _error_pct(value: float, measured: float) -> float:
    return 100 * (value - measured) / measured if measured > 0 else math.nan


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    # MLflow stores NaN but its charts choke on it; an undefined figure is left out.
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def _logged(log: Callable[[], str], saved: str | None, workspace: Workspace) -> str:
    """Run ``log``; a failure becomes one sentence that says what was kept."""
    try:
        return log()
    except PrmodelError:
        raise
    except Exception as exc:  # MLflow's errors have no common base beyond Exception
        kept = f"{saved}, but logging" if saved else "logging"
        uri = tracking_uri_for(workspace)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReviewLogError(f"{kept} to MLflow at {uri} failed ({message})") from exc


__all__ = [
    "ReviewLogError",
    "TrackedCalibration",
    "calibrate_and_log",
    "evaluation_run_name",
    "log_calibration",
    "log_estimate",
    "log_evaluation_review",
    "model_digests_of",
    "model_tags",
]
