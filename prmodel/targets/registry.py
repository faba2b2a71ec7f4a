"""The target registry: a spec string names a target class and its options.

A spec is ``name`` or ``name:key=value,...``, for example ``cpu``,
``cpu:threads=2,opt=extended``, ``cuda``, ``scalesim:rows=32,cols=32,dataflow=ws`` or
``analytic:block=8``. ``analytic`` and ``scalesim`` are the built-in classes of
:data:`BUILTIN_TARGETS`; every other plain name is an ONNX Runtime execution provider
(:data:`PROVIDER_TARGET`). A dotted name, ``package.module.ClassName:key=value``, loads a
target class from any importable module: that is how a new device is added without touching
prmodel.

A target class supplies ``from_options(options: dict[str, str])`` (the provider class takes the
provider name first) and, to be listed by :func:`list_targets`, ``target_infos()``. Built-in
classes are loaded by their dotted path like plug-ins, on first use, so that naming the
analytic target does not import ONNX Runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from prmodel.targets.base import (
    Target,
    TargetError,
    TargetInfo,
    UnknownTargetError,
    parse_target_spec,
)

BUILTIN_TARGETS: Mapping[str, str] = {
    "scalesim": "prmodel.targets.scalesim.ScaleSimTarget",
    "analytic": "prmodel.targets.analytic.AnalyticTarget",
}
"""Built-in target names and the class each stands for (listed in this order)."""

PROVIDER_TARGET = "prmodel.targets.onnxruntime.target.OnnxRuntimeTarget"
"""The class of every other plain name: an ONNX Runtime execution provider (``cpu``, ...)."""


def get_target(spec: str) -> Target:
    """The target named by ``spec`` (see the module docstring).

    Args:
        spec: ``name``, ``name:key=value,...`` or ``package.module.Class:key=value,...``.

    Returns:
        A target ready to benchmark layers.

    Raises:
        TargetError: unknown name, bad option, a plug-in that cannot be loaded, or a
            provider not installed here.
    """
    name, options = parse_target_spec(spec)
    if "." in name:
        path = spec.partition(":")[0].strip()
        target: Target = load_target_class(path).from_options(options)
        return target
    if name in BUILTIN_TARGETS:
        builtin: Target = load_target_class(BUILTIN_TARGETS[name]).from_options(options)
        return builtin
    return _provider_target(name, options)


def list_targets() -> list[TargetInfo]:
    """Every built-in target, with whether it can run on this machine.

    Returns:
        The ONNX Runtime providers (installed ones, then well-known ones that are not),
        then the targets of :data:`BUILTIN_TARGETS`.
    """
    paths = (PROVIDER_TARGET, *BUILTIN_TARGETS.values())
    return [info for path in paths for info in load_target_class(path).target_infos()]


def load_target_class(path: str) -> Any:
    """The class at the dotted ``path`` (``package.module.ClassName``).

    Raises:
        TargetError: the module or class cannot be loaded, or has no ``from_options``.
    """
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TargetError(f"cannot load target plugin {path!r}: {exc}") from None
    if not hasattr(cls, "from_options"):
        raise TargetError(f"target plugin {path!r} has no from_options(options) classmethod")
    return cls


def _provider_target(name: str, options: dict[str, str]) -> Target:
    try:
        target: Target = load_target_class(PROVIDER_TARGET).from_options(name, options)
    except UnknownTargetError as exc:
        known = ", ".join([*sorted(BUILTIN_TARGETS), *exc.known])
        raise TargetError(f"unknown target {name!r} (known: {known}, or a provider name)") from None
    return target


__all__ = [
    "BUILTIN_TARGETS",
    "PROVIDER_TARGET",
    "get_target",
    "list_targets",
    "load_target_class",
]
