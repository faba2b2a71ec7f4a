"""The ``migrate`` command: rename a workspace's artifacts of old target ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prmodel.cli._common import (
    JsonOption,
    TargetOption,
    WorkspaceOption,
    console,
    print_json,
    warn,
)
from prmodel.cli._sweep import command_help
from prmodel.targets import get_target
from prmodel.workflows.migrate import MigrationReport, migrate_workspace
from prmodel.workspace import Workspace


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("migrate", help=command_help(migrate))(migrate)


def migrate(
    workspace: WorkspaceOption = Path("."),
    target: TargetOption = "cpu",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be renamed.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Rename the store rows, PR files, plots, models and plans of old target ids.

    Target ids used to name only the settings (ort-cpu-t1-all); they now name the hardware
    too (ort-cpu-avx512-3f9c-t1-all), so that artifacts of one machine never serve another.
    Every artifact under an old id is renamed to the id of the machine it records, this
    machine's or another's (the output says which); what records no known machine is left
    as it is, with the reason. Running it twice renames nothing the second time.

    Example: prmodel migrate -w my_ws --dry-run
    """
    report = migrate_workspace(Workspace.at(workspace), get_target(target), dry_run=dry_run)
    if json_output:
        print_json(report.as_dict())
        return
    _render(report)


def _render(report: MigrationReport) -> None:
    if not report.renamed and not report.left:
        console.print(f"nothing to migrate in {report.workspace}: every artifact has today's id")
        return
    verb = "would rename" if report.dry_run else "renamed"
    for item in report.renamed:
        rows = f" ({item.rows} measurements)" if item.rows else ""
        where = "this machine" if item.this_machine else f"another machine, {item.machine}"
        console.print(
            f"{verb} {item.what} {item.old} -> {item.new}{rows}: made on {where}",
            highlight=False,
            soft_wrap=True,
        )
    foreign = sum(1 for item in report.renamed if not item.this_machine)
    if foreign:
        were = "1 of them was" if foreign == 1 else f"{foreign} of them were"
        warn(
            f"{were} made on another machine: a new name does not make it this machine's "
            "(run `prmodel select` and `prmodel train` here, or use it on purpose with "
            "--from-other-machine)"
        )
    for sentence in report.left:
        warn(sentence)
    if report.dry_run and report.renamed:
        console.print("run again without --dry-run to rename them")
