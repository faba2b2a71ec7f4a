"""Commands of the training stage: train, models and ui."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prmodel.cli._common import (
    FromOtherMachineOption,
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    err_console,
    print_json,
    print_table,
)
from prmodel.layers import parse_kind
from prmodel.targets import get_target
from prmodel.targets.identity import describe_machine
from prmodel.train.artifacts import list_model_cards
from prmodel.workspace import Workspace

if TYPE_CHECKING:
    from prmodel.train.training import TrainingReport


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("train")(train)
    app.command("models")(models)
    app.command("ui")(ui)


def train(
    target: TargetOption = "cpu",
    kinds: Annotated[
        str | None,
        typer.Option(help="Comma-separated layer kinds (default: every kind with a train set)."),
    ] = None,
    regressor: Annotated[
        str,
        typer.Option(
            help="xgboost, random_forest, extra_trees, hist_gradient_boosting, knn or ridge."
        ),
    ] = "xgboost",
    trials: Annotated[
        int, typer.Option(help="Optuna trials per kind (0: default hyper-parameters).")
    ] = 25,
    folds: Annotated[int, typer.Option(help="Cross-validation folds per trial.")] = 4,
    timeout: Annotated[
        float | None, typer.Option(help="Stop tuning a kind after this many seconds.")
    ] = None,
    train_set: Annotated[
        str, typer.Option(help="Training rows are the store's plan '<train-set>-<kind>'.")
    ] = "pr",
    test_set: Annotated[
        str, typer.Option(help="Test rows are the plan '<test-set>-<kind>' (drawn if missing).")
    ] = "test",
    test_size: Annotated[
        int, typer.Option(help="Random layers to draw and measure where a test set is missing.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the folds, Optuna and the regressor.")] = 0,
    study_storage: Annotated[
        str | None,
        typer.Option(
            help="Share each kind's Optuna study through this RDB storage URL "
            "(sqlite:///studies.db, postgresql://...): processes training the same rows "
            "split --trials between them. Default: a private study.",
            show_default=False,
        ),
    ] = None,
    track: Annotated[bool, typer.Option(help="Log every kind as an MLflow run.")] = True,
    workspace: WorkspaceOption = Path("."),
    from_other_machine: FromOtherMachineOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train one latency model per layer kind, test it on held-out random layers, save it.

    Training rows are the measurements of the plan '<train-set>-<kind>' (e.g. pr-conv);
    test rows those of 'test-<kind>', which are drawn at random and measured first if that
    plan does not exist yet (the same layers, drawn with the same seed, that 'prmodel
    quickstart' and 'prmodel evaluate' test on). Models go to
    trained_models/<target_id>/<kind>/ with a model card; runs are logged to MLflow (see
    'prmodel ui').

    Example: prmodel train --target cpu --kinds conv,dense --trials 25

    Example: prmodel train --trials 100 --study-storage sqlite:///studies.db (run it in two
    shells: they share the 100 trials of each kind)

    Rows are always this machine's; a PR file selected on another machine is refused, and
    --from-other-machine TARGET_ID uses that target's PR file on purpose.
    """
    # Function-level: the training workflow imports optuna (and MLflow's helpers), which
    # `prmodel estimate` must not load just because every command is registered.
    from prmodel.train.settings import TrainSettings
    from prmodel.workflows.training import train_target

    settings = TrainSettings(
        regressor=regressor,
        trials=trials,
        folds=folds,
        timeout_s=timeout,
        seed=seed,
        study_storage=study_storage,
    )
    chosen_kinds = [parse_kind(k.strip()) for k in kinds.split(",") if k.strip()] if kinds else None
    ws = Workspace.at(workspace)
    report = train_target(
        get_target(target),
        workspace=ws,
        kinds=chosen_kinds,
        settings=settings,
        train_set=train_set,
        test_set=test_set,
        test_size=test_size,
        track=track,
        progress=not json_output,
        on_note=None if json_output else err_console.print,
        from_other_machine=from_other_machine,
    )
    _render(report, ws, json_output=json_output)


