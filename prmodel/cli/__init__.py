"""The ``prmodel`` command line: a thin front over the library, one module per stage."""

from __future__ import annotations

import errno
import sqlite3
import sys
from typing import NoReturn

import typer
from rich.markup import escape

from prmodel.cli import (
    _estimate,
    _evaluate,
    _learn,
    _migrate,
    _networks,
    _quickstart,
    _select,
    _sweep,
    _train,
)
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

for _module in (
    _sweep,
    _select,
    _train,
    _learn,
    _estimate,
    _evaluate,
    _quickstart,
    _migrate,
    _networks,
):
    _module.register(app)


_ENVIRONMENT_ERRORS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
    }
)
"""errno values of an OSError that the user's environment causes (shown as one sentence)."""

_PATH_PROBLEMS = {
    errno.EEXIST: "a file is in the way of a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
}


def _internal_error(exc: BaseException) -> NoReturn:
    err_console.print(
        f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
        "(rerun with --debug for the traceback)",
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(1)


def _interrupted() -> NoReturn:
    err_console.print("interrupted: every measurement taken so far is saved; rerun to resume")
    sys.exit(130)


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
        # escape: a message quoting "[lo, hi, n]" is text, not rich markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except OSError as exc:
        # The environment, not a bug: a read-only folder, a full disk, no permission.
        if debug:
            raise
        if exc.errno not in _ENVIRONMENT_ERRORS:
            _internal_error(exc)
        verb = "cannot write" if exc.errno in (errno.EROFS, errno.ENOSPC) else "cannot use"
        where = f" {exc.filename}" if exc.filename else ""
        problem = _PATH_PROBLEMS.get(exc.errno, str(exc.strerror).lower())
        err_console.print(
            f"[bold red]error:[/] {verb}{escape(where)}: {problem}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except sqlite3.DatabaseError as exc:
        # Found mid-read: pages the open-time check did not touch are damaged.
        if debug:
            raise
        problem = (
            "is busy: another process held it for more than 30 s; run the command again"
            if "locked" in str(exc)
            else "is damaged or unreadable; run 'prmodel show --check' to check the store"
        )
        err_console.print(
            f"[bold red]error:[/] an SQLite file of the workspace {problem} "
            f"(SQLite: {escape(str(exc))})",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C into exit 130 without a word
            _interrupted()
        raise
    except Exception as exc:  # a bug, not bad input: still no traceback unless asked
        if debug:
            raise
        _internal_error(exc)
