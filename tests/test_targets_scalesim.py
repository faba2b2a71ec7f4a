"""Tests of the SCALE-Sim target: plateaus, mapping, fast vs full, options, hygiene."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets import Benchmark, Target, get_target, scalesim
from prmodel.targets.base import LayerBuildError, TargetError, fingerprint_hash
from prmodel.targets.scalesim import ScaleSimTarget, gemm_view, scalesim_version

pytestmark = pytest.mark.skipif(scalesim_version() is None, reason="scalesim is not installed")


def conv(**params: Any) -> LayerConfig:
    base: dict[str, Any] = {"channels": 16, "height": 12, "width": 12, "out_channels": 8}
    base.update(kernel=3, padding=1)
    base.update(params)
    return LayerConfig.create("conv", **base)


def dense(**params: Any) -> LayerConfig:
    base: dict[str, Any] = {"channels": 50, "out_channels": 40}
    base.update(params)
    return LayerConfig.create("dense", **base)


def cycles(target: ScaleSimTarget, layer: LayerConfig) -> int:
    return target.simulate(layer).compute_cycles


# -- SCALE-Sim's own compute system, for cross-checking the closed form ---------------------


def demand_cycles(layer: LayerConfig, *, rows: int, cols: int, dataflow: str) -> int:
    """Compute cycles from SCALE-Sim's demand matrices (one group, batch as extra rows)."""
    from scalesim.topology_utils import topologies

    view = gemm_view(layer)
    topology = topologies()
    topology.load_layer_params_from_list("layer", view.topology_row())
    return view.groups * _demand_rows(topology, 0, rows, cols, dataflow, batch=view.batch)


def _demand_rows(
    topology: Any, layer_id: int, rows: int, cols: int, dataflow: str, *, batch: int = 1
) -> int:
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.compute.systolic_compute_is import systolic_compute_is
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config

    config = scale_config()
    config.force_valid()
    config.set_arr_dims(rows=rows, cols=cols)
    config.set_dataflow(dataflow)
    operands = operand_matrix()
    operands.set_params(
        config_obj=config, topoutil_obj=topology, layoututil_obj=layouts(), layer_id=layer_id
    )
    ifmap = np.concatenate([operands.get_ifmap_matrix()[1]] * batch)
    ofmap = np.concatenate([operands.get_ofmap_matrix()[1]] * batch)
    compute = {"ws": systolic_compute_ws, "os": systolic_compute_os, "is": systolic_compute_is}
    system = compute[dataflow]()
    system.set_params(
        config_obj=config,
        ifmap_op_mat=ifmap,
        filter_op_mat=operands.get_filter_matrix()[1],
        ofmap_op_mat=ofmap,
    )
    return int(system.get_ifmap_demand_mat().shape[0]) - 1


CROSS_CHECK_LAYERS = [
    conv(),
    conv(out_channels=9, stride=2, padding=0, height=11, width=9),
    conv(kernel=1, padding=0, channels=40, out_channels=20),
    conv(kernel_h=3, kernel_w=1, pad_h=1, pad_w=0, stride_h=2, stride_w=1),
    conv(kernel=5, padding=1, stride=3, height=13, width=11),
    conv(channels=8, out_channels=8, groups=8),
    conv(channels=8, out_channels=16, groups=4, batch=2),
    conv(batch=3, channels=3, out_channels=5),
    dense(),
    dense(batch=3, channels=20, out_channels=70),
]


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (24, 40), (5, 3)])
@pytest.mark.parametrize("layer", CROSS_CHECK_LAYERS, ids=lambda layer: layer.label)
def test_fast_mode_equals_scalesim_demand_matrices(
    layer: LayerConfig, rows: int, cols: int, dataflow: str
) -> None:
    target = ScaleSimTarget(rows=rows, cols=cols, dataflow=dataflow)
    assert cycles(target, layer) == demand_cycles(layer, rows=rows, cols=cols, dataflow=dataflow)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_depthwise_equals_scalesim_dp_expansion(tmp_path: Path, dataflow: str) -> None:
    """SCALE-Sim's topology loader splits a 'DP' layer into one 1-channel layer per channel."""
    from scalesim.topology_utils import topologies

    csv = tmp_path / "dw.csv"
    csv.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nDP1, 14, 14, 3, 3, 8, 1, 1,\n"
    )
    topology = topologies()
    topology.load_arrays(topofile=str(csv))
    assert topology.get_num_layers() == 8
    expected = sum(_demand_rows(topology, i, 8, 8, dataflow) for i in range(8))
    depthwise = conv(channels=8, out_channels=8, groups=8)  # 12x12 padded by 1 = 14x14
    assert cycles(ScaleSimTarget(rows=8, cols=8, dataflow=dataflow), depthwise) == expected


