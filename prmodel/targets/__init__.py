"""Targets: the accelerators prmodel benchmarks, one plug-in each, chosen by a spec string.

A target (:class:`Target`) prepares and times single layers and supplies its own hardware
profile; :func:`get_target` turns a spec such as ``cpu:threads=2``, ``scalesim:rows=32`` or
``package.module.Class:key=value`` into one (see :mod:`prmodel.targets.registry`).
"""

from __future__ import annotations

from prmodel.targets.base import (
    Benchmark,
    LayerBuildError,
    Target,
    TargetError,
    TargetInfo,
    Timings,
    UnknownTargetError,
    fingerprint_hash,
    parse_target_spec,
)
from prmodel.targets.registry import get_target, list_targets

__all__ = [
    "Benchmark",
    "LayerBuildError",
    "Target",
    "TargetError",
    "TargetInfo",
    "Timings",
    "UnknownTargetError",
    "fingerprint_hash",
    "get_target",
    "list_targets",
    "parse_target_spec",
]
