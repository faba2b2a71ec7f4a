"""The network-prior sampler: network layers, their neighbours and random layers."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.estimate.estimator import mapped_layers
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.plans import load_plans
from prmodel.select.network_prior import (
    FUSED_ACTIVATIONS,
    GROUP_WIDTHS,
    KERNELS,
    MAX_TOKENS,
    NetworkSampler,
    SampledLayer,
    neighbour,
)
from prmodel.select.samplers import SamplingError
from prmodel.select.spaces import default_space
from prmodel.targets.analytic import AnalyticTarget
from prmodel.zoo import tiny_mobilenet, tiny_resnet

runner = CliRunner()

CONV = LayerConfig.create(
    "conv", channels=64, height=56, width=56, out_channels=64, kernel=3, padding=1,
    activation="relu",
)  # fmt: skip
DEPTHWISE = LayerConfig.create(
    "conv", channels=96, height=28, width=28, out_channels=96, kernel=3, padding=1, groups=96
)
GROUPED = LayerConfig.create(
    "conv", channels=64, height=14, width=14, out_channels=64, kernel=3, padding=1, groups=8,
    residual=True,
)  # fmt: skip
TOKENS = LayerConfig.create("dense", batch=196, channels=96, out_channels=384)
CLASSIFIER = LayerConfig.create("dense", channels=512, out_channels=1000)
NETWORKS = {
    "a": [CONV, CONV, DEPTHWISE, CLASSIFIER],
    "b": [CONV, GROUPED, TOKENS],
}


def test_originals_are_the_distinct_layers_with_their_networks() -> None:
    originals = NetworkSampler(NETWORKS).originals("conv")
    assert set(originals) == {CONV.key, DEPTHWISE.key, GROUPED.key}
    assert originals[CONV.key].sources == frozenset({"a", "b"})
    assert originals[GROUPED.key].sources == frozenset({"b"})
    assert NetworkSampler(NETWORKS).originals("maxpool") == {}


def test_a_sample_holds_the_originals_then_neighbours_then_random_layers() -> None:
    drawn = NetworkSampler(NETWORKS, random_share=0.2).sample_sources("conv", 50, seed=3)
    assert len(drawn) == 50 and len({d.layer.key for d in drawn}) == 50
    origins = Counter(d.origin for d in drawn)
    assert origins == {"network": 3, "neighbour": 37, "random": 10}
    assert [d.layer for d in drawn[:3]] == sorted([CONV, DEPTHWISE, GROUPED], key=lambda x: x.key)
    assert all(d.sources == frozenset() for d in drawn if d.origin == "random")
    assert all(d.sources for d in drawn if d.origin != "random")


def test_neighbours_keep_stride_same_padding_and_the_kind_of_grouping() -> None:
    drawn = NetworkSampler(NETWORKS, random_share=0.0).sample_sources("conv", 120, seed=0)
    largest = max(layer.macs for layer in (CONV, DEPTHWISE, GROUPED))
    for d in drawn:
        layer = d.layer
        assert layer.macs <= largest
        assert layer.kernel_h == layer.kernel_w and layer.kernel_h in KERNELS
        assert layer.stride_h == 1 and layer.pad_h == layer.pad_w == (layer.kernel_h - 1) // 2
        assert layer.activation in FUSED_ACTIVATIONS
        if d.sources == frozenset({"a"}):  # neighbours of the depthwise layer
            assert layer.groups == layer.channels == layer.out_channels
        elif d.sources == frozenset({"b"}):  # neighbours of the grouped layer
            assert layer.channels > layer.groups > 1
        else:  # a plain conv stays plain or is split into groups of a common width
            assert layer.groups == 1 or layer.channels // layer.groups in GROUP_WIDTHS
    neighbours = [d.layer for d in drawn if d.origin == "neighbour"]
    assert {layer.activation for layer in neighbours} == set(FUSED_ACTIVATIONS)
    assert {layer.residual for layer in neighbours} == {True, False}
    assert {layer.kernel_h for layer in neighbours} == set(KERNELS)
    assert any(d.sources == frozenset({"a", "b"}) and d.layer.groups > 1 for d in drawn)


def test_neighbours_stay_within_the_limits_of_a_given_space() -> None:
    free = NetworkSampler(NETWORKS, random_share=0.0).sample_sources("conv", 120, seed=0)
    cap = max(d.layer.reduction for d in free if d.origin == "network")
    assert any(d.layer.reduction > cap for d in free if d.origin == "neighbour")
    space = default_space("conv")
    bounded = replace(space, limits=replace(space.limits, max_reduction=cap))
    drawn = NetworkSampler(NETWORKS, bounded, random_share=0.0).sample_sources("conv", 120, seed=0)
    neighbours = [d.layer for d in drawn if d.origin == "neighbour"]
    assert neighbours and all(x.reduction <= cap for x in neighbours)


def test_dense_neighbours_move_tokens_and_give_classifiers_some() -> None:
    rng = np.random.default_rng(0)
    classifier = [neighbour(CLASSIFIER, rng) for _ in range(60)]
    tokens = [neighbour(TOKENS, rng) for _ in range(60)]
    batches = [layer.batch for layer in classifier if layer is not None]
    assert len(batches) == 60 and 1 in batches
    assert all(1 <= b <= MAX_TOKENS for b in batches) and len(set(batches)) > 5
    assert any(layer is not None and layer.batch not in (1, 196) for layer in tokens)


def test_a_sample_does_not_depend_on_the_order_of_the_layers() -> None:
    shuffled = {"b": list(reversed(NETWORKS["b"])), "a": list(reversed(NETWORKS["a"]))}
    first = NetworkSampler(NETWORKS).sample_sources("conv", 30, seed=4)
    assert first == NetworkSampler(shuffled).sample_sources("conv", 30, seed=4)


def test_too_many_originals_give_a_seeded_subset() -> None:
    layers = [CONV.with_params(out_channels=c) for c in range(8, 208)]
    sampler = NetworkSampler({"wide": layers}, random_share=0.5)
    first = sampler.sample("conv", 40, seed=1)
    assert first == sampler.sample("conv", 40, seed=1)
    assert first != sampler.sample("conv", 40, seed=2)
    assert sum(layer in layers for layer in first) == 20


def test_a_kind_no_network_holds_is_drawn_at_random() -> None:
    drawn = NetworkSampler(NETWORKS).sample_sources("maxpool", 12)
    assert len(drawn) == 12 and {d.origin for d in drawn} == {"random"}


@pytest.mark.parametrize(
    ("networks", "share", "message"),
    [({}, 0.2, "at least one network"), (NETWORKS, 1.5, "between 0 and 1")],
)
def test_bad_settings_are_refused(
    networks: dict[str, list[LayerConfig]], share: float, message: str
) -> None:
    with pytest.raises(SamplingError, match=message):
        NetworkSampler(networks, random_share=share)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(SamplingError, match="budget"):
        NetworkSampler(NETWORKS).sample("conv", 0)


def test_sampled_layer_records_its_origin() -> None:
    drawn = SampledLayer(CONV, frozenset({"a"}), "network")
    assert drawn.layer is CONV and "a" in drawn.sources


# -- the networks' layers and the plan command ---------------------------------------------------


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


def test_network_layers_are_the_mapped_kernels_of_each_network(
    analytic_target: AnalyticTarget, tmp_path: Path
) -> None:
    resnet = _save(tiny_resnet(), tmp_path / "resnet.onnx")
    mobilenet = _save(tiny_mobilenet(), tmp_path / "mobilenet.onnx")
    found = mapped_layers([resnet, mobilenet, resnet], analytic_target)
    assert list(found) == ["resnet", "mobilenet", "resnet#2"]
    kinds = Counter(layer.kind for layer in found["resnet"])
    assert kinds[LayerKind.CONV] >= 4 and kinds[LayerKind.DENSE] == 1
    assert any(layer.residual for layer in found["resnet"])  # conv + add is one kernel
    assert any(
        layer.kind is LayerKind.CONV and layer.groups == layer.channels > 1
        for layer in found["mobilenet"]
    )


def test_plan_draws_around_the_networks_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nets"
    folder.mkdir()
    _save(tiny_resnet(), folder / "resnet.onnx")
    _save(tiny_mobilenet(), folder / "mobilenet.onnx")
    out = tmp_path / "ws" / "sweeps" / "networks.yaml"
    result = runner.invoke(
        app,
        [
            "plan", "--sampler", "networks", "--networks", str(folder), "--budget", "conv=40,30",
            "--target", "analytic", "--out", str(out), "--workspace", str(tmp_path / "ws"),
            "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plans = {plan.kind: plan for plan in load_plans(out)}
    held = {layer.kind for layers in mapped_layers(
        [folder / "resnet.onnx", folder / "mobilenet.onnx"], AnalyticTarget()
    ).values() for layer in layers}  # fmt: skip
    assert set(plans) == held  # --kinds all: the kinds the networks hold
    assert all(len(p.layers()) == (40 if k is LayerKind.CONV else 30) for k, p in plans.items())
    assert data["budget"] == 30 and data["budget_by_kind"] == {"conv": 40}
    assert {row["plan"] for row in data["plans"]} == {f"networks-{k.value}" for k in held}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "networks"], "needs --networks"),
        (["--sampler", "networks", "--networks", "missing.onnx"], "does not exist"),
        (["--sampler", "random", "--networks", "x.onnx"], "only applies to --sampler networks"),
        (["--sampler", "random", "--budget", "conv=20"], "needs a default budget"),
        (["--sampler", "random", "--budget", "20,30"], "more than one default budget"),
        (["--sampler", "random", "--budget", "conv=many,3"], "'conv=many' is not a number"),
        (["--sampler", "random", "--budget", "softmax=3,3"], "unknown layer kind"),
    ],
)
def test_plan_refuses_bad_network_requests(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(
        app, ["plan", *args, "--target", "analytic", "--workspace", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert message in " ".join(str(result.exception).split())