# -- plateaus ---------------------------------------------------------------------------------


def test_design_example_32x32_ws_plateaus() -> None:
    """docs/targets.md (SCALE-Sim): 2609 / 5219 / 7829 / 10439 cycles for 1-32, 33-64, ... outputs.

    The layer: a 3x3 conv over 32 channels at 14x14 with padding 1 (T = 196 output pixels,
    window 288 = 9 row folds of 32).
    """
    target = ScaleSimTarget(rows=32, cols=32, dataflow="ws")
    layer = conv(channels=32, height=14, width=14)
    by_channels = {n: cycles(target, layer.with_params(out_channels=n)) for n in range(1, 129)}
    for block, expected in enumerate([2609, 5219, 7829, 10439]):
        plateau = {by_channels[n] for n in range(32 * block + 1, 32 * block + 33)}
        assert plateau == {expected}


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (24, 40), (32, 32)])
def test_output_channels_are_flat_inside_each_column_block(
    rows: int, cols: int, dataflow: str
) -> None:
    target = ScaleSimTarget(rows=rows, cols=cols, dataflow=dataflow)
    values = [cycles(target, conv(out_channels=n)) for n in range(1, 2 * cols + 2)]
    assert len(set(values[:cols])) == 1
    assert len(set(values[cols : 2 * cols])) == 1
    assert values[0] < values[cols] < values[2 * cols]


@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (24, 40)])
def test_ws_input_channels_step_at_row_blocks(rows: int, cols: int) -> None:
    target = ScaleSimTarget(rows=rows, cols=cols, dataflow="ws")
    pointwise = conv(kernel=1, padding=0)
    values = [cycles(target, pointwise.with_params(channels=c)) for c in range(1, 2 * rows + 1)]
    assert len(set(values[:rows])) == 1 and len(set(values[rows:])) == 1
    assert values[rows] > values[rows - 1]


@pytest.mark.parametrize(("rows", "cols"), [(8, 8), (24, 40)])
def test_os_batch_of_dense_is_flat_inside_row_blocks(rows: int, cols: int) -> None:
    target = ScaleSimTarget(rows=rows, cols=cols, dataflow="os")
    values = [cycles(target, dense(batch=b)) for b in range(1, rows + 2)]
    assert len(set(values[:rows])) == 1
    assert values[rows] > values[rows - 1]


def test_is_grows_with_every_output_channel() -> None:
    """Input-stationary streams the filters in time: no plateau in out_channels."""
    target = ScaleSimTarget(rows=8, cols=8, dataflow="is")
    values = [cycles(target, conv(out_channels=n)) for n in range(1, 20)]
    assert all(b > a for a, b in itertools.pairwise(values))


def test_latency_is_cycles_over_clock() -> None:
    layer = conv()
    slow = ScaleSimTarget(clock_mhz=500.0)
    fast = ScaleSimTarget(clock_mhz=1000.0)
    assert slow.latency_us(layer) == pytest.approx(2 * fast.latency_us(layer))
    assert fast.latency_us(layer) == pytest.approx(cycles(fast, layer) / 1000.0)


# -- mapping ---------------------------------------------------------------------------------


def test_padding_is_passed_as_padded_input() -> None:
    padded = conv(height=12, width=10, pad_h=1, pad_w=2)
    view = gemm_view(padded)
    assert (view.ifmap_h, view.ifmap_w) == (14, 14)
    assert view == gemm_view(conv(height=14, width=14, padding=0))


@pytest.mark.parametrize(
    "layer",
    [
        conv(height=12, width=12, stride=2, padding=0),  # (12 - 3) % 2 == 1: a spare row
        conv(height=13, width=12, kernel_h=3, kernel_w=1, pad_h=1, pad_w=0, stride_h=2),
        conv(height=17, width=10, kernel=5, padding=2, stride=3),
        conv(height=12, width=12, stride=1, padding=1),
    ],
    ids=lambda layer: layer.label,
)
def test_scalesim_sees_exactly_the_layers_output_size(layer: LayerConfig) -> None:
    from scalesim.topology_utils import topologies

    topology = topologies()
    topology.load_layer_params_from_list("layer", gemm_view(layer).topology_row())
    assert list(topology.get_layer_ofmap_dims(0)) == [layer.output_height, layer.output_width]


@pytest.mark.parametrize(
    "layer",
    [conv(), conv(stride=2), conv(kernel=5, padding=2, stride_h=2), conv(batch=3), dense()],
    ids=lambda layer: layer.label,
)
def test_gemm_view_matches_the_layer(layer: LayerConfig) -> None:
    view = gemm_view(layer)
    assert view.macs == layer.macs
    if layer.kind is LayerKind.CONV:
        assert view.ofmap_px == layer.batch * layer.output_height * layer.output_width


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_groups_cost_groups_times_one_group(dataflow: str) -> None:
    target = ScaleSimTarget(rows=8, cols=8, dataflow=dataflow)
    grouped = conv(channels=16, out_channels=32, groups=4)
    one_group = conv(channels=4, out_channels=8)
    assert cycles(target, grouped) == 4 * cycles(target, one_group)


