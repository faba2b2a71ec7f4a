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

from prmodel.errors import PrmodelError
from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind
from prmodel.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets import Target, TargetError, get_target, list_targets
from prmodel.workspace import Workspace

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "MeasurementStore": "prmodel.store",
    "Measurement": "prmodel.store",
    "SweepPlan": "prmodel.plans",
    "load_plans": "prmodel.plans",
    "MeasureSettings": "prmodel.sweep",
    "run_sweep": "prmodel.sweep",
    "measure_layers": "prmodel.sweep",
    "RecheckReport": "prmodel.recheck",
    "recheck_store": "prmodel.recheck",
    "remeasure_stretches": "prmodel.recheck",
    "HardwareProfile": "prmodel.hardware",
    "profile_for": "prmodel.hardware",
    "StepDetection": "prmodel.steps",
    "detect_steps": "prmodel.steps",
    "select_representatives": "prmodel.representatives",
    "run_selection": "prmodel.representatives",
    "ParameterSpace": "prmodel.space",
    "default_space": "prmodel.space",
    "PRSampler": "prmodel.sampling",
    "RandomSampler": "prmodel.sampling",
    "AdaptiveSampler": "prmodel.sampling",
    "LatencyModel": "prmodel.model_store",
    "load_models": "prmodel.model_store",
    "TrainSettings": "prmodel.training",
    "train_models": "prmodel.training",
    "summarize": "prmodel.metrics",
    "Estimator": "prmodel.estimator",
    "NetworkEstimate": "prmodel.estimator",
    "measure_network": "prmodel.estimator",
    "measure_networks": "prmodel.estimator",
    "compare": "prmodel.estimator",
    "EvaluationSettings": "prmodel.evaluation",
    "evaluate": "prmodel.evaluation",
    "run_quickstart": "prmodel.quickstart",
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
