"""prmodel: predict DNN latency on AI accelerators from Performance Representatives.

The public API. Importing ``prmodel`` is light: the names below that need heavy libraries
(onnxruntime, xgboost, mlflow, optuna) are loaded on first use, so ``prmodel estimate`` never
pays for MLflow or Optuna.

Typical use::

    import prmodel

    target = prmodel.get_target("cpu")
    estimate = prmodel.Estimator.load(".", target).predict("resnet18.onnx")
    print(estimate.total_us)
"""

from __future__ import annotations

import importlib
from typing import Any

from prmodel import _compat
from prmodel.errors import PrmodelError
from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets import Target, TargetError, get_target, list_targets
from prmodel.workspace import Workspace

__version__ = "0.1.0"

_compat.install()  # scripts written against the flat 0.1 layout keep importing

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "MeasurementStore": "prmodel.measure.store",
    "Measurement": "prmodel.measure.store",
    "SweepPlan": "prmodel.measure.plans",
    "load_plans": "prmodel.measure.plans",
    "MeasureSettings": "prmodel.measure.runner",
    "run_sweep": "prmodel.measure.runner",
    "measure_layers": "prmodel.measure.runner",
    "RecheckReport": "prmodel.measure.recheck",
    "recheck_store": "prmodel.measure.recheck",
    "remeasure_stretches": "prmodel.measure.recheck",
    "HardwareProfile": "prmodel.targets.profiles",
    "profile_for": "prmodel.targets.profiles",
    "StepDetection": "prmodel.select.steps",
    "detect_steps": "prmodel.select.steps",
    "select_representatives": "prmodel.select.selection",
    "run_selection": "prmodel.workflows.selection",
    "ParameterSpace": "prmodel.select.spaces",
    "default_space": "prmodel.select.spaces",
    "PRSampler": "prmodel.select.samplers",
    "RandomSampler": "prmodel.select.samplers",
    "AdaptiveSampler": "prmodel.select.samplers",
    "LatencyModel": "prmodel.train.model",
    "load_models": "prmodel.train.artifacts",
    "TrainSettings": "prmodel.train.settings",
    "train_models": "prmodel.train.training",
    "summarize": "prmodel.metrics",
    "Estimator": "prmodel.estimate.estimator",
    "NetworkEstimate": "prmodel.estimate.estimator",
    "measure_network": "prmodel.workflows.calibrate",
    "measure_networks": "prmodel.workflows.calibrate",
    "compare": "prmodel.estimate.compare",
    "EvaluationSettings": "prmodel.workflows.evaluation_results",
    "evaluate": "prmodel.workflows.evaluation",
    "run_quickstart": "prmodel.workflows.quickstart",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "InvalidLayerError",
    "LayerConfig",
    "LayerKind",
    "ParameterSteps",
    "PrmodelError",
    "RepresentativeSet",
    "Target",
    "TargetError",
    "Workspace",
    "__version__",
    "get_target",
    "list_targets",
    *_LAZY,
]
