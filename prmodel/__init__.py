"""prmodel: predict DNN latency on AI accelerators from Performance Representatives.

The public API; heavy libraries (onnxruntime, xgboost, mlflow, optuna) load only when the
stage that needs them is used.
"""

from prmodel.errors import PrmodelError
from prmodel.layers import InvalidLayerError, LayerConfig, LayerKind
from prmodel.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets import Target, TargetError, get_target, list_targets
from prmodel.workspace import Workspace

__version__ = "0.1.0"

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
]
