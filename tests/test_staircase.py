"""Tests of prmodel.select.staircase: jump marks and plateaus of a 1-D sweep."""

from __future__ import annotations

import pytest

from prmodel.select.staircase import plateaus, staircase


def test_staircase_marks_jumps_over_three_percent() -> None:
    points = staircase([1, 2, 3, 4], [10.0, 10.2, 11.0, 11.0])
    assert [p.ratio for p in points] == pytest.approx([None, 1.02, 11.0 / 10.2, 1.0])
    assert [p.jump for p in points] == [False, False, True, False]


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        # a clean staircase of period 4
        ([10, 10, 10, 10, 20, 20, 20, 20, 30, 30], [(1, 4), (5, 8), (9, 10)]),
        # a lone slow point and a lone fast point do not split a plateau
        ([10, 10, 10, 13, 10, 10, 20, 20, 17, 20, 20], [(1, 6), (7, 11)]),
        # no steps at all
        ([10, 10.1, 10.2, 10.1], [(1, 4)]),
    ],
)
def test_plateaus(latencies: list[float], expected: list[tuple[int, int]]) -> None:
    points = staircase(list(range(1, len(latencies) + 1)), latencies)
    found = plateaus(points)
    assert [(p.first, p.last) for p in found] == expected
    assert found[0].jump_ratio is None
