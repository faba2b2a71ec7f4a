"""The module paths of prmodel 0.1 before the stage subpackages, kept importable for old scripts.

``from prmodel.estimator import Estimator`` was how the README's example read; the estimator
now lives in :mod:`prmodel.estimate.estimator`. Each old module name is served by a small
alias module that finds a name in the modules it was split into and warns once
(``DeprecationWarning``) that the old path will go. New code imports from ``prmodel`` (the
public API) or from the stage subpackages.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

# old module -> the modules its names live in now (searched in order).
OLD_MODULES: dict[str, tuple[str, ...]] = {
    "prmodel.hardware": ("prmodel.targets.profiles", "prmodel.targets.cpu"),
    "prmodel.machine": ("prmodel.targets.cpu",),
    "prmodel.onnx_builder": ("prmodel.targets.onnxruntime.builder",),
    "prmodel.plans": ("prmodel.measure.plans",),
    "prmodel.store": ("prmodel.measure.store",),
    "prmodel.sweep": ("prmodel.measure.runner",),
    "prmodel.recheck": ("prmodel.measure.recheck",),
    "prmodel.frames": ("prmodel.measure.frames",),
    "prmodel.space": ("prmodel.select.spaces",),
    "prmodel.steps": ("prmodel.select.steps",),
    "prmodel.representatives": (
        "prmodel.select.representatives",
        "prmodel.select.selection",
        "prmodel.select.plots",
        "prmodel.workflows.selection",
    ),
    "prmodel.sampling": (
        "prmodel.select.samplers",
        "prmodel.select.selection",
        "prmodel.select._sampling",
    ),
    "prmodel.network_sampling": ("prmodel.select.network_prior",),
    "prmodel.features": ("prmodel.train.features",),
    "prmodel.model_store": (
        "prmodel.train.model",
        "prmodel.train.artifacts",
        "prmodel.train.regressors",
    ),
    "prmodel.treeforest": ("prmodel.train.treeforest",),
    "prmodel.training": (
        "prmodel.train.training",
        "prmodel.train.tuning",
        "prmodel.train.settings",
    ),
    "prmodel.tracking": ("prmodel.train.tracking",),
    "prmodel.graph": (
        "prmodel.estimate.kernels",
        "prmodel.networks",
        "prmodel.targets.onnxruntime.networks",
    ),
    "prmodel.estimator": (
        "prmodel.estimate.estimator",
        "prmodel.estimate.compare",
        "prmodel.workflows.calibrate",
        "prmodel.networks",
        "prmodel.estimate.calibration",
    ),
    "prmodel.calibration": ("prmodel.estimate.calibration",),
    "prmodel.evaluation": (
        "prmodel.workflows.evaluation",
        "prmodel.workflows.evaluation_results",
        "prmodel.workflows.datasets",
        "prmodel.workflows.reports",
        "prmodel.workflows.selection",
    ),
    "prmodel.quickstart": (
        "prmodel.workflows.quickstart",
        "prmodel.workflows.quickstart_results",
        "prmodel.workflows.datasets",
        "prmodel.select.staircase",
    ),
}


class _AliasModule(types.ModuleType):
    """An old module path whose attributes are looked up in the new modules."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"Deprecated alias of {', '.join(homes)}.")
        self._homes = tuple(homes)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                value = getattr(module, attr)
                setattr(self, attr, value)
                return value
        raise AttributeError(
            f"module {self.__name__!r} (now {', '.join(self._homes)}) has no attribute {attr!r}"
        )

    def __dir__(self) -> list[str]:
        names: set[str] = set()
        for home in self._homes:
            names.update(n for n in dir(importlib.import_module(home)) if not n.startswith("_"))
        return sorted(names)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the old module paths in :data:`OLD_MODULES`."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in OLD_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = OLD_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(homes)}; import from there or from prmodel",
            DeprecationWarning,
            stacklevel=3,
        )
        return _AliasModule(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: attributes are found on first use."""


def install() -> None:
    """Serve the old module paths (idempotent)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
