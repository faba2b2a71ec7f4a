"""A deterministic analytical accelerator: a blocked roofline model.

Latency is the larger of compute time and memory time plus a fixed launch cost, where
compute runs on ``block``-wide units, so output channels (and dense output widths) are
padded up to a multiple of ``block`` and input channels to a multiple of ``lanes``; this
is ANNETTE's efficiency factor ``n / (ceil(n/p) * p)``. It has exact plateaus and costs
microseconds to evaluate, which makes it the reference target for tests and demos of the
whole pipeline. It models no real chip; its numbers are only as real as its parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets.base import Benchmark, TargetError, TargetInfo, Timings
from prmodel.targets.profiles import HardwareProfile, StepHint

_OPTIONS = {"block": int, "lanes": int, "gmacs": float, "gbps": float, "launch_us": float}


def _ceil_to(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


@dataclass(frozen=True)
class AnalyticTarget:
    """Blocked roofline: ``block`` output lanes, ``lanes`` input lanes, peak and bandwidth."""

    block: int = 16
    lanes: int = 8
    gmacs: float = 100.0
    gbps: float = 20.0
    launch_us: float = 2.0
    name: str = "analytic"
    deterministic: bool = True

    @classmethod
    def from_options(cls, options: dict[str, str]) -> AnalyticTarget:
        """The target with ``options`` (``block``, ``lanes``, ``gmacs``, ``gbps``,
        ``launch_us``) replacing the defaults.

        Raises:
            TargetError: an unknown option, or a value that is not a positive number.
        """
        values: dict[str, Any] = {}
        for key, text in options.items():
            if key not in _OPTIONS:
                raise TargetError(
                    f"analytic target has no option {key!r} (options: {', '.join(_OPTIONS)})"
                )
            try:
                values[key] = _OPTIONS[key](text)
            except ValueError:
                raise TargetError(f"analytic option {key}={text!r} is not a number") from None
            if values[key] <= 0:
                raise TargetError(f"analytic option {key} must be positive, got {text}")
        return cls(**values)

    @classmethod
    def target_infos(cls) -> list[TargetInfo]:
        """The ``analytic`` entry of :func:`prmodel.targets.list_targets`."""
        return [TargetInfo("analytic", "deterministic blocked-roofline model (tests, demos)", True)]

    @property
    def target_id(self) -> str:
        return f"analytic-b{self.block}-l{self.lanes}"

    def fingerprint(self) -> dict[str, Any]:
        return {
            "target": "analytic",
            "block": self.block,
            "lanes": self.lanes,
            "gmacs": self.gmacs,
            "gbps": self.gbps,
            "launch_us": self.launch_us,
        }

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        return None

    def prepare(self, layer: LayerConfig) -> Benchmark:
        return _AnalyticBenchmark(layer, self.latency_us(layer))

    def hardware_profile(self) -> HardwareProfile:
        """Its own blocking: output channels in ``block``, input channels in ``lanes``."""
        out = StepHint((self.block,), note="outputs are computed in blocks of `block`")
        inp = StepHint((self.lanes,), note="inputs are vectorised over `lanes`")
        return HardwareProfile(
            name=f"analytic-b{self.block}-l{self.lanes}",
            family="analytic",
            description="blocked roofline model",
            architecture={"block": self.block, "lanes": self.lanes},
            hints={
                LayerKind.CONV: {"out_channels": out, "channels": inp},
                LayerKind.DENSE: {"out_channels": out, "channels": inp},
            },
        )

    def latency_us(self, layer: LayerConfig) -> float:
        """The model's latency of ``layer`` in microseconds."""
        compute_us = self._padded_macs(layer) / (self.gmacs * 1e3)
        memory_us = (layer.weight_bytes + layer.activation_bytes) / (self.gbps * 1e3)
        return self.launch_us + max(compute_us, memory_us)

    def _padded_macs(self, layer: LayerConfig) -> float:
        if layer.kind is LayerKind.CONV:
            spatial = layer.output_height * layer.output_width * layer.kernel_h * layer.kernel_w
            if layer.groups > 1:  # grouped/depthwise: vectorised over channels instead
                per_out = layer.channels // layer.groups
                return layer.batch * _ceil_to(layer.out_channels, self.block) * per_out * spatial
            return (
                layer.batch
                * _ceil_to(layer.out_channels, self.block)
                * _ceil_to(layer.channels, self.lanes)
                * spatial
            )
        if layer.kind is LayerKind.DENSE:
            return (
                layer.batch
                * _ceil_to(layer.channels, self.lanes)
                * _ceil_to(layer.out_channels, self.block)
            )
        return float(layer.macs) / 4  # element-wise and pooling: cheap ops, memory-bound


class _AnalyticBenchmark:
    def __init__(self, layer: LayerConfig, latency_us: float) -> None:
        self.layer = layer
        self._latency_us = latency_us
        self._calls = 0

    def run(self, calls: int) -> list[float]:
        self._calls += calls
        return [self._latency_us] * calls

    def finish(self) -> Timings:
        times = (self._latency_us,) * max(self._calls, 1)
        return Timings(kernel_us=times, wall_us=times)

    def close(self) -> None:
        self._calls = 0
