"""The networks prmodel learn profiles: the reference set first, variants after, no held-out."""

from __future__ import annotations

import pytest

from prmodel.zoo import (
    ZooError,
    fifth_held_out_networks,
    fourth_held_out_networks,
    held_out_networks,
    reference_networks,
    sixth_held_out_networks,
    third_held_out_networks,
)
from prmodel.zoo.learning import (
    LARGE_BATCH,
    SMALLEST_RESOLUTION,
    check_not_held_out,
    is_held_out,
    learning_networks,
    learning_tiers,
    network_identity,
    published_variants,
)
from prmodel.zoo.sets import NetworkSpec


def test_learning_starts_with_the_reference_networks_and_holds_no_held_out_one() -> None:
    specs = learning_networks()
    reference = reference_networks()
    assert [s.name for s in specs[: len(reference)]] == [s.name for s in reference]
    assert len({s.name for s in specs}) == len(specs)
    assert len({network_identity(s) for s in specs}) == len(specs)
    held = {network_identity(h) for h in held_out_networks()}
    assert not held & {network_identity(s) for s in specs}
    assert not {h.name for h in held_out_networks()} & {s.name for s in specs}
    assert len(specs) > 3 * len(reference)


def test_published_variants_leave_out_those_the_held_out_set_has() -> None:
    names = {s.name for s in published_variants()}
    # torchvision publishes these, and the held-out set has them: never trained on
    assert "shufflenet_v2_x0_5" not in names
    assert "regnet_y_800mf" not in names


def test_every_learning_network_builds_as_a_skeleton() -> None:
    for spec in learning_networks():
        model = spec.build(weights=False)
        assert model.graph.node, spec.name


@pytest.mark.parametrize("held_out", held_out_networks(), ids=lambda s: s.name)
def test_a_held_out_network_is_recognised_under_any_name_or_seed(held_out: NetworkSpec) -> None:
    disguised = NetworkSpec("renamed", held_out.builder, {**held_out.kwargs, "seed": 11})
    assert is_held_out(held_out) and is_held_out(disguised)
    with pytest.raises(ZooError, match="held-out"):
        check_not_held_out([reference_networks()[0], disguised])


def test_defaults_written_out_are_the_same_network() -> None:
    resnet18 = reference_networks()[0]
    explicit = NetworkSpec("resnet18_224", resnet18.builder, {"depth": 18, "size": 224})
    assert network_identity(explicit) == network_identity(resnet18)
    assert network_identity(NetworkSpec("r", resnet18.builder, {"depth": 18, "size": 160})) != (
        network_identity(resnet18)
    )


def test_every_reference_network_comes_at_batch_4_and_96_px() -> None:
    """Tree models do not extrapolate: batch 4 is learned, batch 3 interpolated."""
    options = {(s.builder, tuple(sorted(s.kwargs.items()))) for s in learning_networks()}
    for spec in reference_networks():
        wanted = {**spec.kwargs, "size": SMALLEST_RESOLUTION, "batch": LARGE_BATCH}
        assert (spec.builder, tuple(sorted(wanted.items()))) in options, spec.name


@pytest.mark.parametrize(
    "held_out",
    [
        *third_held_out_networks(),
        *fourth_held_out_networks(),
        *fifth_held_out_networks(),
        *sixth_held_out_networks(),
    ],
    ids=lambda s: s.name,
)
def test_the_newer_held_out_sets_are_refused_too(held_out: NetworkSpec) -> None:
    assert is_held_out(NetworkSpec("renamed", held_out.builder, dict(held_out.kwargs)))
    with pytest.raises(ZooError, match="held-out"):
        check_not_held_out([held_out])


def test_the_tiers_hold_the_learning_networks_in_order() -> None:
    tiers = learning_tiers()
    assert [s for tier in tiers for s in tier.networks] == learning_networks()
    assert tiers[0].name == "reference" and len(tiers[0].networks) == len(reference_networks())
    names = [tier.name for tier in tiers]
    assert len(set(names)) == len(names)
    assert "128 px" in names and "192 px" in names and "96 px, batch 8" in names
    assert all(tier.networks for tier in tiers)
