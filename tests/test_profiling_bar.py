"""The progress bar of network profiling: full when the work ends, even when learn stopped early."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from prmodel.workflows import profiling
from prmodel.workflows.profiling import _Bar


def _bar() -> tuple[Progress, _Bar]:
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    return progress, _Bar(progress, progress.add_task("profiling networks", total=None))


def test_a_bar_that_ends_early_is_shown_full_at_the_time_spent() -> None:
    progress, bar = _bar()
    bar.plan(10.0, 90.0, measured=3)  # 100 s planned, 10 spent
    bar.advance_to(40.0)
    (task,) = progress.tasks
    assert (task.completed, task.total) == (40.0, 100.0)
    bar.finish()  # e.g. learn stopped after a tier whose check came within the goal
    assert (task.completed, task.total) == (40.0, 40.0)
    assert task.finished


def test_an_interrupted_bar_is_left_where_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[_Bar] = []
    real = profiling._Bar

    def keep(*args: object) -> _Bar:
        made.append(real(*args))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(profiling, "_Bar", keep)
    monkeypatch.setattr(profiling, "Console", lambda **_: Console(file=io.StringIO()))
    with pytest.raises(KeyboardInterrupt), profiling._progress(True) as bar:
        bar.plan(0.0, 50.0, measured=0)
        bar.advance_to(20.0)
        raise KeyboardInterrupt
    assert (made[0].completed, made[0].total) == (20.0, 50.0)
    with profiling._progress(True) as bar:
        bar.plan(0.0, 50.0, measured=0)
        bar.advance_to(20.0)
    assert (made[1].completed, made[1].total) == (20.0, 20.0)
