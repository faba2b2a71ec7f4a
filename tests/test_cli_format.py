"""Tests of prmodel/cli/_format.py: significant digits, time units, progress bars."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from rich.console import Console

from prmodel.cli import _common
from prmodel.cli._format import duration, milliseconds, percent, progress_bar, significant


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2967.3, "2,967"),
        (29673.2, "29,673"),
        (123.45, "123"),
        (12.345, "12.3"),
        (1.2345, "1.23"),
        (0.012345, "0.0123"),
        (9.996, "10.0"),
        (99.96, "100"),
        (0.0, "0"),
        (-12.34, "-12.3"),
        (5.0, "5.00"),
        (1e-7, "0.000000100"),
        (float("nan"), "-"),
        (None, "-"),
        (float("inf"), "inf"),
    ],
)
def test_significant_digits(value: float | None, expected: str) -> None:
    assert significant(value) == expected


@pytest.mark.parametrize("value", np.geomspace(1e-6, 1e12, 55))
def test_significant_never_uses_scientific_notation_and_keeps_three_digits(value: float) -> None:
    for signed in (value, -value):
        text = significant(signed)
        assert "e" not in text.lower()
        assert float(text.replace(",", "")) == pytest.approx(signed, rel=5e-3)


@pytest.mark.parametrize(
    ("us", "expected"),
    [
        (0.512, "0.512 µs"),
        (12.34, "12.3 µs"),
        (512.0, "512 µs"),
        (999.7, "1.00 ms"),
        (2967.3, "2.97 ms"),
        (29673.0, "29.7 ms"),
        (123456.0, "123 ms"),
        (1.5e6, "1.50 s"),
        (3.6e9, "3,600 s"),
        (0.0, "0 µs"),
        (float("nan"), "-"),
        (None, "-"),
    ],
)
def test_duration_picks_the_unit(us: float | None, expected: str) -> None:
    assert duration(us) == expected


@pytest.mark.parametrize("us", np.geomspace(0.01, 1e10, 41))
def test_duration_has_two_or_three_significant_digits_and_no_exponent(us: float) -> None:
    number, unit = duration(us).split(" ")
    scale = {"µs": 1.0, "ms": 1e3, "s": 1e6}[unit]
    assert "e" not in number
    assert float(number.replace(",", "")) * scale == pytest.approx(us, rel=5e-3)
    if unit != "s":  # below 1,000 of the unit: never more than three significant digits
        assert len(number.replace(".", "").lstrip("0")) <= 3


def test_milliseconds_and_percent() -> None:
    assert milliseconds(2967.3) == "2.97"
    assert milliseconds(34.6) == "0.0346"
    assert milliseconds(math.nan) == "-"
    assert percent(3.456) == "3.5"
    assert percent(3.456, signed=True) == "+3.5"
    assert percent(-0.04, signed=True) == "-0.0"
    assert percent(None) == "-"


def test_print_table_shows_large_floats_without_exponent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(_common, "console", Console(file=out, width=80))
    _common.print_table([{"network": "resnet18", "measured µs": 29673.2, "error %": 1.234}])
    text = out.getvalue()
    assert "29,673" in text and "1.23" in text
    assert "e+" not in text


def test_progress_bar_shows_steps_elapsed_time_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True)
    with progress_bar("measuring 3 networks", 4, console=console) as update:
        for done in range(1, 4):
            update(done)
        console.print("inside")  # the bar keeps printing below other output
    text = out.getvalue()
    assert "measuring 3 networks" in text and "3/4" in text and "ETA" in text
    assert "inside" in text


def test_progress_bar_on_a_pipe_or_disabled_prints_nothing() -> None:
    for enabled, terminal in ((True, False), (False, True)):
        out = io.StringIO()
        console = Console(file=out, width=80, force_terminal=terminal)
        with progress_bar("measuring", 2, console=console, enabled=enabled) as update:
            update(1)
            update(2)
        assert out.getvalue() == ""
