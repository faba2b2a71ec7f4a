"""Features of a layer for the latency regressor: raw, derived and architecture-aware columns.

A :class:`FeatureSpec` fixes, for one layer kind and one set of Performance Representatives,
the ordered feature names (the schema written into the model card) and turns layers into a
feature matrix:

- the kind's raw parameters (``batch``, ``channels``, ...);
- for conv and dense, the fused activation (one column per activation) and, for conv, the
  fused residual add;
- derived work and traffic: output size, MACs, weight/activation/total bytes and arithmetic
  intensity (MACs per byte);
- from the PR set, for every parameter with a staircase: its plateau index, the value rounded
  up to the plateau's representative, the number of blocks and the fill of the last block
  (ANNETTE's efficiency factor ``n / (ceil(n/p)·p)``), plus the MACs of the layer with every
  stepped dimension rounded, the resulting overall efficiency and the rounded MACs per byte
  (which side of the roofline the padded kernel sits on);
- for pooling, where the hardware profile names a channel block (a CPU's NCHWc block),
  whether the channels fill whole blocks (``channels_blocked``): ONNX Runtime pools in the
  blocked layout only then, and elsewhere runs a plain kernel that is slower per element
  (medians over the network-prior pooling layers on AVX-512: 2x for max and global average
  pooling, 10x for average pooling). Latency is a comb over channels there, not a staircase,
  so the step detector finds no steps;
- for conv and dense, the GEMM view (``M`` output pixels, ``K`` reduction, ``N`` outputs per
  group) and, where the hardware profile says how the hardware tiles it
  (:class:`~prmodel.targets.profiles.GemmBlocks`), the tiles per dimension, the padded sizes, the
  padded MACs, the mapping efficiency and ``gemm_work``: tiles times (streamed length + fill),
  the time the hardware would take at full efficiency, in streamed steps. The regressor can
  learn latency relative to it (an ANNETTE-style mixed model, see
  :mod:`prmodel.train.model`), which on a staircase target is smooth and bounded.

The spec serialises to JSON with the step structure and GEMM blocks it needs, so a saved model
rebuilds exactly the same features without the PR file or the profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.layers import (
    ACTIVATIONS,
    FUSIBLE_KINDS,
    PARAMETERS,
    LayerConfig,
    LayerKind,
)
from prmodel.select.representatives import ParameterSteps, RepresentativeSet, plateau_layer
from prmodel.targets.profiles import GemmBlocks, HardwareProfile, ProfileError

_WINDOWED = (LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.AVGPOOL)
_POOLS = (LayerKind.MAXPOOL, LayerKind.AVGPOOL, LayerKind.GLOBALAVGPOOL)
BLOCKED_FEATURE = "channels_blocked"
"""The feature saying whether a pooling layer's channels fill whole layout blocks."""
_GEMM_KINDS = (LayerKind.CONV, LayerKind.DENSE)
_GEMM_VIEW = ("gemm_m", "gemm_k", "gemm_n")
_GEMM_TILED = (
    "gemm_m_tiles",
    "gemm_k_tiles",
    "gemm_n_tiles",
    "gemm_m_padded",
    "gemm_k_padded",
    "gemm_n_padded",
    "gemm_tiles",
    "padded_macs",
    "gemm_efficiency",
    "gemm_work",
)
_PROFILE_FIELDS = ("schema", "name", "family", "description", "architecture", "steps")
WORK_FEATURE = "gemm_work"
"""The feature holding the hardware's full-efficiency work estimate (see the module doc)."""

_DERIVED: dict[str, Callable[[LayerConfig], float]] = {
    "output_elements": lambda layer: float(math.prod(layer.output_shape)),
    "macs": lambda layer: float(layer.macs),
    "weight_bytes": lambda layer: float(layer.weight_bytes),
    "activation_bytes": lambda layer: float(layer.activation_bytes),
    "total_bytes": lambda layer: float(layer.weight_bytes + layer.activation_bytes),
    "intensity": lambda layer: layer.macs / (layer.weight_bytes + layer.activation_bytes),
}


