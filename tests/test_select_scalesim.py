"""Issue 7: PR selection recovers a systolic array's dimensions from SCALE-Sim sweeps alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from prmodel.layers import LayerKind
from prmodel.select.samplers import RandomSampler
from prmodel.targets import get_target
from prmodel.workflows.selection import run_selection
from prmodel.workspace import Workspace

pytest.importorskip("scalesim")

SHAPES = [(8, 8), (32, 32), (24, 40)]


def _periods(
    rows: int, cols: int, dataflow: str, folder: Path
) -> dict[tuple[str, str], int | None]:
    target = get_target(f"scalesim:rows={rows},cols={cols},dataflow={dataflow},mode=fast")
    workspace = Workspace.at(folder).create()
    selected = run_selection(
        target,
        workspace=workspace,
        kinds=(LayerKind.CONV, LayerKind.DENSE),
        progress=False,
        plots=False,
    ).representatives
    return {
        (s.kind.value, s.parameter): (s.period if s.has_steps else None) for s in selected.steps
    }


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_weight_stationary_array_rows_and_columns_are_recovered(
    rows: int, cols: int, tmp_path: Path
) -> None:
    # ws: filters fold over the columns, kernel*channels over the rows (a dense layer's
    # input width is its whole kernel, so its channel period is the row count).
    periods = _periods(rows, cols, "ws", tmp_path)
    assert periods[("conv", "out_channels")] == cols
    assert periods[("conv", "channels")] == rows  # swept at 1x1, where the taps are channels
    assert periods[("dense", "out_channels")] == cols
    assert periods[("dense", "channels")] == rows


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_output_stationary_array_columns_are_recovered(
    rows: int, cols: int, tmp_path: Path
) -> None:
    # os: filters fold over the columns; output pixels over the rows, and the input width
    # streams in time, so a dense layer's channels show no steps.
    periods = _periods(rows, cols, "os", tmp_path)
    assert periods[("conv", "out_channels")] == cols
    assert periods[("dense", "out_channels")] == cols
    assert periods[("dense", "channels")] is None


def test_ws_plateaus_keep_every_kernels_compute_cycles(tmp_path: Path) -> None:
    """Moving a layer onto its plateau keeps its fold counts, whatever its kernel: the
    channel plateaus of a 3x3 or 7x7 conv are folds of channels * taps, not of channels."""
    target = get_target("scalesim:rows=32,cols=32,dataflow=ws,mode=fast")
    found = run_selection(
        target,
        workspace=Workspace.at(tmp_path).create(),
        kinds=(LayerKind.CONV,),
        progress=False,
        plots=False,
    ).representatives
    channels = found.for_kind(LayerKind.CONV)["channels"]
    assert (channels.period, channels.window) == (32, 1)
    layers = RandomSampler().sample(LayerKind.CONV, 300, seed=4)
    moved = 0
    for layer in (x for x in layers if x.groups == 1):
        plateau = found.plateau_of(layer)
        moved += plateau.channels != layer.channels
        assert target.latency_us(plateau) == target.latency_us(layer), (layer, plateau)
    assert moved > 50