def _render(report: TrainingReport, ws: Workspace, *, json_output: bool) -> None:
    if json_output:
        print_json(report.as_dict())
        return
    rows = [_row(result.as_dict()) for result in report.results]
    print_table(rows, title=f"trained models for {report.target_id}")
    for result in report.results:
        if result.dropped_overlap:
            err_console.print(
                f"{result.kind.value}: {result.dropped_overlap} test layers were also training "
                "layers and were left out of the test metrics"
            )
        if result.extrapolations:
            err_console.print(
                f"{result.kind.value}: some test layers lie outside the training ranges "
                f"({result.extrapolations[0]})",
                style="dim",
            )
    console.print(f"models: {ws.models_dir / report.target_id}")
    if report.tracking_uri:
        console.print(f"MLflow: {report.tracking_uri} (browse with 'prmodel ui')")


def _row(result: dict[str, Any]) -> dict[str, Any]:
    test = result["test"] or {}
    return {
        "kind": result["kind"],
        "rows": result["train_rows"],
        "regressor": result["regressor"],
        "CV MAPE %": result["cv_mape"],
        "test rows": result["test_rows"],
        "test MAPE %": test.get("mape"),
        "RMSPE %": test.get("rmspe"),
        "±10 %": test.get("within_10"),
        "Spearman": test.get("spearman"),
        "seconds": result["seconds"],
        "run": (result["run_id"] or "-")[:8],
    }


def models(
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Only this target: a target_id or a target spec."),
    ] = None,
    workspace: WorkspaceOption = Path("."),
    json_output: JsonOption = False,
) -> None:
    """List the trained models of the workspace with their metrics (from the model cards).

    Example: prmodel models --target cpu
    """
    ws = Workspace.at(workspace)
    target_id = _stored_target_id(ws, target) if target else None
    cards = list_model_cards(ws, target_id)
    rows = [
        {
            "target": card.target_id,
            "kind": card.kind,
            "regressor": card.regressor,
            "rows": card.training_rows,
            "test MAPE %": card.metrics.get("test_mape"),
            "±10 %": card.metrics.get("test_within_10"),
            "Spearman": card.metrics.get("test_spearman"),
            "created": card.created,
            "trained on": describe_machine(card.fingerprint) if card.fingerprint else None,
            "path": str(path),
        }
        for path, card in cards
    ]
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print(f"no trained models in {ws.models_dir}; run 'prmodel train'")
        return
    # On screen the date is enough and the folder is printed once below.
    table = [{**row, "created": str(row["created"])[:10]} for row in rows]
    columns = [c for c in rows[0] if c not in ("path", "trained on")]
    print_table(table, title="trained models", columns=columns)
    console.print(f"in {ws.models_dir}")
    machines = dict.fromkeys((row["target"], row["trained on"]) for row in rows)
    for listed, machine in machines:
        console.print(f"{listed}: trained on {machine or 'an unrecorded machine'}")


def _stored_target_id(ws: Workspace, target: str) -> str:
    if (ws.models_dir / target).is_dir():
        return target
    return get_target(target).target_id


def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 5000,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Start the MLflow UI on the workspace's tracking store (local only; Ctrl-C stops it).

    Once it answers, a link per target opens that target's runs in MLflow's model-training
    view. The UI and every process it starts stop with this command (Ctrl-C, SIGTERM or
    SIGHUP); a port already in use is an error. docs/review.md shows what to look at.

    Example: prmodel ui --port 5000
    """
    # Function-level: train.tracking loads optuna and matplotlib, kept off `prmodel estimate`.
    from prmodel.train.tracking import tracking_uri_for
    from prmodel.workflows.ui import serve_ui

    ws = Workspace.at(workspace)

    def started(url: str, pgid: int) -> None:
        console.print(
            f"MLflow UI for {tracking_uri_for(ws)} at {url} (Ctrl-C stops it; process group "
            f"{pgid})",
            highlight=False,
        )

    def ready(links: dict[str, str]) -> None:
        if not links:
            console.print("ready; no prmodel runs yet ('prmodel train' logs the first ones)")
        for name, link in links.items():
            console.print(f"{name}: {link}", highlight=False, soft_wrap=True)

    serve_ui(ws, port=port, on_start=started, on_ready=ready)
    err_console.print("MLflow UI stopped")
