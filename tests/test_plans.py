from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.plans import (
    PlanError,
    SweepPlan,
    copy_shipped_plans,
    find_plans,
    geometric_values,
    load_plans,
    plan_from_layers,
    save_plans,
    shipped_plans_dir,
)
from prmodel.workspace import Workspace

CONV_FIXED = "fixed: {channels: 16, height: 8, width: 8, kernel: 3, padding: 1}"


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def one(tmp_path: Path, body: str) -> SweepPlan:
    text = f"name: p\nkind: conv\n{CONV_FIXED}\n{textwrap.dedent(body)}"
    (plan,) = load_plans(write(tmp_path, text))
    return plan


@pytest.mark.parametrize(
    ("body", "values"),
    [
        ("sweep: {out_channels: [4, 1, 9]}", [4, 1, 9]),
        ("sweep: {out_channels: {start: 1, stop: 5}}", [1, 2, 3, 4, 5]),
        ("sweep: {out_channels: {start: 8, stop: 32, step: 8}}", [8, 16, 24, 32]),
        ("sweep: {out_channels: {geom: [1, 64, 7]}}", [1, 2, 4, 8, 16, 32, 64]),
    ],
)
def test_sweep_values(tmp_path: Path, body: str, values: list[int]) -> None:
    plan = one(tmp_path, body)
    assert plan.mode == "sweep" and plan.swept_parameter == "out_channels"
    assert [layer.out_channels for layer in plan.layers()] == values
    assert [v for v, _ in plan.sweep_points()] == values
    assert all(layer.channels == 16 and layer.kernel_h == 3 for layer in plan.layers())


def test_geometric_values_are_unique_ints() -> None:
    assert geometric_values(1, 10, 20) == tuple(sorted(set(geometric_values(1, 10, 20))))
    assert geometric_values(5, 5, 3) == (5,)


def test_shorthand_sweep_moves_both_axes(tmp_path: Path) -> None:
    plan = one(tmp_path, "sweep: {kernel: [1, 3, 5]}")
    assert [(x.kernel_h, x.kernel_w) for x in plan.layers()] == [(1, 1), (3, 3), (5, 5)]


def test_grid_is_every_combination(tmp_path: Path) -> None:
    plan = one(tmp_path, "grid: {out_channels: [8, 16], stride: [1, 2]}\nactivation: relu")
    layers = plan.layers()
    assert [(x.out_channels, x.stride_h) for x in layers] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert {x.activation for x in layers} == {"relu"}
    assert plan.swept_parameter is None


def test_points_override_fixed(tmp_path: Path) -> None:
    plan = one(tmp_path, "points: [{out_channels: 3}, {out_channels: 5, kernel: 1}, {}]")
    assert [(x.out_channels, x.kernel_h) for x in plan.layers()] == [(3, 3), (5, 1), (1, 3)]


def test_random_is_seeded_valid_and_within_space(tmp_path: Path) -> None:
    body = "random: {count: 25, seed: 3, space: {out_channels: [1, 64], kernel: [1, 3, 5, 11]}}"
    plan = one(tmp_path, body)
    layers = plan.layers()
    assert len({x.key for x in layers}) == 25
    assert all(1 <= x.out_channels <= 64 and x.kernel_h in (1, 3, 5, 11) for x in layers)
    # kernel 11 does not fit 8x8 with padding 1: such draws are redrawn, never returned
    assert all(x.kernel_h != 11 for x in layers)
    assert layers == one(tmp_path, body).layers()
    other = one(tmp_path, body.replace("seed: 3", "seed: 4")).layers()
    assert other != layers


def test_random_space_too_small(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="yields only 2 distinct valid layers of the 5"):
        one(tmp_path, "random: {count: 5, space: {out_channels: [1, 2]}}")


def test_duplicates_are_measured_once(tmp_path: Path) -> None:
    plan = one(tmp_path, "points: [{out_channels: 3}, {out_channels: 3}]")
    assert len(plan.layers()) == 1


