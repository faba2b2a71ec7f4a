"""Samplers: PR, random and adaptive draws under a budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.network_prior import NetworkSampler
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.select.samplers import (
    SAMPLER_NAMES,
    AdaptiveSampler,
    PRSampler,
    RandomSampler,
    SamplingError,
    log_feature_fit_predict,
    make_sampler,
    perturb,
)
from prmodel.select.spaces import Choice, default_space
from prmodel.targets.analytic import AnalyticTarget


def _cpu_like_set() -> RepresentativeSet:
    """PRs as the CPU target has them: blocks of 16, a small-channel regime, coarse heights."""
    return RepresentativeSet(
        "cpu-like",
        (
            ParameterSteps(
                LayerKind.CONV, "out_channels", True, period=16,
                representatives=tuple(range(16, 1025, 16)),
            ),
            ParameterSteps(
                LayerKind.CONV, "channels", True, period=16, start=15,
                representatives=(1, 2, 4, 8, 15, *range(16, 1025, 16)),
            ),
            ParameterSteps(
                LayerKind.CONV, "height", False, representatives=(1, 2, 4, 7, 14, 28, 56, 112, 224)
            ),
            ParameterSteps(
                LayerKind.DENSE, "out_channels", True, period=32,
                representatives=tuple(range(32, 4097, 32)),
            ),
        ),
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize("budget", [100, 1000, 10000])
def test_balanced_pr_plans_are_valid_unique_and_cover_every_pr_value(
    kind: str, budget: int
) -> None:
    sampler = PRSampler(_cpu_like_set(), draw="balanced")
    layers = sampler.sample(kind, budget, seed=0)
    space = default_space(kind)
    values_for = sampler.values_for(kind, budget)
    combinations = int(np.prod([len(v) for v in values_for.values()]))
    assert len(layers) == budget if combinations > budget else len(layers) <= combinations
    assert len({layer.key for layer in layers}) == len(layers)
    assert all(space.contains(layer) for layer in layers)
    for name, values in values_for.items():
        if len(values) > budget:
            continue  # the budget does not allow it
        seen = {space.values_from_layer(layer)[name] for layer in layers}
        assert set(values) <= seen, f"{name}: {sorted(set(values) - seen)} missing"


@pytest.mark.parametrize(
    ("kind", "parameter"), [("conv", "out_channels"), ("dense", "out_channels")]
)
def test_pr_draws_sit_on_plateau_ends_and_follow_the_space(kind: str, parameter: str) -> None:
    pr = _cpu_like_set()
    steps = pr.for_kind(kind)[parameter]
    layers = PRSampler(pr).sample(kind, 400, seed=0)
    space = default_space(kind)
    assert len(layers) == 400 and len({x.key for x in layers}) == 400
    assert all(space.contains(x) for x in layers)
    plain = [x for x in layers if kind == "dense" or x.groups == 1]
    assert all(getattr(x, parameter) in steps.representatives for x in plain)
    # Drawn on the space's log scale: the first plateaus are used far more than 1/len(PRs).
    first_two = sum(getattr(x, parameter) <= 2 * steps.representatives[0] for x in plain)
    assert first_two / len(plain) > 0.25
    balanced = PRSampler(pr, draw="balanced").sample(kind, 400, seed=0)
    first_two_balanced = sum(
        getattr(x, parameter) <= 2 * steps.representatives[0] for x in balanced
    )
    assert first_two_balanced / len(balanced) < 0.1


def test_step_free_ranges_are_drawn_not_gridded() -> None:
    pr = RepresentativeSet("t", (ParameterSteps(LayerKind.DENSE, "out_channels", True, period=32),))
    layers = PRSampler(pr).sample("dense", 300, seed=1)
    assert len({x.channels for x in layers}) > 150  # a coarse grid would have a few dozen
    assert all(x.out_channels % 32 == 0 for x in layers)


def test_balanced_draws_follow_the_weights_of_a_choice() -> None:
    conv = default_space("conv")
    widths = ("width4", "width16", "width64")
    groups = Choice((1, "depthwise", *widths), (5.0, 3.0, 1.0, 1.0, 1.0))
    space = replace(conv, dimensions={**conv.dimensions, "groups": groups})
    sampler = PRSampler(_cpu_like_set(), {LayerKind.CONV: space}, draw="balanced")
    layers = sampler.sample("conv", 1100, seed=0)
    dense = sum(layer.groups == 1 for layer in layers) / len(layers)
    depthwise = sum(1 < layer.groups == layer.channels for layer in layers) / len(layers)
    found = {x.channels // x.groups for x in layers if 1 < x.groups < x.channels}
    assert dense == pytest.approx(5 / 11, abs=0.05)
    assert depthwise == pytest.approx(3 / 11, abs=0.05)
    assert found == {4, 16, 64}
    assert all(space.contains(layer) for layer in layers)


def test_unknown_pr_draw_is_refused() -> None:
    with pytest.raises(SamplingError, match="draw"):
        PRSampler(_cpu_like_set(), draw="grid")


def test_pr_values_come_from_the_pr_set_and_the_space() -> None:
    values = PRSampler(_cpu_like_set()).values_for("conv")
    assert values["out_channels"] == tuple(range(16, 1025, 16))
    assert values["channels"][:5] == (1, 2, 4, 8, 15)
    assert values["kernel_h"] == (1, 3, 5, 7)  # a choice: every value
    assert values["groups"] == (1, "depthwise")
    dense = PRSampler(_cpu_like_set()).values_for("dense")
    assert dense["channels"][0] == 1 and dense["channels"][-1] == 4096  # not analysed: coarse


def test_a_large_budget_buys_more_values_of_step_free_parameters() -> None:
    sampler = PRSampler(_cpu_like_set())
    assert len(sampler.values_for("dense")["channels"]) <= 9
    grown = sampler.values_for("dense", 10000)
    assert len(grown["channels"]) > 30
    assert grown["out_channels"] == tuple(range(32, 4097, 32))  # stepped: PRs only
    assert len(grown["channels"]) * len(grown["out_channels"]) <= 10000


def test_the_full_product_is_returned_when_it_fits() -> None:
    pr = RepresentativeSet(
        "t",
        (
            ParameterSteps(LayerKind.DENSE, "channels", True, period=8, representatives=(8, 16)),
            ParameterSteps(
                LayerKind.DENSE, "out_channels", True, period=16, representatives=(16, 32, 48)
            ),
        ),
    )
    layers = PRSampler(pr).sample("dense", 100)
    assert sorted((x.channels, x.out_channels) for x in layers) == [
        (c, o) for c in (8, 16) for o in (16, 32, 48)
    ]


def test_samplers_are_seeded() -> None:
    sampler = PRSampler(_cpu_like_set())
    assert sampler.sample("conv", 50, seed=3) == sampler.sample("conv", 50, seed=3)
    assert sampler.sample("conv", 50, seed=3) != sampler.sample("conv", 50, seed=4)
    random = RandomSampler()
    assert random.sample("conv", 20, seed=1) == random.sample("conv", 20, seed=1)


@pytest.mark.parametrize("kind", list(LayerKind))
def test_random_sampler_draws_unique_layers_of_the_space(kind: LayerKind) -> None:
    space = default_space(kind)
    layers = RandomSampler(space).sample(kind, 60, seed=0)
    assert len(layers) == 60 and len({x.key for x in layers}) == 60
    assert all(space.contains(layer) for layer in layers)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: RandomSampler(default_space("conv")).sample("dense", 5), "for conv layers"),
        (lambda: RandomSampler().sample("conv", 0), "positive number"),
        (lambda: PRSampler(_cpu_like_set()).sample("conv", -1), "positive number"),
    ],
)
def test_sampler_misuse_is_refused(call: object, message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        call()  # type: ignore[operator]


def test_perturb_moves_a_layer_to_a_valid_neighbour() -> None:
    space = default_space("conv")
    rng = np.random.default_rng(0)
    layer = space.build({"channels": 64, "out_channels": 64, "height": 28})
    for _ in range(20):
        near = perturb(space, layer, rng)
        assert near is not None and near != layer and space.contains(near)
        moved = [
            n
            for n in ("channels", "out_channels", "height")
            if getattr(near, n) != getattr(layer, n)
        ]
        assert all(0.4 <= getattr(near, n) / getattr(layer, n) <= 2.5 for n in moved)


# -- adaptive sampling --------------------------------------------------------------------------


def _nearest_neighbour(
    train: Sequence[LayerConfig], y: np.ndarray, query: Sequence[LayerConfig]
) -> np.ndarray:
    """A deliberately crude model: the latency of the nearest training layer in log MACs."""
    macs = np.log([x.macs for x in train])
    return np.array([y[np.argmin(np.abs(macs - np.log(q.macs)))] for q in query])


def test_adaptive_sampler_spends_its_budget_around_bad_predictions() -> None:
    target = AnalyticTarget()
    calls: list[int] = []

    def measure(layers: Sequence[LayerConfig]) -> np.ndarray:
        calls.append(len(layers))
        return np.array([target.latency_us(x) for x in layers])

    sampler = AdaptiveSampler(measure=measure, fit_predict=_nearest_neighbour)
    layers = sampler.sample("conv", 60, seed=0)
    assert len(layers) == 60 and len({x.key for x in layers}) == 60
    assert all(default_space("conv").contains(x) for x in layers)
    assert sum(calls) == 60  # every layer measured once, none wasted
    assert sampler.history_ and sum(h["neighbours"] for h in sampler.history_) > 0
    assert set(sampler.latencies_) == {x.key for x in layers}


def test_adaptive_sampler_drops_layers_that_fail_to_measure() -> None:
    def measure(layers: Sequence[LayerConfig]) -> np.ndarray:
        return np.array([np.nan if x.channels % 2 else float(x.macs + 1) for x in layers])

    sampler = AdaptiveSampler(
        default_space("dense"), measure=measure, fit_predict=_nearest_neighbour
    )
    layers = sampler.sample("dense", 30, seed=1)
    assert layers and all(x.channels % 2 == 0 for x in layers)
    assert len(layers) <= 30


def test_default_fit_predict_learns_a_simple_latency() -> None:
    target = AnalyticTarget()
    layers = RandomSampler().sample("dense", 120, seed=0)
    y = np.array([target.latency_us(x) for x in layers])
    predicted = log_feature_fit_predict(layers[:100], y[:100], layers[100:])
    assert np.median(np.abs(predicted / y[100:] - 1)) < 0.25


# -- make_sampler -------------------------------------------------------------------------------


def test_make_sampler_builds_every_sampler_by_name() -> None:
    network = {"net": [LayerConfig.create("dense", channels=64, out_channels=32)]}
    built = {
        "pr": make_sampler("pr", representatives=_cpu_like_set()),
        "random": make_sampler("random", space=default_space("dense")),
        "adaptive": make_sampler("adaptive", measure=lambda layers: np.ones(len(layers))),
        "networks": make_sampler("networks", networks=network, random_share=0.5),
    }
    assert set(built) == set(SAMPLER_NAMES)
    assert isinstance(built["pr"], PRSampler) and isinstance(built["random"], RandomSampler)
    assert isinstance(built["adaptive"], AdaptiveSampler)
    assert isinstance(built["networks"], NetworkSampler)
    assert built["networks"].random_share == 0.5
    assert built["adaptive"].fit_predict is log_feature_fit_predict
    drawn = built["pr"].sample("conv", 20, seed=3)
    assert drawn == PRSampler(_cpu_like_set()).sample("conv", 20, seed=3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("pr", "needs a Performance Representatives set"),
        ("adaptive", "needs a measure function"),
        ("networks", "needs at least one network"),
        ("bogus", "unknown sampler 'bogus'"),
    ],
)
def test_make_sampler_says_what_is_missing(name: str, message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        make_sampler(name)
