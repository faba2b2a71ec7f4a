"""Parameter spaces: the range of every parameter of a layer kind that samplers may draw from.

A :class:`ParameterSpace` gives each parameter of :data:`prmodel.layers.PARAMETERS` one
dimension: a fixed value, an integer range (log-uniform or uniform), a set of choices, or a tie
to another parameter (``width`` follows ``height``). Symbolic values cover what real CNNs
do: padding ``same`` (``(kernel - 1) // 2 * dilation``, the output keeps its size at stride 1),
groups ``depthwise`` (``groups = out_channels = channels``) and groups ``width<N>`` (groups of
``N`` channels each, as ResNeXt and RegNet build them: the channels are rounded down to a
multiple of ``N``, at least two groups, and the output channels down to a multiple of the
groups, at least one per group). A choice may carry ``weights``: how often random draws take
each value. ``limits`` bound the work of a layer (MACs, weight and activation bytes) so that
one layer stays affordable to benchmark; validity itself is
:class:`~prmodel.layers.LayerConfig`'s job, and invalid draws are redrawn.

The dimensions themselves and their schema live in :mod:`prmodel.select.dimensions`.
Spaces can be written to and read from YAML::

    spaces:
      - kind: conv
        parameters:
          batch: 1
          channels: {range: [1, 1024], scale: log}
          width: {same_as: height}
          kernel_h: {choices: [1, 3, 5, 7]}
          pad_h: same
          groups: {choices: [1, depthwise, width8, width32], weights: [4, 2, 1, 1]}
        base: {channels: 64, out_channels: 64, height: 28, kernel_h: 3}
        limits: {max_macs: 1000000000}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prmodel.layers import (
    FUSIBLE_KINDS,
    PARAMETERS,
    SHORTHANDS,
    InvalidLayerError,
    LayerConfig,
    LayerKind,
    parse_kind,
)
from prmodel.select.dimensions import (
    DEPTHWISE,
    GROUP_WIDTH,
    SAME,
    Choice,
    Dimension,
    Fixed,
    IntRange,
    Limits,
    SpaceError,
    Tied,
    dimension_to_data,
    group_width,
    log_spaced,
    parse_dimension,
    parse_limits,
)

_EXTRA_FIELDS = ("activation", "residual")
_MAX_DRAWS = 1000


@dataclass(frozen=True)
class ParameterSpace:
    """The range of every parameter of one layer kind.

    Attributes:
        kind: The layer kind.
        dimensions: One dimension per parameter (missing ones keep LayerConfig's default).
        base: Values of the free parameters for the base layer of 1-D sweeps.
        limits: Bounds on MACs and bytes per layer.
    """

    kind: LayerKind
    dimensions: Mapping[str, Dimension]
    base: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        allowed = set(PARAMETERS[self.kind]) | set(_extras(self.kind))
        for name, dim in self.dimensions.items():
            if name not in allowed:
                raise SpaceError(f"{self.kind.value} space: {name!r} is not a parameter")
            if isinstance(dim, Tied) and dim.source not in self.dimensions:
                raise SpaceError(f"{self.kind.value} space: {name} is tied to unknown {dim.source}")
        for name in self.base:
            if name not in self.dimensions:
                raise SpaceError(f"{self.kind.value} space: base value for unknown {name!r}")

    # -- which parameters vary ------------------------------------------------------------
    @property
    def free_parameters(self) -> tuple[str, ...]:
        """Parameters that vary: ranges and choices, in canonical order."""
        return tuple(n for n, d in self.dimensions.items() if isinstance(d, IntRange | Choice))

    @property
    def swept_parameters(self) -> tuple[str, ...]:
        """Integer-range parameters: the ones a 1-D sweep looks for steps in."""
        return tuple(n for n, d in self.dimensions.items() if isinstance(d, IntRange))

    def range_of(self, name: str) -> IntRange:
        """The integer range of ``name`` (a :class:`SpaceError` if it is not a range)."""
        dim = self.dimensions.get(name)
        if not isinstance(dim, IntRange):
            raise SpaceError(f"{self.kind.value} space: {name!r} is not an integer range")
        return dim

    def values_of(self, name: str, *, count: int = 8) -> tuple[Any, ...]:
        """A few values of ``name``: a range's coarse values, a choice's values."""
        dim = self.dimensions.get(name)
        if isinstance(dim, IntRange):
            return dim.coarse(count)
        if isinstance(dim, Choice):
            return dim.values
        raise SpaceError(f"{self.kind.value} space: {name!r} does not vary")

    # -- building layers ------------------------------------------------------------------
    def build(self, values: Mapping[str, Any]) -> LayerConfig:
        """The layer with ``values`` for some free parameters and the base for the rest.

        Ties, ``same`` padding and ``depthwise`` / ``width<N>`` groups are resolved here.

        Raises:
            InvalidLayerError: the combination is not a valid layer.
        """
        chosen = {**self.base, **values}
        resolved: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, Fixed):
                resolved[name] = dim.value
            elif isinstance(dim, IntRange | Choice):
                resolved[name] = chosen.get(name, _first(dim))
        for name, dim in self.dimensions.items():
            if isinstance(dim, Tied):
                resolved[name] = resolved[dim.source]
        return LayerConfig.create(self.kind, **_resolve_symbols(resolved))

    def try_build(self, values: Mapping[str, Any]) -> LayerConfig | None:
        """:meth:`build`, or None where the layer is invalid or over the limits."""
        try:
            layer = self.build(values)
        except InvalidLayerError:
            return None
        return layer if self.limits.allows(layer) else None

    def random_values(self, rng: np.random.Generator) -> dict[str, Any]:
        """One random value per free parameter."""
        values: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, IntRange | Choice):
                values[name] = dim.sample(rng)
        return values

    def random_layer(self, rng: np.random.Generator) -> LayerConfig:
        """A random valid layer within the limits (invalid draws are redrawn).

        Raises:
            SpaceError: no valid layer after many draws (the space is too constrained).
        """
        for _ in range(_MAX_DRAWS):
            layer = self.try_build(self.random_values(rng))
            if layer is not None:
                return layer
        raise SpaceError(
            f"{self.kind.value} space: no valid layer within the limits in {_MAX_DRAWS} draws"
        )

    def values_from_layer(self, layer: LayerConfig) -> dict[str, Any]:
        """The free-parameter values that :meth:`build` turns into ``layer`` (choices as the
        space writes them, e.g. ``depthwise``); the inverse of :meth:`build` on free values."""
        values: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, IntRange):
                values[name] = getattr(layer, name)
            elif isinstance(dim, Choice):
                matching = [v for v in dim.values if _matches(layer, name, v)]
                values[name] = matching[0] if matching else getattr(layer, name)
        return values

    def contains(self, layer: LayerConfig) -> bool:
        """Whether ``layer`` is one this space can produce (kind, values, ties, limits)."""
        if layer.kind is not self.kind or not self.limits.allows(layer):
            return False
        return all(self._dimension_holds(layer, n, d) for n, d in self.dimensions.items())

    def _dimension_holds(self, layer: LayerConfig, name: str, dim: Dimension) -> bool:
        value = getattr(layer, name)
        if isinstance(dim, Tied):
            return bool(value == getattr(layer, dim.source))
        if isinstance(dim, IntRange):
            return dim.contains(value)
        options = (dim.value,) if isinstance(dim, Fixed) else dim.values
        return any(_matches(layer, name, option) for option in options)

    # -- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The space as plain data in the file schema."""
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "parameters": {n: dimension_to_data(d) for n, d in self.dimensions.items()},
        }
        if self.base:
            data["base"] = dict(self.base)
        if limits := self.limits.to_dict():
            data["limits"] = limits
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data") -> ParameterSpace:
        """Validate one space in the file schema (``source`` names it in errors).

        Raises:
            SpaceError: malformed data.
        """
        return _parse_space(data, source)


