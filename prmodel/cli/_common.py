"""Shared pieces of the command line: consoles, common options, table and JSON rendering."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prmodel.cli._format import significant

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace directory (default: current directory)."),
]
TargetOption = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help="Target spec: cpu, cuda, cpu:threads=2,opt=extended, scalesim:rows=32,cols=32, ...",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
FromOtherMachineOption = Annotated[
    str | None,
    typer.Option(
        "--from-other-machine",
        metavar="TARGET_ID",
        help="Use the artifacts of this target id, made on another machine (another CPU, "
        "ISA or runtime version), on purpose, e.g. for transfer; the output says so. "
        "Without it, they are refused.",
    ),
]


def warn(message: str) -> None:
    """One loud warning line on stderr (``warning: ...``)."""
    err_console.print(
        f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True
    )


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (no rich markup, so pipes get clean output)."""
    print(json.dumps(data, indent=2, default=str))


def print_table(
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Render dict rows as a rich table (columns from the first row unless given)."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows else []
    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="right" if _numeric(rows, name) else "left")
    for row in rows:
        table.add_row(*(_format(row.get(name)) for name in columns))
    console.print(table)


def _numeric(rows: Sequence[Mapping[str, Any]], name: str) -> bool:
    return any(isinstance(r.get(name), int | float) for r in rows)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return significant(value)  # never 2.967e+04
    return str(value)
