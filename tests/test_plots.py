"""Plots of the selection, drawn from the evidence a PR file keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from staircases import staircase

from prmodel.layers import LayerKind
from prmodel.select.plots import save_plots
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.selection import ParameterSweep, select_representatives


def _sweeps() -> list[ParameterSweep]:
    x, latency = staircase(16, 0, seed=11, count=64)
    smooth_x = np.arange(1, 41)
    return [
        ParameterSweep(LayerKind.CONV, "out_channels", tuple(map(int, x)), tuple(latency), "p1"),
        ParameterSweep(
            LayerKind.CONV,
            "height",
            tuple(map(int, smooth_x)),
            tuple(float(v) for v in 3.0 + smooth_x**2),
            "p2",
        ),
    ]


def test_plots_show_every_swept_parameter(tmp_path: Path) -> None:
    pr = select_representatives(_sweeps(), target_id="t")
    written = save_plots(RepresentativeSet.load(pr.save(tmp_path / "t.yaml")), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["conv-height.png", "conv-out_channels.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
