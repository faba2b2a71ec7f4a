"""Numbers and progress as a person reads them: significant digits, time units, progress bars.

:func:`significant` prints a number with a few significant digits and never in scientific
notation; :func:`duration` picks µs, ms or s for a time given in µs; :func:`milliseconds`
prints a time in ms for columns whose header names the unit. :func:`progress_bar` shows long
work on stderr with the elapsed time and an ETA (stdout stays clean for ``--json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

MISSING = "-"
"""What a table shows for a value prmodel does not have (None or NaN)."""


def significant(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, never in scientific notation.

    Digits left of the decimal point are all kept (``29,673``: rounding them away would print
    a different number), so only smaller numbers are rounded: ``12.3``, ``0.0123``.
    None and NaN print as ``-``.
    """
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    decimals = _decimals(value, digits)
    rounded = round(value, decimals)
    if rounded != 0 and _magnitude(rounded) > _magnitude(value):
        decimals = max(0, decimals - 1)  # 9.996 -> 10.0, not 10.00
    return f"{value:,.{decimals}f}"


def _magnitude(value: float) -> int:
    return math.floor(math.log10(abs(value)))


def _decimals(value: float, digits: int) -> int:
    return max(0, digits - 1 - _magnitude(value))


def duration(us: float | None, digits: int = 3) -> str:
    """A time given in µs, in the unit that reads best: ``512 µs``, ``2.97 ms``, ``1.23 s``."""
    if us is None or math.isnan(us):
        return MISSING
    rounded = abs(float(f"{us:.{digits}g}"))  # 999.7 µs rounds to 1,000: print 1.00 ms
    if rounded >= 1e6:
        return f"{significant(us / 1e6, digits)} s"
    if rounded >= 1e3:
        return f"{significant(us / 1e3, digits)} ms"
    return f"{significant(us, digits)} µs"


def milliseconds(us: float | None, digits: int = 3) -> str:
    """A time given in µs as a number of ms (for a column whose header says ``ms``)."""
    return MISSING if us is None or math.isnan(us) else significant(us / 1e3, digits)


def percent(value: float | None, *, signed: bool = False) -> str:
    """A percentage with one decimal (``+3.4`` where ``signed``); ``-`` for None or NaN."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:+.1f}" if signed else f"{value:.1f}"


@contextmanager
def progress_bar(
    description: str, total: int | None, *, console: Console, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A progress bar on ``console`` while the block runs; yields ``update(completed)``.

    The bar shows the steps done, the elapsed time and an estimate of the time left (once a
    step is done). It disappears when the block ends; a console that is not a terminal
    (a pipe, CI) shows no bar at all, nor does one that is not ``enabled`` (then
    ``update`` does nothing).
    """
    if not enabled or not console.is_terminal:
        yield _ignore
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)

        def update(completed: int) -> None:
            progress.update(task, completed=completed)

        yield update


def _ignore(completed: int) -> None:
    """The ``update`` of a progress bar that is not shown."""
