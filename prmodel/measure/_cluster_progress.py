"""The progress display of a cluster sweep: the overall bar and one row per worker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Row(Protocol):
    """What the display reads of a worker (the driver's ``_Worker``)."""

    state: str
    points: int

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str: ...

    def rate(self) -> float: ...


class _ProgressView:
    """The overall bar and one row per worker: its points and points per second."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._total = total
        self._rows: dict[_Row, Any] = {}
        self._main = progress.add_task("measuring", total=total) if progress else None

    def show(self, committed: int, workers: Sequence[_Row]) -> None:
        progress = self._progress
        if progress is None or self._main is None:
            return
        progress.update(self._main, completed=committed)
        for worker in workers:
            if worker.state == "starting":
                continue
            row = self._rows.get(worker)
            if row is None:
                row = progress.add_task("", total=self._total)
                self._rows[worker] = row
            state = f"{worker.rate():.1f} points/s" if worker.state == "ready" else worker.state
            progress.update(
                row,
                completed=worker.points,
                description=escape(f"  {worker.name} {worker.host}: {state}"[:100]),
            )


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[_ProgressView]:
    if not enabled or total == 0:
        yield _ProgressView(None, total)
        return
    columns = (
        TextColumn("{task.description}", style="cyan"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _ProgressView(progress, total)
