"""Layer configurations: what a single DNN layer is, its shapes, work and memory traffic.

A :class:`LayerConfig` is the unit that every pipeline stage talks about: sweeps measure
them, the selector rounds them to their Performance Representative, the regressor turns
them into features and the estimator maps network kernels onto them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from prmodel.errors import PrmodelError

BYTES_PER_ELEMENT = 4  # fp32 everywhere; quantised targets would add a dtype field


class LayerKind(StrEnum):
    """Every layer kind prmodel can build, benchmark and model."""

    CONV = "conv"
    DENSE = "dense"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GLOBALAVGPOOL = "globalavgpool"
    ADD = "add"
    MUL = "mul"
    RELU = "relu"
    RELU6 = "relu6"
    SIGMOID = "sigmoid"
    HARDSWISH = "hardswish"
    GELU = "gelu"


ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "sigmoid", "hardswish", "gelu")
"""Activations that exist as layers of their own and can be fused behind conv or dense."""

_SHAPE = ("batch", "channels", "height", "width")
_WINDOW = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")

PARAMETERS: dict[LayerKind, tuple[str, ...]] = {
    LayerKind.CONV: (
        *_SHAPE,
        "out_channels",
        *_WINDOW,
        "dilation_h",
        "dilation_w",
        "groups",
    ),
    LayerKind.DENSE: ("batch", "channels", "out_channels"),
    LayerKind.MAXPOOL: (*_SHAPE, *_WINDOW),
    LayerKind.AVGPOOL: (*_SHAPE, *_WINDOW),
    LayerKind.GLOBALAVGPOOL: _SHAPE,
    **{kind: _SHAPE for kind in (LayerKind.ADD, LayerKind.MUL)},
    **{LayerKind(act): _SHAPE for act in ACTIVATIONS},
}
"""The numeric parameters that define each kind (the sweepable, learnable dimensions)."""

FUSIBLE_KINDS = (LayerKind.CONV, LayerKind.DENSE)

SHORTHANDS: dict[str, tuple[str, str]] = {
    "kernel": ("kernel_h", "kernel_w"),
    "stride": ("stride_h", "stride_w"),
    "padding": ("pad_h", "pad_w"),
    "dilation": ("dilation_h", "dilation_w"),
}
"""Square shorthands accepted by :meth:`LayerConfig.create` and sweep plans."""


class InvalidLayerError(PrmodelError, ValueError):
    """A layer configuration that cannot exist (one sentence says why)."""


@dataclass(frozen=True)
class LayerConfig:
    """One layer: its kind, NCHW input shape and kind-specific parameters.

    Dense layers take a ``[batch, channels]`` input (``channels`` is the input width,
    ``out_channels`` the output width); ``height`` and ``width`` stay 1.
    ``activation`` is an activation fused behind a conv or dense layer, ``residual`` a
    fused element-wise add of a second tensor of the output's shape (conv only), which is
    how ONNX Runtime executes ResNet-style blocks.
    """

    kind: LayerKind
    batch: int = 1
    channels: int = 1
    height: int = 1
    width: int = 1
    out_channels: int = 1
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1
    activation: str | None = None
    residual: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, LayerKind):
            object.__setattr__(self, "kind", parse_kind(self.kind))
        _validate(self)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, kind: str | LayerKind, **params: Any) -> LayerConfig:
        """Build a layer from user-facing parameters, accepting square shorthands.

        ``kernel=3`` sets ``kernel_h`` and ``kernel_w``; likewise ``stride``, ``padding``
        and ``dilation``. Parameters that the kind does not use are refused.

        Raises:
            InvalidLayerError: unknown kind or parameter, wrong type, impossible layer.
        """
        layer_kind = parse_kind(kind)
        allowed = set(PARAMETERS[layer_kind])
        if layer_kind in FUSIBLE_KINDS:
            allowed |= {"activation"}
        if layer_kind is LayerKind.CONV:
            allowed |= {"residual"}
        expanded: dict[str, Any] = {}
        for name, value in params.items():
            targets = SHORTHANDS.get(name, (name,))
            for target in targets:
                if target not in allowed:
                    raise InvalidLayerError(
                        f"parameter {name!r} does not apply to a {layer_kind.value} layer "
                        f"(it takes {', '.join(sorted(_public_names(layer_kind)))})"
                    )
                expanded[target] = _coerce(name, target, value)
        return cls(kind=layer_kind, **expanded)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerConfig:
        """Inverse of :meth:`to_dict`; validates like :meth:`create`."""
        params = dict(data)
        if "kind" not in params:
            raise InvalidLayerError("layer is missing its 'kind'")
        kind = params.pop("kind")
        return cls.create(kind, **params)

    def with_params(self, **params: Any) -> LayerConfig:
        """A copy with some parameters changed (shorthands allowed), validated again."""
        merged = self.to_dict()
        merged.pop("kind")
        for name, value in params.items():
            for target in SHORTHANDS.get(name, (name,)):
                merged[target] = value
        return LayerConfig.create(self.kind, **merged)

    # -- identity ---------------------------------------------------------------------------
    def params(self) -> dict[str, int]:
        """The kind's numeric parameters, in their canonical order."""
        return {name: getattr(self, name) for name in PARAMETERS[self.kind]}

    def to_dict(self) -> dict[str, Any]:
        """The kind and the parameters that matter for it (JSON/YAML friendly)."""
        data: dict[str, Any] = {"kind": self.kind.value, **self.params()}
        if self.activation is not None:
            data["activation"] = self.activation
        if self.residual:
            data["residual"] = True
        return data

    @property
    def key(self) -> str:
        """A stable identity of the layer, used as its key in the measurement store."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        """A short human-readable description, e.g. ``conv 64x56x56->128 k3 s1``."""
        k = self.kind
        if k is LayerKind.CONV:
            text = (
                f"conv {self.channels}x{self.height}x{self.width}->{self.out_channels} "
                f"k{self.kernel_h}x{self.kernel_w} s{self.stride_h} p{self.pad_h}"
            )
            if self.groups > 1:
                text += f" g{self.groups}"
        elif k is LayerKind.DENSE:
            text = f"dense {self.channels}->{self.out_channels}"
        elif k in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            text = (
                f"{k.value} {self.channels}x{self.height}x{self.width} "
                f"k{self.kernel_h}x{self.kernel_w} s{self.stride_h}"
            )
        else:
            text = f"{k.value} {self.channels}x{self.height}x{self.width}"
        if self.batch != 1:
            text += f" b{self.batch}"
        if self.activation:
            text += f" +{self.activation}"
        if self.residual:
            text += " +add"
        return text

    # -- shapes and work --------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind is LayerKind.DENSE:
            return (self.batch, self.channels)
        return (self.batch, self.channels, self.height, self.width)

    @property
    def output_shape(self) -> tuple[int, ...]:
        k = self.kind
        if k is LayerKind.DENSE:
            return (self.batch, self.out_channels)
        if k is LayerKind.GLOBALAVGPOOL:
            return (self.batch, self.channels, 1, 1)
        if k in (LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            out_c = self.out_channels if k is LayerKind.CONV else self.channels
            return (self.batch, out_c, self.output_height, self.output_width)
        return self.input_shape

    @property
    def output_height(self) -> int:
        return _window_out(self.height, self.kernel_h, self.stride_h, self.pad_h, self._dil_h)

    @property
    def output_width(self) -> int:
        return _window_out(self.width, self.kernel_w, self.stride_w, self.pad_w, self._dil_w)

    @property
    def _dil_h(self) -> int:
        return self.dilation_h if self.kind is LayerKind.CONV else 1

    @property
    def _dil_w(self) -> int:
        return self.dilation_w if self.kind is LayerKind.CONV else 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates (for non-MAC layers: elementary operations)."""
        k = self.kind
        out_elems = math.prod(self.output_shape)
        if k is LayerKind.CONV:
            return out_elems * (self.channels // self.groups) * self.kernel_h * self.kernel_w
        if k is LayerKind.DENSE:
            return self.batch * self.channels * self.out_channels
        if k in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            return out_elems * self.kernel_h * self.kernel_w
        return math.prod(self.input_shape)

    @property
    def reduction(self) -> int:
        """Terms one output sums: input channels per group times the kernel area (conv), the
        input width (dense), the window (pooling); 1 for element-wise layers. The GEMM's K."""
        if self.kind is LayerKind.CONV:
            return (self.channels // self.groups) * self.kernel_h * self.kernel_w
        if self.kind is LayerKind.DENSE:
            return self.channels
        if self.kind in (LayerKind.MAXPOOL, LayerKind.AVGPOOL):
            return self.kernel_h * self.kernel_w
        return 1

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights and biases."""
        if self.kind is LayerKind.CONV:
            per_out = (self.channels // self.groups) * self.kernel_h * self.kernel_w + 1
            return self.out_channels * per_out * BYTES_PER_ELEMENT
        if self.kind is LayerKind.DENSE:
            return self.out_channels * (self.channels + 1) * BYTES_PER_ELEMENT
        return 0

    @property
    def activation_bytes(self) -> int:
        """Bytes of activations read and written (inputs, second operands and output)."""
        inputs = math.prod(self.input_shape)
        if self.kind in (LayerKind.ADD, LayerKind.MUL):
            inputs *= 2
        outputs = math.prod(self.output_shape)
        if self.residual:
            outputs *= 2
        return (inputs + outputs) * BYTES_PER_ELEMENT


def parse_kind(kind: str | LayerKind) -> LayerKind:
    """The :class:`LayerKind` named by ``kind``, or a clear error listing the known ones."""
    if isinstance(kind, LayerKind):
        return kind
    try:
        return LayerKind(str(kind).lower())
    except ValueError:
        known = ", ".join(k.value for k in LayerKind)
        raise InvalidLayerError(f"unknown layer kind {kind!r} (known kinds: {known})") from None


def _public_names(kind: LayerKind) -> set[str]:
    names = set(PARAMETERS[kind])
    for short, (h, w) in SHORTHANDS.items():
        if h in names and w in names:
            names.add(short)
    if kind in FUSIBLE_KINDS:
        names.add("activation")
    if kind is LayerKind.CONV:
        names.add("residual")
    return names


def _coerce(given: str, name: str, value: Any) -> Any:
    if name == "activation":
        if value is None:
            return None
        if not isinstance(value, str) or value.lower() not in ACTIVATIONS:
            raise InvalidLayerError(f"activation {value!r} is not one of {', '.join(ACTIVATIONS)}")
        return value.lower()
    if name == "residual":
        if not isinstance(value, bool):
            raise InvalidLayerError(f"residual must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidLayerError(f"parameter {given!r} must be an integer, got {value!r}")
    return value


def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _validate(layer: LayerConfig) -> None:
    kind = layer.kind
    for name in PARAMETERS[kind]:
        value = getattr(layer, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidLayerError(f"{kind.value}: {name} must be an integer, got {value!r}")
        minimum = 0 if name in ("pad_h", "pad_w") else 1
        if value < minimum:
            raise InvalidLayerError(
                f"{kind.value}: {name} must be {'>= 0' if minimum == 0 else 'positive'}, "
                f"got {value}"
            )
    if layer.activation is not None and kind not in FUSIBLE_KINDS:
        raise InvalidLayerError(f"{kind.value}: only conv and dense layers take a fused activation")
    if layer.activation is not None and layer.activation not in ACTIVATIONS:
        raise InvalidLayerError(
            f"{kind.value}: activation {layer.activation!r} is not one of {', '.join(ACTIVATIONS)}"
        )
    if layer.residual and kind is not LayerKind.CONV:
        raise InvalidLayerError(f"{kind.value}: only conv layers take a fused residual add")
    if kind is LayerKind.DENSE and (layer.height, layer.width) != (1, 1):
        raise InvalidLayerError(
            "dense: height and width must be 1 (the input is [batch, channels])"
        )
    if kind is LayerKind.CONV:
        for name in ("channels", "out_channels"):
            if getattr(layer, name) % layer.groups:
                raise InvalidLayerError(
                    f"conv: {name} ({getattr(layer, name)}) is not divisible by "
                    f"groups ({layer.groups})"
                )
    if kind in (LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.AVGPOOL):
        for axis, size, k, pad, dil in (
            ("height", layer.height, layer.kernel_h, layer.pad_h, layer._dil_h),
            ("width", layer.width, layer.kernel_w, layer.pad_w, layer._dil_w),
        ):
            extent = dil * (k - 1) + 1
            if extent > size + 2 * pad:
                raise InvalidLayerError(
                    f"{kind.value}: kernel extent {extent} is larger than the padded {axis} "
                    f"{size + 2 * pad}"
                )
            if kind is not LayerKind.CONV and pad > k // 2:
                # ONNX Runtime refuses pooling pads larger than half the window.
                raise InvalidLayerError(
                    f"{kind.value}: padding {pad} must be at most half the kernel ({k})"
                )


def layer_fields() -> tuple[str, ...]:
    """All field names of :class:`LayerConfig` (a store or DataFrame column set)."""
    return tuple(f.name for f in fields(LayerConfig))


__all__ = [
    "ACTIVATIONS",
    "BYTES_PER_ELEMENT",
    "PARAMETERS",
    "SHORTHANDS",
    "InvalidLayerError",
    "LayerConfig",
    "LayerKind",
    "layer_fields",
    "parse_kind",
]
