"""Targets: the accelerators prmodel benchmarks, one module each, chosen by a spec string.

A spec is ``name`` or ``name:key=value,...``, for example ``cpu``,
``cpu:threads=2,opt=extended``, ``cuda``, ``scalesim:rows=32,cols=32,dataflow=ws`` or
``analytic:block=8``. ONNX Runtime targets are named after their execution provider.
A dotted name, ``package.module.ClassName:key=value``, loads a target from any importable
module: the class needs a ``from_options(options: dict[str, str])`` classmethod. That is
how a new device is added without touching prmodel.
"""

from __future__ import annotations

from dataclasses import dataclass

from prmodel.targets.base import (
    Benchmark,
    LayerBuildError,
    Target,
    TargetError,
    Timings,
    fingerprint_hash,
    parse_target_spec,
)


@dataclass(frozen=True)
class TargetInfo:
    """A target name that ``get_target`` accepts and whether it can run here."""

    name: str
    description: str
    available: bool
    note: str = ""


def get_target(spec: str) -> Target:
    """The target named by ``spec`` (see the module docstring).

    Raises:
        TargetError: unknown name, bad option, or a provider not installed here.
    """
    name, options = parse_target_spec(spec)
    if "." in name:
        return _plugin_target(spec.partition(":")[0].strip(), options)
    if name == "analytic":
        from prmodel.targets.analytic import AnalyticTarget

        return AnalyticTarget.from_options(options)
    if name == "scalesim":
        from prmodel.targets.scalesim import ScaleSimTarget

        return ScaleSimTarget.from_options(options)
    from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget

    return OnnxRuntimeTarget.from_options(name, options)


def _plugin_target(path: str, options: dict[str, str]) -> Target:
    import importlib

    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"cannot load target plugin {path!r}: {exc}") from None
    if not hasattr(cls, "from_options"):
        raise TargetError(f"target plugin {path!r} has no from_options(options) classmethod")
    target: Target = cls.from_options(options)
    return target


def list_targets() -> list[TargetInfo]:
    """Every target this installation knows, with whether it is usable on this machine."""
    from prmodel.targets.onnxruntime.target import onnxruntime_target_infos
    from prmodel.targets.scalesim import scalesim_target_info

    return [
        *onnxruntime_target_infos(),
        scalesim_target_info(),
        TargetInfo("analytic", "deterministic blocked-roofline model (tests, demos)", True),
    ]


__all__ = [
    "Benchmark",
    "LayerBuildError",
    "Target",
    "TargetError",
    "TargetInfo",
    "Timings",
    "fingerprint_hash",
    "get_target",
    "list_targets",
    "parse_target_spec",
]