class FeatureError(ValueError):
    """A layer whose kind does not match the feature spec (a programming error)."""


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features of one layer kind, optionally aware of its PR step structure.

    Build it with :meth:`for_kind`; ``steps`` holds only the parameters of ``kind`` that
    have a staircase, in the kind's canonical parameter order; ``blocks`` how the hardware
    tiles the kind's GEMM view (None: unknown, no tiled features); ``channel_block`` the
    channel block pooling runs in (None: unknown or not a pooling kind, no such feature).
    """

    kind: LayerKind
    steps: tuple[ParameterSteps, ...] = ()
    blocks: GemmBlocks | None = None
    channel_block: int | None = None

    @classmethod
    def for_kind(
        cls,
        kind: LayerKind | str,
        representatives: RepresentativeSet | None = None,
        *,
        profile: HardwareProfile | None = None,
    ) -> FeatureSpec:
        """The spec of ``kind``, using the stepped parameters of ``representatives`` if given.

        The GEMM blocks come from ``profile``, else from the profile recorded in the
        representatives' metadata (as ``prmodel select`` writes it).
        """
        kind = LayerKind(kind)
        if profile is None and representatives is not None:
            profile = profile_of(representatives)
        blocks = profile.gemm_blocks(kind) if profile is not None else None
        channel_block = profile.channel_block() if profile is not None else None
        channel_block = channel_block if kind in _POOLS else None
        if representatives is None:
            return cls(kind, blocks=blocks, channel_block=channel_block)
        analysed = representatives.for_kind(kind)
        stepped = tuple(
            analysed[name]
            for name in PARAMETERS[kind]
            if name in analysed and analysed[name].has_steps
        )
        return cls(kind, stepped, blocks, channel_block)

    @property
    def work_feature(self) -> str | None:
        """The name of the work-estimate feature, None where the spec has none."""
        return WORK_FEATURE if WORK_FEATURE in self.names else None

    def plateau_of(self, layer: LayerConfig) -> LayerConfig:
        """``layer`` with every stepped parameter moved to its plateau's representative.

        Grouped convolutions keep their values: their staircases were not swept (the 1-D
        sweeps run at groups 1), and moving their channels changes the group structure.
        Parameters whose rounding would make the layer invalid keep their value.
        """
        return plateau_layer(self.steps, layer)

    # -- schema -------------------------------------------------------------------------------
    @property
    def raw_parameters(self) -> tuple[str, ...]:
        """The inputs the user controls: the kind's parameters and fused flags."""
        return (*PARAMETERS[self.kind], *self._fused_names())

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature name, in column order (the model card's feature schema)."""
        names = [*self.raw_parameters]
        if self.kind in _WINDOWED:
            names += ["output_height", "output_width"]
        if self.kind is LayerKind.CONV:
            names.append("group_channels")
        if self.channel_block is not None:
            names.append(BLOCKED_FEATURE)
        names += list(_DERIVED)
        for steps in self.steps:
            p = steps.parameter
            names += [f"{p}_plateau", f"{p}_rounded", f"{p}_blocks", f"{p}_fill"]
        if self.steps:
            names += ["macs_rounded", "rounded_efficiency", "rounded_intensity"]
        if self.kind in _GEMM_KINDS:
            names += ["gemm_groups", *_GEMM_VIEW]
            if self.blocks is not None:
                names += _GEMM_TILED
        return tuple(names)

    def _fused_names(self) -> tuple[str, ...]:
        if self.kind not in FUSIBLE_KINDS:
            return ()
        names = tuple(f"act_{act}" for act in ACTIVATIONS)
        return (*names, "residual") if self.kind is LayerKind.CONV else names

    # -- transformation -----------------------------------------------------------------------
    def transform(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        """The feature matrix of ``layers``: one row per layer, columns as :attr:`names`.

        Raises:
            FeatureError: a layer of another kind than the spec's.
        """
        width = len(self.names)
        matrix = np.empty((len(layers), width), dtype=np.float64)
        rounder = RepresentativeSet(target_id="", steps=self.steps) if self.steps else None
        for i, layer in enumerate(layers):
            if layer.kind is not self.kind:
                raise FeatureError(f"a {layer.kind.value} layer given to the {self.kind} features")
            matrix[i] = self._row(layer, rounder)
        return matrix

    def frame(self, layers: Sequence[LayerConfig]) -> pd.DataFrame:
        """:meth:`transform` as a DataFrame with named columns (for plots and reports)."""
        return pd.DataFrame(self.transform(layers), columns=list(self.names))

    def _row(self, layer: LayerConfig, rounder: RepresentativeSet | None) -> list[float]:
        row = [float(v) for v in layer.params().values()]
        if self.kind in FUSIBLE_KINDS:
            row += [float(layer.activation == act) for act in ACTIVATIONS]
            if self.kind is LayerKind.CONV:
                row.append(float(layer.residual))
        if self.kind in _WINDOWED:
            row += [float(layer.output_height), float(layer.output_width)]
        if self.kind is LayerKind.CONV:
            row.append(float(layer.channels // layer.groups))
        if self.channel_block is not None:
            row.append(float(layer.channels % self.channel_block == 0))
        row += [derive(layer) for derive in _DERIVED.values()]
        for steps in self.steps:
            row += _step_features(steps, layer)
        if rounder is not None:
            rounded_macs = float(rounder.plateau_of(layer).macs)
            total_bytes = layer.weight_bytes + layer.activation_bytes
            row += [rounded_macs, layer.macs / rounded_macs, rounded_macs / total_bytes]
        if self.kind in _GEMM_KINDS:
            row += _gemm_features(layer, self.blocks)
        return row

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, with the step structure needed to rebuild the features."""
        return {
            "kind": self.kind.value,
            "names": list(self.names),
            "steps": [_steps_to_dict(s) for s in self.steps],
            "gemm_blocks": self.blocks.to_dict() if self.blocks is not None else None,
            "channel_block": self.channel_block,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict` (the ``names`` entry is checked by the caller)."""
        kind = LayerKind(data["kind"])
        blocks = data.get("gemm_blocks")
        channel_block = data.get("channel_block")  # absent from models saved before it existed
        return cls(
            kind,
            tuple(_steps_from_dict(kind, s) for s in data.get("steps", ())),
            GemmBlocks.from_dict(blocks) if blocks else None,
            int(channel_block) if channel_block else None,
        )


def profile_of(representatives: RepresentativeSet) -> HardwareProfile | None:
    """The hardware profile recorded in a PR set's metadata, None where absent or unreadable."""
    data = representatives.metadata.get("profile")
    if not isinstance(data, Mapping) or "architecture" not in data:
        return None  # only the profile's name was recorded: no GEMM blocks
    known = {k: v for k, v in data.items() if k in _PROFILE_FIELDS}
    try:
        return HardwareProfile.from_dict(known, source=f"PR set {representatives.target_id}")
    except ProfileError:
        return None  # a hand-edited profile: the features simply go without GEMM blocks


def gemm_view(layer: LayerConfig) -> tuple[int, int, int, int]:
    """``(groups, M, K, N)`` of a conv or dense layer seen as ``groups`` GEMMs.

    ``M`` is batch * output pixels, ``K`` input channels per group * kernel taps, ``N``
    output channels per group; a dense layer is one GEMM with ``M`` = batch.
    """
    if layer.kind is LayerKind.DENSE:
        return 1, layer.batch, layer.channels, layer.out_channels
    m = layer.batch * layer.output_height * layer.output_width
    k = (layer.channels // layer.groups) * layer.kernel_h * layer.kernel_w
    return layer.groups, m, k, layer.out_channels // layer.groups


def _gemm_features(layer: LayerConfig, blocks: GemmBlocks | None) -> list[float]:
    groups, m, k, n = gemm_view(layer)
    row = [float(groups), float(m), float(k), float(n)]
    if blocks is None:
        return row
    taps = 1
    if blocks.reduction == "channels" and layer.kind is LayerKind.CONV:
        taps = layer.kernel_h * layer.kernel_w  # the window is looped, channels are padded
    tiles = (
        math.ceil(m / blocks.m),
        math.ceil(k // taps / blocks.k) * taps,
        math.ceil(n / blocks.n),
    )
    padded = (tiles[0] * blocks.m, tiles[1] * blocks.k, tiles[2] * blocks.n)
    padded_macs = groups * math.prod(padded)
    # Dimensions with a block of 1 stream through the hardware; the others fold over it.
    sizes = (blocks.m, blocks.k, blocks.n)
    folds = math.prod(t for t, b in zip(tiles, sizes, strict=True) if b > 1)
    streamed = math.prod(p for p, b in zip(padded, sizes, strict=True) if b == 1)
    work = groups * folds * (streamed + blocks.fill)
    row += [float(t) for t in tiles] + [float(p) for p in padded]
    row += [float(groups * math.prod(tiles)), float(padded_macs)]
    row += [groups * m * k * n / padded_macs, float(work)]
    return row


def _step_features(steps: ParameterSteps, layer: LayerConfig) -> list[float]:
    value = int(getattr(layer, steps.parameter))
    rounded = steps.representative_for(layer)
    if steps.folds_window:  # plateaus are folds of channels * kernel taps
        area = layer.kernel_h * layer.kernel_w
        blocks = math.ceil(value * area / steps.taps_per_fold)
        return [float(blocks - 1), float(rounded), float(blocks), value / rounded]
    if steps.period:
        blocks = math.ceil((rounded - steps.offset) / steps.period)
    else:
        blocks = steps.plateau_index(value) + 1
    return [float(steps.plateau_index(value)), float(rounded), float(blocks), value / rounded]


def _steps_to_dict(steps: ParameterSteps) -> dict[str, Any]:
    return {
        "parameter": steps.parameter,
        "has_steps": steps.has_steps,
        "period": steps.period,
        "offset": steps.offset,
        "breakpoints": list(steps.breakpoints),
        "representatives": list(steps.representatives),
        "start": steps.start,
        **({"window": steps.window} if steps.window else {}),
    }


def _steps_from_dict(kind: LayerKind, data: Mapping[str, Any]) -> ParameterSteps:
    return ParameterSteps(
        kind=kind,
        parameter=str(data["parameter"]),
        has_steps=bool(data["has_steps"]),
        period=None if data.get("period") is None else int(data["period"]),
        offset=int(data.get("offset", 0)),
        breakpoints=tuple(int(b) for b in data.get("breakpoints", ())),
        representatives=tuple(int(r) for r in data.get("representatives", ())),
        start=int(data.get("start", 0)),
        window=int(data.get("window", 0)),
    )


__all__ = [
    "BLOCKED_FEATURE",
    "WORK_FEATURE",
    "FeatureError",
    "FeatureSpec",
    "gemm_view",
    "plateau_layer",
    "profile_of",
]