def test_batch_amortises_fill_and_drain() -> None:
    target = ScaleSimTarget(rows=8, cols=8, dataflow="ws")
    one, four = cycles(target, conv()), cycles(target, conv(batch=4))
    assert one < four < 4 * one


def test_fused_activation_and_residual_are_free() -> None:
    target = ScaleSimTarget()
    plain = conv()
    assert cycles(target, plain.with_params(activation="relu", residual=True)) == cycles(
        target, plain
    )
    assert cycles(target, dense(activation="gelu")) == cycles(target, dense())


@pytest.mark.parametrize(
    "kind", [k for k in LayerKind if k not in (LayerKind.CONV, LayerKind.DENSE)]
)
def test_other_kinds_are_refused_with_a_reason(kind: LayerKind) -> None:
    target = ScaleSimTarget()
    params = {"channels": 4, "height": 8, "width": 8}
    if kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
        params["kernel"] = 2
    layer = LayerConfig.create(kind, **params)
    reason = target.unsupported_reason(layer)
    assert reason == (
        f"scalesim target models conv, depthwise conv and dense layers; "
        f"{kind.value} is not modelled"
    )
    with pytest.raises(LayerBuildError, match="not modelled"):
        target.prepare(layer)


def test_dilation_is_refused() -> None:
    layer = conv(dilation=2, padding=2)
    assert "dilated" in (ScaleSimTarget().unsupported_reason(layer) or "")
    with pytest.raises(LayerBuildError, match="dilation 2x2"):
        ScaleSimTarget().latency_us(layer)
    assert ScaleSimTarget().unsupported_reason(conv()) is None


# -- full mode --------------------------------------------------------------------------------

FULL_LAYERS = [
    conv(height=8, width=8),
    conv(height=9, width=9, channels=5, out_channels=7, stride=2, padding=0, batch=2),
    conv(height=8, width=8, channels=6, out_channels=6, groups=6),
    dense(batch=3, channels=20, out_channels=12),
]


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("layer", FULL_LAYERS, ids=lambda layer: layer.label)
def test_full_mode_agrees_with_fast_on_compute_cycles(layer: LayerConfig, dataflow: str) -> None:
    fast = ScaleSimTarget(rows=8, cols=8, dataflow=dataflow).simulate(layer)
    full = ScaleSimTarget(rows=8, cols=8, dataflow=dataflow, mode="full").simulate(layer)
    assert full.compute_cycles == fast.compute_cycles
    assert full.stall_cycles >= 0
    assert full.memory["cycles_incl_prefetch"] >= full.total_cycles
    assert full.memory["ofmap_dram_writes"] > 0


def test_full_mode_stalls_on_a_starved_memory() -> None:
    layer = conv(height=8, width=8, channels=16, out_channels=16)
    starved = ScaleSimTarget(
        rows=8, cols=8, mode="full", bandwidth=1, ifmap_kb=1, filter_kb=1, ofmap_kb=1
    )
    result = starved.simulate(layer)
    assert result.stall_cycles > 0
    assert result.total_cycles == result.compute_cycles + result.stall_cycles
    assert starved.latency_us(layer) == pytest.approx(result.total_cycles / starved.clock_mhz)
    assert ScaleSimTarget(rows=8, cols=8).simulate(layer).compute_cycles == result.compute_cycles


def test_full_mode_leaves_no_files_and_prints_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    layer = conv(height=7, width=7, channels=3, out_channels=4)  # unique: not cached yet
    for dataflow in ("ws", "os", "is"):
        ScaleSimTarget(rows=4, cols=4, dataflow=dataflow, mode="full").simulate(layer)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert capsys.readouterr().out == ""


# -- the Target protocol ----------------------------------------------------------------------


def test_benchmark_replays_the_simulated_latency() -> None:
    target = ScaleSimTarget(rows=8, cols=8)
    assert isinstance(target, Target)
    assert target.deterministic
    benchmark = target.prepare(conv())
    assert isinstance(benchmark, Benchmark)
    latency = target.latency_us(conv())
    assert benchmark.run(3) == [latency] * 3
    timings = benchmark.finish()
    assert timings.kernel_us == timings.wall_us == (latency,) * 3
    assert timings.extra["total_cycles"] == cycles(target, conv())
    assert {"compute_cycles", "stall_cycles", "folds", "utilization"} <= set(timings.extra)
    assert 0 < timings.extra["utilization"] <= timings.extra["mapping_efficiency"] <= 100
    benchmark.close()
    benchmark.close()


