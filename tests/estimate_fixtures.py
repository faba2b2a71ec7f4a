"""Shared test doubles for the estimate tests: layer models that return the analytic target's
latency, quick whole-network measure settings, a channel count off this CPU's NCHWc block and
small ONNX graphs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from prmodel.layers import LayerConfig, LayerKind
from prmodel.networks import NetworkMeasureSettings
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget

QUICK = NetworkMeasureSettings(warmup=1, rounds=2, runs=3, profiled_runs=1)
"""Whole-network measure settings that take well under a second per tiny network."""


@dataclass
class AnalyticModel:
    """A 'trained' model that returns the analytic target's latency and counts its calls."""

    target: AnalyticTarget = field(default_factory=AnalyticTarget)
    calls: list[int] = field(default_factory=list)

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        self.calls.append(len(layers))
        return np.array([self.target.latency_us(layer) for layer in layers], dtype=np.float64)


def analytic_models(
    kinds: Sequence[LayerKind] = tuple(LayerKind),
) -> dict[LayerKind, AnalyticModel]:
    """One analytic model per kind."""
    return {kind: AnalyticModel() for kind in kinds}


def off_block_width(target: OnnxRuntimeTarget | None = None) -> int:
    """One and a half NCHWc blocks of this CPU's ORT (24 with AVX-512, 12 with AVX2).

    A network this wide has the same layout on every ISA: the stem pads it to two blocks, and
    ops that need whole blocks (NCHWc pooling) leave the blocked layout, with reorders.
    """
    return (target or OnnxRuntimeTarget()).nchwc_block() * 3 // 2


def small_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, Sequence[int | str]],
    outputs: dict[str, Sequence[int | str]],
    weights: dict[str, np.ndarray] | None = None,
    *,
    opset: int = 17,
) -> onnx.ModelProto:
    """A one-graph float model of ``nodes`` with these inputs, outputs and float32 weights."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs.items()],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (weights or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset >= 11 else 5
    return model
