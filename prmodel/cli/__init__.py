"""The ``prmodel`` command line: a thin front over the library, one module per stage."""

from __future__ import annotations

import sys

import typer

from prmodel.cli import _estimate, _evaluate, _quickstart, _select, _sweep, _train
from prmodel.cli._common import err_console
from prmodel.errors import PrmodelError

app = typer.Typer(
    name="prmodel",
    help=(
        "Predict DNN latency on accelerators from Performance Representatives.\n\n"
        "Global flag: --debug shows the full traceback of an error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (_sweep, _select, _train, _estimate, _evaluate, _quickstart):
    _module.register(app)


def main() -> None:
    """Entry point of the ``prmodel`` console script."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except PrmodelError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: every measurement taken so far is saved; rerun to resume")
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still no traceback unless asked
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
