"""Selection: the initial sweep design and PRs chosen from measured sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from staircases import staircase

from prmodel.layers import LayerKind
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.selection import (
    ParameterSweep,
    initial_sweeps,
    select_representatives,
    sweep_values,
)
from prmodel.select.spaces import IntRange, default_space
from prmodel.targets import get_target
from prmodel.targets.profiles import HardwareProfile, StepHint, builtin_profile

# -- the initial sweeps -------------------------------------------------------------------------


def test_sweep_values_follow_the_hint() -> None:
    dim = IntRange(1, 1024)
    assert sweep_values(dim, StepHint((16,))) == tuple(range(1, 65))
    blocked = sweep_values(dim, StepHint((16,), starts=(15,), step=4))
    assert blocked == (*range(1, 16), *range(16, 80, 4))
    plain = sweep_values(dim, None)
    assert plain[:32] == tuple(range(1, 33)) and plain[-1] == 1024 and len(plain) <= 40
    assert sweep_values(IntRange(1, 20), None) == tuple(range(1, 21))


def test_initial_sweeps_are_architecture_aware_plans() -> None:
    sweeps = initial_sweeps(["conv", "dense"], profile=builtin_profile("ort-cpu-avx512"))
    by_name = {(s.kind.value, s.parameter): s for s in sweeps}
    assert set(by_name) == {
        ("conv", "channels"),
        ("conv", "out_channels"),
        ("conv", "height"),
        ("dense", "channels"),
        ("dense", "out_channels"),
    }
    out = by_name[("conv", "out_channels")]
    assert out.values == tuple(range(1, 65))
    assert out.plan.name == "initial-conv-out_channels" and out.plan.mode == "sweep"
    assert [x.out_channels for x in out.plan.layers()] == list(out.values)
    assert by_name[("dense", "out_channels")].values == tuple(range(1, 129))
    channels = by_name[("conv", "channels")].values
    assert all(v % 4 == 0 for v in channels if v > 15)
    height = by_name[("conv", "height")]
    assert height.plan.mode == "points"  # width follows height
    assert all(x.width == x.height for x in height.plan.layers())
    space = default_space("conv")
    assert all(space.limits.allows(x) for s in sweeps for x in s.layers)


# -- representatives from sweeps ----------------------------------------------------------------


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


def test_selection_takes_plateau_ends_over_the_whole_range() -> None:
    profile = HardwareProfile(
        "p", "cpu", hints={LayerKind.CONV: {"out_channels": StepHint((16,), note="blocks")}}
    )
    pr = select_representatives(_sweeps(), target_id="t", profile=profile)
    out = pr.for_kind("conv")["out_channels"]
    assert out.has_steps and out.period == 16
    assert out.representatives == tuple(range(16, 1025, 16))
    assert out.evidence["profile_verdict"] == "agreed"
    assert out.evidence["sweep"]["plan"] == "p1"
    assert out.evidence["hint"]["note"] == "blocks"
    height = pr.for_kind("conv")["height"]
    assert not height.has_steps
    assert height.representatives[0] == 1 and height.representatives[-1] == 224
    assert len(height.representatives) <= 9
    assert pr.metadata["profile"]["name"] == "p"


def test_low_confidence_steps_fall_back_to_coarse_values() -> None:
    pr = select_representatives(_sweeps()[:1], target_id="t", min_confidence=1.01)
    out = pr.for_kind("conv")["out_channels"]
    assert not out.has_steps and out.period is None
    assert "below" in out.evidence["note"]


def test_unswept_range_parameters_get_coarse_values() -> None:
    spaces = {LayerKind.CONV: default_space("conv")}
    pr = select_representatives(_sweeps()[:1], target_id="t", spaces=spaces)
    channels = pr.for_kind("conv")["channels"]
    assert not channels.has_steps
    assert channels.representatives[0] == 1 and channels.representatives[-1] == 1024


def test_a_start_keeps_small_values_and_steps_above() -> None:
    low, high = np.arange(1, 16), np.arange(16, 81, 4)
    x = np.concatenate([low, high])
    latency = np.concatenate([15.0 + 5.5 * low, 10.0 + 73.6 * np.ceil(high / 16)])
    sweep = ParameterSweep(LayerKind.CONV, "channels", tuple(map(int, x)), tuple(latency))
    profile = HardwareProfile(
        "p", "cpu", hints={LayerKind.CONV: {"channels": StepHint((16,), starts=(15,), step=4)}}
    )
    steps = select_representatives([sweep], target_id="t", profile=profile).steps[0]
    assert steps.start == 15
    small = [r for r in steps.representatives if r <= 15]
    assert small[0] == 1 and small[-1] == 15
    assert [r for r in steps.representatives if r > 15] == list(range(16, 1025, 16))


def test_pr_file_round_trips_to_equal_objects(tmp_path: Path) -> None:
    pr = select_representatives(_sweeps(), target_id="t", metadata={"note": "x"})
    path = pr.save(tmp_path / "sub" / "t.yaml")
    text = path.read_text()
    assert text.startswith("# prmodel Performance Representatives")
    assert "representatives: [16, 32, 48" in text  # short lists stay on one readable line
    assert RepresentativeSet.load(path) == pr


def test_the_channel_sweep_runs_at_1x1_where_the_array_folds_the_window() -> None:
    # On a weight-stationary array a 3x3 conv's channel steps fall every 32/9 channels; at
    # 1x1 they are the array's 32 rows. Output-stationary arrays stream the window in time.
    for dataflow, kernel in (("ws", 1), ("is", 1), ("os", 3)):
        target = get_target(f"scalesim:rows=32,cols=32,dataflow={dataflow},mode=fast")
        found = initial_sweeps([LayerKind.CONV], profile=target.hardware_profile())
        sweeps = {s.parameter: s for s in found}
        assert {x.kernel_h for x in sweeps["channels"].layers} == {kernel}, dataflow
        assert {x.kernel_h for x in sweeps["out_channels"].layers} == {3}
    cpu = initial_sweeps([LayerKind.CONV], profile=builtin_profile("ort-cpu-avx512"))
    assert {x.kernel_h for s in cpu for x in s.layers} == {3}
