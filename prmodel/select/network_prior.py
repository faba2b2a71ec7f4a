"""Training layers drawn around the layers that real networks run (a model-zoo prior).

A regressor is only as good as its training set is close to the layers it will be asked
about. Random draws over a wide parameter space spend most of a budget on layers no network
uses (a 7x7 convolution from 3 to 1000 channels at 5x5 pixels), while a network is made of a
few shapes repeated: 3x3 and 1x1 convolutions on channel counts that are multiples of 8,
depthwise blocks, 56/28/14/7 pixel grids. nn-Meter builds its kernels' training sets from
the configurations of a model zoo for that reason.

:class:`NetworkSampler` does the same with the kernels that the estimator maps out of ONNX
networks (:func:`prmodel.estimate.estimator.mapped_layers`), so fused activations, residual adds,
grouped convolutions and token-wise dense layers appear exactly as the runtime executes them.
For one kind and a budget it returns

1. the distinct layers of that kind in the networks (a seeded subset if they alone exceed
   the budget);
2. neighbours of those layers, round-robin so that every layer gets some, until
   ``1 - random_share`` of the budget: one or two moves per neighbour, mostly of a size
   (input and output channels, the pixel grid, the token count of a dense layer, the
   number or width of groups of a grouped convolution) by a factor between 1/2 and 2,
   channel counts snapped to a multiple of 8 half of the time; less often (half the
   weight) of the structure: another fused activation (or none), the residual add
   toggled, a plain convolution split into groups of 4 to 64 channels, another square
   kernel (1, 3, 5 or 7, "same" padding kept), a classifier-style dense layer applied to
   2 to 4096 tokens (a transformer's or ConvNeXt's MLP). Stride is kept and a depthwise
   convolution stays depthwise, so the neighbours of a network's layers are the layers of
   its relatives (a network using ReLU6 where the others use ReLU, a RegNet among
   ResNets, 7x7 depthwise blocks among 3x3 ones); no neighbour costs more MACs or bytes
   than the largest network layer of its kind;
3. random layers of the kind's parameter space for the rest (coverage away from the zoo).

:meth:`NetworkSampler.sample_sources` also says which networks each layer came from, so a
benchmark can leave one network out of the training set and predict it honestly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind, parse_kind
from prmodel.select._sampling import (
    SamplingError,
    SpaceArg,
    check_budget,
    random_layers,
    space_for,
)
from prmodel.select.dimensions import Limits

GROUP_WIDTHS: tuple[int, ...] = (4, 8, 16, 32, 64)
"""Channels per group a neighbour of a grouped convolution may take (ResNeXt, RegNet)."""
CHANNEL_ALIGNMENT = 8
"""Channel counts are snapped to a multiple of this half of the time (what networks use)."""
MAX_MOVES = 2
"""At most this many moves make one neighbour."""
STRUCTURE_WEIGHT = 0.5
"""Weight of a structural move (activation, residual, split) relative to a size move."""
FUSED_ACTIVATIONS: tuple[str | None, ...] = (None, "relu", "relu6", "sigmoid", "hardswish")
"""Activations a conv or dense neighbour may take (those ONNX Runtime fuses, or none)."""
KERNELS: tuple[int, ...] = (1, 3, 5, 7)
"""Square kernels a conv neighbour may take."""
MAX_TOKENS = 4096
"""Most tokens a classifier-style dense neighbour is applied to."""
_STRUCTURE_MOVES = frozenset({"activation", "residual", "split", "kernel", "to_tokens"})


@dataclass(frozen=True)
class SampledLayer:
    """A drawn layer and the networks it came from (empty for random layers)."""

    layer: LayerConfig
    sources: frozenset[str]
    origin: str
    """``network`` (a layer of the networks), ``neighbour`` or ``random``."""


class NetworkSampler:
    """Network layers, their neighbours and some random layers (see the module doc).

    Args:
        networks: Each network's mapped layers, by network name (repeats allowed).
        space: The parameter spaces of the random share (default spaces if None).
        random_share: Share (0-1) of the budget drawn at random from the space.
        neighbour_tries: Rounds over all layers that add no new neighbour before the
            sampler stops looking (and leaves the room to random layers).
    """

    def __init__(
        self,
        networks: Mapping[str, Sequence[LayerConfig]],
        space: SpaceArg = None,
        *,
        random_share: float = 0.2,
        neighbour_tries: int = 20,
    ) -> None:
        if not 0.0 <= random_share <= 1.0:
            raise SamplingError(f"random_share must be between 0 and 1, got {random_share}")
        if not networks:
            raise SamplingError("the network sampler needs at least one network")
        self.networks = {name: tuple(layers) for name, layers in networks.items()}
        self.space = space
        self.random_share = random_share
        self.neighbour_tries = neighbour_tries

    def originals(self, kind: LayerKind | str) -> dict[str, SampledLayer]:
        """The distinct network layers of ``kind`` by key, with the networks that hold them.

        They come sorted by key, so a sample does not depend on the order in which the
        runtime lists parallel branches (ONNX Runtime's optimizer varies it between runs).
        """
        kind = parse_kind(kind)
        found: dict[str, tuple[LayerConfig, set[str]]] = {}
        for name, layers in self.networks.items():
            for layer in layers:
                if layer.kind is kind:
                    found.setdefault(layer.key, (layer, set()))[1].add(name)
        return {
            key: SampledLayer(layer, frozenset(sources), "network")
            for key, (layer, sources) in sorted(found.items())
        }

    def sample(self, kind: LayerKind | str, budget: int, *, seed: int = 0) -> list[LayerConfig]:
        """At most ``budget`` unique layers of ``kind`` (see the module doc)."""
        return [drawn.layer for drawn in self.sample_sources(kind, budget, seed=seed)]

    def sample_sources(
        self, kind: LayerKind | str, budget: int, *, seed: int = 0
    ) -> list[SampledLayer]:
        """Like :meth:`sample`, with each layer's source networks and origin."""
        check_budget(budget)
        kind = parse_kind(kind)
        rng = np.random.default_rng(seed)
        originals = list(self.originals(kind).values())
        zoo_budget = budget - round(self.random_share * budget) if originals else 0
        if len(originals) > zoo_budget:
            picked = rng.choice(len(originals), size=zoo_budget, replace=False)
            originals = [originals[int(i)] for i in sorted(picked)]
        drawn = {s.layer.key: s for s in originals}
        space = space_for(self.space, kind)
        # Neighbours stay within a given space's limits, as every other draw does.
        limits = space.limits if self.space is not None else None
        drawn.update(self._neighbours(originals, zoo_budget - len(drawn), rng, drawn, limits))
        for layer in random_layers(space, budget - len(drawn), rng, exclude=drawn):
            drawn[layer.key] = SampledLayer(layer, frozenset(), "random")
        return list(drawn.values())

    def _neighbours(
        self,
        centres: Sequence[SampledLayer],
        room: int,
        rng: np.random.Generator,
        taken: Mapping[str, SampledLayer],
        limits: Limits | None = None,
    ) -> dict[str, SampledLayer]:
        if room <= 0 or not centres:
            return {}
        max_macs = max(c.layer.macs for c in centres)
        max_bytes = max(c.layer.weight_bytes + c.layer.activation_bytes for c in centres)
        found: dict[str, SampledLayer] = {}
        idle_rounds = 0
        while len(found) < room and idle_rounds < self.neighbour_tries:
            added = 0
            for centre in centres:
                if len(found) >= room:
                    break
                layer = neighbour(centre.layer, rng)
                if (
                    layer is None
                    or layer.key in taken
                    or layer.key in found
                    or layer.macs > max_macs
                    or layer.weight_bytes + layer.activation_bytes > max_bytes
                    or (limits is not None and not limits.allows(layer))
                ):
                    continue
                found[layer.key] = SampledLayer(layer, centre.sources, "neighbour")
                added += 1
            idle_rounds = idle_rounds + 1 if added == 0 else 0
        return found


def neighbour(
    layer: LayerConfig, rng: np.random.Generator, *, tries: int = 20
) -> LayerConfig | None:
    """A valid layer one or two moves from ``layer`` (see the module doc); None if none found."""
    moves = _moves(layer)
    if not moves:
        return None
    weights = np.array([STRUCTURE_WEIGHT if m in _STRUCTURE_MOVES else 1.0 for m in moves])
    for _ in range(tries):
        count = min(len(moves), int(rng.integers(1, MAX_MOVES + 1)))
        chosen = rng.choice(len(moves), size=count, replace=False, p=weights / weights.sum())
        params = layer.to_dict()
        params.pop("kind")
        for index in sorted({int(i) for i in chosen}):
            params = _MOVERS[moves[index]](layer.kind, params, rng)
        try:
            candidate = LayerConfig.create(layer.kind, **params)
        except InvalidLayerError:
            continue
        if candidate.key != layer.key:
            return candidate
    return None


# -- moves ------------------------------------------------------------------------------------

Params = dict[str, object]


def _moves(layer: LayerConfig) -> list[str]:
    if layer.kind is LayerKind.DENSE:
        tokens = "tokens" if layer.batch > 1 else "to_tokens"
        return ["channels", "out_channels", tokens, "activation"]
    if layer.kind is LayerKind.CONV:
        if layer.groups == 1:
            sizes = ["channels", "out_channels", "grid", "split"]
        elif layer.groups == layer.channels == layer.out_channels:
            sizes = ["depthwise", "grid"]
        else:
            sizes = ["group_width", "groups", "grid"]
        square = layer.kernel_h == layer.kernel_w and layer.dilation_h == layer.dilation_w == 1
        return [*sizes, "activation", "residual", *(["kernel"] if square else [])]
    names = ["channels"]
    return names + (["grid"] if layer.height > 1 or layer.width > 1 else [])


def _factor(rng: np.random.Generator) -> float:
    return math.exp(rng.uniform(-math.log(2), math.log(2)))


def _scaled(value: int, rng: np.random.Generator, *, align: bool) -> int:
    moved = max(1, round(value * _factor(rng)))
    if align and moved >= CHANNEL_ALIGNMENT and rng.random() < 0.5:
        moved = CHANNEL_ALIGNMENT * max(1, round(moved / CHANNEL_ALIGNMENT))
    if moved == value:
        moved = value + 1 if rng.random() < 0.5 or value == 1 else value - 1
    return moved


def _as_int(value: object) -> int:
    return int(value)  # type: ignore[call-overload]


def _move_channels(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    return {**params, "channels": _scaled(_as_int(params["channels"]), rng, align=True)}


def _move_out_channels(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    return {**params, "out_channels": _scaled(_as_int(params["out_channels"]), rng, align=True)}


def _move_tokens(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    return {**params, "batch": _scaled(_as_int(params["batch"]), rng, align=False)}


def _move_grid(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    """Scale height and width together (square grids stay square)."""
    factor = _factor(rng)
    height, width = _as_int(params["height"]), _as_int(params["width"])
    moved_h = max(1, round(height * factor))
    moved_w = moved_h if height == width else max(1, round(width * factor))
    return {**params, "height": moved_h, "width": moved_w}


def _move_depthwise(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    channels = _scaled(_as_int(params["channels"]), rng, align=True)
    return {**params, "channels": channels, "out_channels": channels, "groups": channels}


def _move_groups(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    """More or fewer groups of the same width (the block gets wider or narrower)."""
    groups = _as_int(params["groups"])
    width_in = _as_int(params["channels"]) // groups
    width_out = _as_int(params["out_channels"]) // groups
    moved = max(2, _scaled(groups, rng, align=False))  # a grouped conv stays grouped
    return {
        **params,
        "groups": moved,
        "channels": moved * width_in,
        "out_channels": moved * width_out,
    }


def _move_group_width(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    """The same channels split into groups of a common width (another one if grouped)."""
    channels, out_channels = _as_int(params["channels"]), _as_int(params["out_channels"])
    widths = [w for w in GROUP_WIDTHS if channels % w == 0 and w < channels]
    if not widths:
        return params
    width = widths[int(rng.integers(len(widths)))]
    groups = channels // width
    out_channels = groups * max(1, round(out_channels / groups))
    return {**params, "groups": groups, "out_channels": out_channels}


def _to_tokens(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    """A one-row dense layer applied to a log-uniform number of tokens."""
    return {**params, "batch": round(math.exp(rng.uniform(math.log(2), math.log(MAX_TOKENS))))}


def _move_kernel(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    """Another square kernel; "same" padding stays "same", other padding stays as it is."""
    kernel, pad = _as_int(params["kernel_h"]), _as_int(params["pad_h"])
    others = [k for k in KERNELS if k != kernel]
    moved = others[int(rng.integers(len(others)))]
    same = pad == (kernel - 1) // 2 and params["pad_w"] == pad
    new_pad = (moved - 1) // 2 if same else pad
    return {**params, "kernel_h": moved, "kernel_w": moved, "pad_h": new_pad, "pad_w": new_pad}


def _move_activation(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    others = [a for a in FUSED_ACTIVATIONS if a != params.get("activation")]
    moved = {key: value for key, value in params.items() if key != "activation"}
    chosen = others[int(rng.integers(len(others)))]
    return moved if chosen is None else {**moved, "activation": chosen}


def _toggle_residual(kind: LayerKind, params: Params, rng: np.random.Generator) -> Params:
    moved = {key: value for key, value in params.items() if key != "residual"}
    return moved if params.get("residual") else {**moved, "residual": True}


_MOVERS = {
    "channels": _move_channels,
    "out_channels": _move_out_channels,
    "tokens": _move_tokens,
    "grid": _move_grid,
    "depthwise": _move_depthwise,
    "groups": _move_groups,
    "group_width": _move_group_width,
    "activation": _move_activation,
    "residual": _toggle_residual,
    "split": _move_group_width,  # a plain conv split into groups (ResNeXt, RegNet)
    "kernel": _move_kernel,
    "to_tokens": _to_tokens,
}


def layers_by_kind(networks: Mapping[str, Sequence[LayerConfig]]) -> dict[LayerKind, int]:
    """How many distinct layers of each kind the networks hold (most first)."""
    counts: dict[LayerKind, set[str]] = {}
    for layers in networks.values():
        for layer in layers:
            counts.setdefault(layer.kind, set()).add(layer.key)
    return dict(sorted(((k, len(v)) for k, v in counts.items()), key=lambda kv: -kv[1]))


__all__ = [
    "CHANNEL_ALIGNMENT",
    "FUSED_ACTIVATIONS",
    "GROUP_WIDTHS",
    "KERNELS",
    "MAX_TOKENS",
    "NetworkSampler",
    "SampledLayer",
    "layers_by_kind",
    "neighbour",
]