def _first(dim: IntRange | Choice) -> Any:
    return dim.low if isinstance(dim, IntRange) else dim.values[0]


def _extras(kind: LayerKind) -> tuple[str, ...]:
    if kind is LayerKind.CONV:
        return _EXTRA_FIELDS
    return ("activation",) if kind in FUSIBLE_KINDS else ()


def _same_padding(kernel: int, dilation: int) -> int:
    return (kernel - 1) // 2 * dilation


def _resolve_symbols(values: dict[str, Any]) -> dict[str, Any]:
    resolved = dict(values)
    for axis in ("h", "w"):
        if resolved.get(f"pad_{axis}") == SAME:
            kernel = int(resolved.get(f"kernel_{axis}", 1))
            resolved[f"pad_{axis}"] = _same_padding(
                kernel, int(resolved.get(f"dilation_{axis}", 1))
            )
    groups = resolved.get("groups")
    if groups == DEPTHWISE:
        channels = int(resolved.get("channels", 1))
        resolved["groups"] = channels
        resolved["out_channels"] = channels
    elif (width := group_width(groups)) is not None:
        drawn = int(resolved.get("channels", 1))
        channels = width * max(2, drawn // width)
        groups = channels // width
        out_channels = int(resolved.get("out_channels", channels))
        if out_channels == drawn:  # equal (e.g. tied) channels stay equal
            out_channels = channels
        resolved["channels"] = channels
        resolved["groups"] = groups
        resolved["out_channels"] = groups * max(1, out_channels // groups)
    return resolved


def _matches(layer: LayerConfig, name: str, option: Any) -> bool:
    value = getattr(layer, name)
    if option == SAME and name in ("pad_h", "pad_w"):
        axis = name[-1]
        dilation = getattr(layer, f"dilation_{axis}") if layer.kind is LayerKind.CONV else 1
        return bool(value == _same_padding(getattr(layer, f"kernel_{axis}"), dilation))
    if option == DEPTHWISE and name == "groups":
        return layer.groups == layer.channels == layer.out_channels
    if (width := group_width(option)) is not None and name == "groups":
        return layer.groups > 1 and layer.channels == layer.groups * width
    return bool(value == option)


# -- file format ------------------------------------------------------------------------------


def _parse_space(data: Any, source: str) -> ParameterSpace:
    if not isinstance(data, dict) or "kind" not in data:
        raise SpaceError(f"{source}: a space must be a mapping with a 'kind'")
    try:
        kind = parse_kind(data["kind"])
    except InvalidLayerError as exc:
        raise SpaceError(f"{source}: {exc}") from None
    where = f"{source}: {kind.value} space"
    unknown = set(data) - {"kind", "parameters", "base", "limits"}
    if unknown:
        raise SpaceError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SpaceError(f"{where}: field 'parameters' must be a non-empty mapping")
    dimensions: dict[str, Dimension] = {}
    for name, spec in params.items():
        for target in _expand(kind, str(name)):
            dimensions[target] = parse_dimension(f"{where}: parameter {name!r}", spec)
        if len(_expand(kind, str(name))) == 2:  # a shorthand: the w axis follows the h axis
            h, w = SHORTHANDS[str(name)]
            if not isinstance(dimensions[h], Fixed):
                dimensions[w] = Tied(h)
    base = _parse_base(where, kind, data.get("base") or {})
    limits = parse_limits(where, data.get("limits") or {})
    try:
        return ParameterSpace(kind, dimensions, base, limits)
    except SpaceError as exc:
        raise SpaceError(f"{source}: {exc}") from None


def _expand(kind: LayerKind, name: str) -> tuple[str, ...]:
    if name in SHORTHANDS and SHORTHANDS[name][0] in PARAMETERS[kind]:
        return SHORTHANDS[name]
    return (name,)


def _parse_base(where: str, kind: LayerKind, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpaceError(f"{where}: field 'base' must be a mapping")
    base: dict[str, Any] = {}
    for name, value in data.items():
        expanded = _expand(kind, str(name))
        base[expanded[0]] = value  # the w axis of a shorthand is tied to the h axis
    return base


def load_spaces(path: str | Path) -> dict[LayerKind, ParameterSpace]:
    """Read spaces from a YAML file holding one space or ``spaces: [...]``.

    Raises:
        SpaceError: unreadable file, bad YAML or a malformed space.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpaceError(f"cannot read space file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpaceError(f"space file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpaceError(f"space file {path} is not valid YAML: {first}") from None
    items = data.get("spaces") if isinstance(data, dict) and "spaces" in data else [data]
    if not isinstance(items, list):
        raise SpaceError(f"space file {path}: field 'spaces' must be a list")
    spaces = [ParameterSpace.from_dict(item, source=str(path)) for item in items]
    return {space.kind: space for space in spaces}


def save_spaces(
    spaces: Mapping[LayerKind, ParameterSpace] | list[ParameterSpace], path: str | Path
) -> Path:
    """Write spaces as YAML (``spaces: [...]``); returns the path."""
    items = list(spaces.values()) if isinstance(spaces, Mapping) else list(spaces)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(
        {"spaces": [s.to_dict() for s in items]}, sort_keys=False, default_flow_style=None
    )
    path.write_text(text)
    return path


# -- the default spaces -----------------------------------------------------------------------

_SQUARE = {"width": Tied("height")}
_MIB = 1 << 20


def _window(kernels: tuple[int, ...], pads: tuple[Any, ...]) -> dict[str, Dimension]:
    return {
        "kernel_h": Choice(kernels),
        "kernel_w": Tied("kernel_h"),
        "stride_h": Choice((1, 2)),
        "stride_w": Tied("stride_h"),
        "pad_h": Choice(pads) if len(pads) > 1 else Fixed(pads[0]),
        "pad_w": Tied("pad_h"),
    }


def _conv_space() -> ParameterSpace:
    dims: dict[str, Dimension] = {
        "batch": Fixed(1),
        "channels": IntRange(1, 1024),
        "height": IntRange(1, 224),
        **_SQUARE,
        "out_channels": IntRange(1, 1024),
        **_window((1, 3, 5, 7), (SAME,)),
        "dilation_h": Fixed(1),
        "dilation_w": Fixed(1),
        "groups": Choice((1, DEPTHWISE)),
    }
    base = {"channels": 64, "height": 28, "out_channels": 64, "kernel_h": 3, "stride_h": 1}
    # About 1 GMAC is 10-20 ms on one AVX-512 core; real CNN layers stay well below it.
    limits = Limits(max_macs=10**9, max_weight_bytes=32 * _MIB, max_activation_bytes=64 * _MIB)
    return ParameterSpace(LayerKind.CONV, dims, {**base, "groups": 1}, limits)


GROUPED_WIDTHS = (4, 8, 16, 32, 64)
"""Channels per group of :func:`grouped_conv_space`: ResNeXt uses 4-8, RegNet 8-64 or more."""


def grouped_conv_space() -> ParameterSpace:
    """Grouped convs as networks use them (ResNeXt, RegNet): the 3x3 conv of a grouped block.

    Output channels equal input channels (8-1024), kernel 3x3 with ``same`` padding, stride
    1 or 2, groups of :data:`GROUPED_WIDTHS` channels each, ReLU fused or not. The default
    conv space draws no grouped convs (groups 1 or depthwise); latency jumps when a group
    fills the CPU's channel block (AVX-512: 16) and the runtime switches from one small GEMM
    per group to its blocked kernel, so a model must see both sides to predict unseen
    grouped networks. Models trained without such layers put RegNetY-400MF's grouped convs
    about 15 % under their lone time, about 4 % with 400 of these (benchmarks/RESULTS.md,
    "Earlier changes").
    """
    conv = _conv_space()
    widths = tuple(f"{GROUP_WIDTH}{width}" for width in GROUPED_WIDTHS)
    dims: dict[str, Dimension] = {
        **conv.dimensions,
        "channels": IntRange(8, 1024),
        "out_channels": Tied("channels"),
        "kernel_h": Choice((3,)),
        "groups": Choice(widths),
        "activation": Choice((None, "relu")),
    }
    base = {**conv.base, "groups": widths[1], "activation": None}
    return ParameterSpace(LayerKind.CONV, dims, base, conv.limits)


def _dense_space() -> ParameterSpace:
    dims: dict[str, Dimension] = {
        "batch": Fixed(1),
        "channels": IntRange(1, 4096),
        "out_channels": IntRange(1, 4096),
    }
    # 4096 x 4096 fp32 weights plus bias are just over 64 MiB.
    return ParameterSpace(
        LayerKind.DENSE,
        dims,
        {"channels": 2048, "out_channels": 256},
        Limits(max_weight_bytes=72 * _MIB),
    )


def _pool_space(kind: LayerKind, kernels: tuple[int, ...]) -> ParameterSpace:
    dims: dict[str, Dimension] = {
        "batch": Fixed(1),
        "channels": IntRange(1, 1024),
        "height": IntRange(1, 224),
        **_SQUARE,
        **_window(kernels, (0, SAME)),
    }
    base = {"channels": 64, "height": 56, "kernel_h": 3, "stride_h": 2, "pad_h": SAME}
    return ParameterSpace(kind, dims, base, Limits(max_activation_bytes=64 * _MIB))


def _tensor_space(kind: LayerKind, *, channels: int, height: int) -> ParameterSpace:
    dims: dict[str, Dimension] = {
        "batch": Fixed(1),
        "channels": IntRange(1, channels),
        "height": IntRange(1, height),
        **_SQUARE,
    }
    base = {"channels": 64, "height": 28 if height > 28 else 7}
    return ParameterSpace(kind, dims, base, Limits(max_activation_bytes=64 * _MIB))


def default_space(kind: LayerKind | str) -> ParameterSpace:
    """The space of ``kind`` that covers what real CNNs use, within affordable limits.

    conv: channels and output channels 1-1024, square inputs 1-224, kernel 1/3/5/7, stride
    1/2, ``same`` padding, groups 1 or depthwise (a space file can add grouped convs, e.g.
    ``groups: {choices: [1, depthwise, width8], weights: [4, 2, 1]}``); dense: widths 1-4096;
    max/avg pooling: channels 1-1024, inputs 1-224, kernel 2/3 (avg also 7), stride 1/2,
    padding 0 or ``same``; global average pooling: channels 1-2048, inputs 1-56; element-wise
    layers and activations: channels 1-1024, inputs 1-224. Batch is 1 (inference). Limits keep
    a layer below about 1 GMAC and 64 MiB of tensors.
    """
    kind = parse_kind(kind)
    if kind is LayerKind.CONV:
        return _conv_space()
    if kind is LayerKind.DENSE:
        return _dense_space()
    if kind is LayerKind.MAXPOOL:
        return _pool_space(kind, (2, 3))
    if kind is LayerKind.AVGPOOL:
        return _pool_space(kind, (2, 3, 7))
    if kind is LayerKind.GLOBALAVGPOOL:
        return _tensor_space(kind, channels=2048, height=56)
    return _tensor_space(kind, channels=1024, height=224)


def default_spaces() -> dict[LayerKind, ParameterSpace]:
    """The default space of every layer kind."""
    return {kind: default_space(kind) for kind in LayerKind}


__all__ = [
    "DEPTHWISE",
    "GROUPED_WIDTHS",
    "GROUP_WIDTH",
    "SAME",
    "Choice",
    "Dimension",
    "Fixed",
    "IntRange",
    "Limits",
    "ParameterSpace",
    "SpaceError",
    "Tied",
    "default_space",
    "default_spaces",
    "group_width",
    "grouped_conv_space",
    "load_spaces",
    "log_spaced",
    "save_spaces",
]