def test_plans_list_and_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        plans:
          - {name: a, kind: dense, fixed: {channels: 8}, sweep: {out_channels: [1, 2]}}
          - {name: b, kind: relu, fixed: {height: 4, width: 4}, sweep: {channels: [1, 2, 3]}}
        """,
        "one.yaml",
    )
    write(tmp_path, "{name: c, kind: add, points: [{channels: 4}]}", "two.yaml")
    plans = load_plans(tmp_path)
    assert [(p.name, p.kind) for p in plans] == [
        ("a", LayerKind.DENSE),
        ("b", LayerKind.RELU),
        ("c", LayerKind.ADD),
    ]


def test_invalid_point_is_named_unless_skipped(tmp_path: Path) -> None:
    body = "sweep: {kernel: [3, 11, 5]}"
    with pytest.raises(PlanError) as info:
        one(tmp_path, body)
    message = str(info.value)
    assert "plan.yaml: plan 'p': point kernel=11 is not a valid layer" in message
    assert "skip_invalid" in message and "\n" not in message
    plan = one(tmp_path, body + "\nskip_invalid: true")
    assert [x.kernel_h for x in plan.layers()] == [3, 5]
    assert [v for v, _ in plan.sweep_points()] == [3, 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: p\nkind: softmax\nsweep: {channels: [1]}", "field 'kind' names unknown layer kind"),
        ("kind: conv\nsweep: {channels: [1]}", "plan #1: field 'name' is missing"),
        ("name: p\nsweep: {channels: [1]}", "plan 'p': field 'kind' is missing"),
        ("name: p\nkind: conv", "needs exactly one of sweep, grid, random, points (got none)"),
        (
            "name: p\nkind: conv\nsweep: {channels: [1]}\npoints: [{}]",
            "(got sweep and points)",
        ),
        ("name: p\nkind: conv\nsweep: {}", "field 'sweep' must be a non-empty mapping"),
        ("name: p\nkind: conv\nsweep: {channels: []}", "field 'sweep.channels' is empty"),
        (
            "name: p\nkind: conv\nsweep: {channels: [1], out_channels: [1]}",
            "field 'sweep' must name exactly one parameter",
        ),
        ("name: p\nkind: conv\nsweep: {colour: [1]}", "names parameter 'colour', which a conv"),
        ("name: p\nkind: dense\nsweep: {kernel: [1]}", "names parameter 'kernel', which a dense"),
        (
            "name: p\nkind: conv\nsweep: {channels: [1, two]}",
            "field 'sweep.channels' must be an integer, got 'two'",
        ),
        (
            "name: p\nkind: conv\nsweep: {channels: 4}",
            "field 'sweep.channels' must be a list, {start, stop, step}",
        ),
        (
            "name: p\nkind: conv\nsweep: {channels: {start: 1}}",
            "must have start and stop and optionally step",
        ),
        (
            "name: p\nkind: conv\nsweep: {channels: {start: 1, stop: 4, step: 0}}",
            "field 'sweep.channels.step' must be positive",
        ),
        (
            "name: p\nkind: conv\nsweep: {channels: {geom: [1, 8]}}",
            "geom must be [lo, hi, n]",
        ),
        ("name: p\nkind: conv\nfixed: [1]\nsweep: {channels: [1]}", "field 'fixed' must be a map"),
        (
            "name: p\nkind: conv\nfixed: {kernel: 3.5}\nsweep: {channels: [8]}",
            "field 'fixed.kernel' must be an integer, got 3.5",
        ),
        (
            "name: p\nkind: conv\nresidual: yes please\nsweep: {channels: [1]}",
            "field 'residual' must be true or false",
        ),
        (
            "name: p\nkind: relu\nactivation: relu\nsweep: {channels: [1]}",
            "field 'activation' does not apply to a relu layer",
        ),
        (
            "name: p\nkind: conv\nactivation: swish\nsweep: {channels: [1]}",
            "field 'activation' must be one of relu",
        ),
        (
            "name: p\nkind: conv\nsweeps: {channels: [1]}",
            "field 'sweeps' is not a plan field",
        ),
        ("name: p\nkind: conv\nrandom: {count: 3}", "field 'random' needs count and space"),
        (
            "name: p\nkind: conv\nrandom: {count: 0, space: {channels: [1, 4]}}",
            "field 'random.count' must be positive",
        ),
        (
            "name: p\nkind: conv\nrandom: {count: 2, space: {channels: [9, 4]}}",
            "range [9, 4] has lo > hi",
        ),
        ("name: p\nkind: conv\npoints: []", "field 'points' must be a non-empty list"),
        ("name: p\nkind: conv\npoints: [3]", "field 'points[0]' must be a mapping"),
        ("name: p\nkind: conv\nsweep: {channels: [1]\n", "is not valid YAML at line"),
        ("- just\n- a list", "must hold one plan (a mapping) or 'plans: [...]'"),
        ("plans: []", "field 'plans' must be a non-empty list"),
        (
            "plans: [{name: a, kind: add, points: [{}]}, {name: a, kind: add, points: [{}]}]",
            "plan name 'a' is used twice",
        ),
    ],
)
def test_plan_errors_name_file_plan_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        load_plans(path)
    text_of_error = str(info.value)
    assert text_of_error.startswith(str(path))
    assert message in text_of_error
    assert "\n" not in text_of_error


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"nope\.yaml: cannot read the plan file"):
        load_plans(tmp_path / "nope.yaml")


def test_plan_needs_one_mode_in_code() -> None:
    with pytest.raises(PlanError, match="exactly one of"):
        SweepPlan(name="x", kind=LayerKind.CONV)
    with pytest.raises(PlanError, match="not a 1-D sweep"):
        SweepPlan(name="x", kind=LayerKind.ADD, points=({},)).sweep_points()


@pytest.mark.parametrize(
    "body",
    [
        "sweep: {out_channels: {start: 2, stop: 40, step: 2}}",
        "sweep: {out_channels: [5, 1, 3]}",
        "grid: {out_channels: [8, 16], kernel: [1, 3]}\nactivation: relu6\nresidual: true",
        "random: {count: 4, seed: 2, space: {out_channels: [1, 9], stride: [1, 2, 3]}}",
        "random: {count: 3, space: {out_channels: {choices: [4, 8]}, stride: [1, 2]}}",
        "points: [{out_channels: 3}, {out_channels: 5, kernel: 1, activation: gelu}]",
        "sweep: {width: [8, 9]}\nskip_invalid: true\ndescription: hello",
    ],
)
def test_save_and_load_round_trip(tmp_path: Path, body: str) -> None:
    plan = one(tmp_path, body)
    path = save_plans([plan, plan.__class__(**{**plan.__dict__, "name": "q"})], tmp_path / "o.yaml")
    again = load_plans(path)
    assert again[0] == plan
    assert again[0].layers() == plan.layers()


@pytest.mark.parametrize("activation", [None, "relu"])
def test_plan_from_layers(tmp_path: Path, activation: str | None) -> None:
    layers = [
        LayerConfig.create(
            "conv", channels=c, height=9, width=9, out_channels=o, kernel=k
        ).with_params(activation=activation)
        for c, o, k in [(8, 16, 3), (16, 16, 1), (8, 32, 3)]
    ]
    plan = plan_from_layers("pr-conv", layers)
    assert plan.layers() == layers
    assert plan.fixed["height"] == 9 and "height" not in plan.points[0]
    assert plan.activation == activation
    assert load_plans(save_plans([plan], tmp_path / "pr.yaml")) == [plan]


def test_plan_from_layers_mixed_activation_and_residual() -> None:
    base = LayerConfig.create("conv", channels=8, height=9, width=9, out_channels=8, kernel=3)
    layers = [base, base.with_params(activation="relu"), base.with_params(residual=True)]
    assert plan_from_layers("x", layers).layers() == layers


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([], "has no layers"),
        (
            [LayerConfig.create("relu", channels=2), LayerConfig.create("add", channels=2)],
            "must all be of one kind, got add, relu",
        ),
    ],
)
def test_plan_from_layers_errors(layers: list[LayerConfig], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_from_layers("x", layers)


def test_shipped_plans_cover_every_kind() -> None:
    plans = load_plans(shipped_plans_dir())
    assert {p.kind for p in plans} == set(LayerKind)
    assert all(p.description for p in plans)
    assert all(len(p.layers()) <= 512 for p in plans)  # each runs in minutes


def test_acceptance_plan() -> None:
    (plan,) = load_plans(shipped_plans_dir() / "conv_out_channels.yaml")
    layers = plan.layers()
    assert plan.swept_parameter == "out_channels"
    assert [x.out_channels for x in layers] == list(range(1, 257))
    assert {(x.channels, x.height, x.width, x.kernel_h, x.pad_h) for x in layers} == {
        (64, 56, 56, 3, 1)
    }


def test_find_plans_looks_in_the_workspace_then_among_the_shipped(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    assert not ws.sweeps_dir.exists()
    (shipped,) = find_plans(["conv_out_channels"], ws)
    assert shipped.name == "conv_out_channels"
    assert copy_shipped_plans(ws) and not copy_shipped_plans(ws)  # existing files are kept
    own = f"name: conv_out_channels\nkind: conv\n{CONV_FIXED}\nsweep: {{out_channels: [3]}}\n"
    (ws.sweeps_dir / "conv_out_channels.yaml").write_text(own)
    (mine,) = find_plans([Path("conv_out_channels.yaml")], ws)
    assert [x.out_channels for x in mine.layers()] == [3]
    other = write(tmp_path, own, "other.yaml")
    with pytest.raises(PlanError, match="'conv_out_channels' appears in more than one"):
        find_plans(["conv_out_channels", other], ws)