def test_results_are_deterministic_across_instances_and_cache() -> None:
    layers = [conv(out_channels=n) for n in (3, 17, 40)]
    first = [ScaleSimTarget(rows=8, cols=16).simulate(layer) for layer in layers]
    scalesim._simulate.cache_clear()
    second = [ScaleSimTarget(rows=8, cols=16).simulate(layer) for layer in layers]
    assert first == second


def test_target_id_and_fingerprint() -> None:
    assert ScaleSimTarget().target_id == "scalesim-32x32-ws-fast"
    custom = ScaleSimTarget(
        rows=8, cols=16, dataflow="os", mode="full", bandwidth=4, clock_mhz=700.0, ofmap_kb=64
    )
    assert custom.target_id == "scalesim-8x16-os-full-sram256-256-64-bw4-700mhz"
    fingerprint = custom.fingerprint()
    assert fingerprint["scalesim"] == scalesim_version()
    assert {k: fingerprint[k] for k in ("rows", "cols", "dataflow", "mode", "bandwidth")} == {
        "rows": 8,
        "cols": 16,
        "dataflow": "os",
        "mode": "full",
        "bandwidth": 4,
    }
    hashes = {
        fingerprint_hash(t.fingerprint())
        for t in (ScaleSimTarget(), ScaleSimTarget(mode="full"), ScaleSimTarget(rows=16))
    }
    assert len(hashes) == 3


# -- options -----------------------------------------------------------------------------------


def test_get_target_parses_options() -> None:
    target = get_target("scalesim:rows=8,cols=24,dataflow=OS,clock-mhz=800,mode=full")
    assert isinstance(target, ScaleSimTarget)
    assert (target.rows, target.cols, target.dataflow, target.clock_mhz, target.mode) == (
        8,
        24,
        "os",
        800.0,
        "full",
    )
    assert get_target("scalesim") == ScaleSimTarget()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("scalesim:size=8", "has no option 'size'"),
        ("scalesim:rows=0", "rows must be a positive integer, got 0"),
        ("scalesim:cols=abc", "cols='abc' is not an integer"),
        ("scalesim:rows=8.5", "rows='8.5' is not an integer"),
        ("scalesim:dataflow=rs", "dataflow must be one of ws, os, is, got 'rs'"),
        ("scalesim:mode=slow", "mode must be one of fast, full, got 'slow'"),
        ("scalesim:clock_mhz=-5", "clock_mhz must be positive"),
        ("scalesim:bandwidth=x", "bandwidth='x' is not an integer"),
        ("scalesim:profile=/nonexistent/p.yaml", "cannot read scalesim profile"),
    ],
)
def test_bad_options_name_the_fault(spec: str, message: str) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_target(spec)


def test_profile_file_with_overrides(tmp_path: Path) -> None:
    profile = tmp_path / "array.yaml"
    profile.write_text("rows: 8\ncols: 16\ndataflow: os\nbandwidth: 4\n")
    target = ScaleSimTarget.from_options({"profile": str(profile), "cols": "24"})
    assert (target.rows, target.cols, target.dataflow, target.bandwidth) == (8, 24, "os", 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [("rows: 8\nspeed: 3\n", "unknown key 'speed'"), ("- 8\n", "must be a mapping")],
)
def test_bad_profile_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(text)
    with pytest.raises(TargetError, match=message) as raised:
        ScaleSimTarget.from_options({"profile": str(profile)})
    assert str(profile) in str(raised.value)


def test_without_scalesim_fast_works_and_full_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalesim, "scalesim_version", lambda: None)
    (info,) = ScaleSimTarget.target_infos()
    assert not info.available and "pip install" in info.note
    assert ScaleSimTarget().latency_us(conv()) > 0
    with pytest.raises(TargetError, match="mode=full needs the scalesim package"):
        ScaleSimTarget(mode="full")


def test_target_info_when_installed() -> None:
    (info,) = ScaleSimTarget.target_infos()
    assert info.name == "scalesim" and info.available
    assert info.note == f"scalesim {scalesim_version()}"


# -- speed -------------------------------------------------------------------------------------


def test_fast_mode_speed_sanity() -> None:
    target = ScaleSimTarget(rows=16, cols=16)
    layers = [
        conv(channels=c, out_channels=o, height=56, width=56)
        for c in range(8, 264, 32)
        for o in range(8, 264, 32)
    ]
    started = time.perf_counter()
    for layer in layers:
        target.latency_us(layer)
    per_layer_ms = 1e3 * (time.perf_counter() - started) / len(layers)
    print(f"scalesim fast mode: {per_layer_ms:.4f} ms per layer over {len(layers)} layers")
    assert per_layer_ms < 50
    assert math.isfinite(per_layer_ms)
