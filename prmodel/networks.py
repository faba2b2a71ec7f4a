"""ONNX networks: read, validate and shape-infer a model, and what a whole-network run measures.

:func:`load_network` reads and validates a model (opset 11 or newer, static shapes or
explicit input shapes) and runs ONNX shape inference; the :class:`Network` it returns is what
every later stage takes (the estimator maps it to kernels, a target that can run networks
times it). Nothing here knows a target.

:class:`NetworkMeasureSettings` and :class:`NetworkMeasurement` are the input and output of a
whole-network run (:class:`~prmodel.targets.base.NetworkRunner`): they live here, below the
targets that produce them and the stages that read them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import helper, shape_inference

from prmodel.errors import PrmodelError, first_line

MIN_OPSET = 11
"""The oldest default-domain opset the estimator reads (Clip takes its bounds as inputs)."""

STANDARD_DOMAINS = ("", "ai.onnx")
"""The names of ONNX's default operator domain."""

Shape = tuple[int, ...]

_LARGE_INITIALIZER = 1024  # elements; larger weights are never needed by value


class NetworkError(PrmodelError, ValueError):
    """A network that cannot be read, mapped or run (one sentence names the file, node, op)."""


@dataclass(frozen=True, eq=False)
class Network:
    """A validated ONNX model with static input shapes and every inferred tensor shape.

    ``model`` is the model to hand to a runtime (input shapes fixed, every node named);
    ``shapes`` and ``dtypes`` hold each tensor's static shape and ONNX element type where
    shape inference found them.
    """

    name: str
    source: str
    model: onnx.ModelProto
    shapes: Mapping[str, Shape]
    dtypes: Mapping[str, int]
    input_shapes: Mapping[str, Shape]
    opset: int
    path: Path | None = None
    modified: bool = False

    def model_source(self) -> str | bytes:
        """What a runtime should load: the file itself where unchanged, else the bytes."""
        if self.path is not None and not self.modified:
            return str(self.path)
        return self.model.SerializeToString()


def load_network(
    model: str | Path | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Network:
    """Read, validate and shape-infer an ONNX model.

    Args:
        model: A path to an ``.onnx`` file or a ``ModelProto`` (not modified).
        input_shapes: Static shapes for graph inputs, by name; required for inputs with
            dynamic dimensions. The key ``""`` stands for the only input of the model.

    Raises:
        NetworkError: a missing, non-ONNX or truncated file, an opset older than 11, an
            invalid model, a dynamic input without a shape, or a bad input shape.
    """
    proto, source, path = _read_model(model)
    opset = _check_opset(proto, source)
    _check_model(proto, source)
    renamed = _name_nodes(proto.graph)
    fixed = _fix_input_shapes(proto, dict(input_shapes or {}), source)
    shapes, dtypes = _infer_shapes(proto, source)
    name = path.stem if path is not None else (proto.graph.name or "model")
    return Network(
        name=name,
        source=source,
        model=proto,
        shapes=shapes,
        dtypes=dtypes,
        input_shapes=fixed,
        opset=opset,
        path=path,
        modified=renamed or bool(input_shapes),
    )


def parse_input_shapes(specs: Iterable[str]) -> dict[str, Shape]:
    """Parse ``name=1x3x224x224`` (or a bare ``1x3x224x224`` for the only input).

    Raises:
        NetworkError: a dimension that is not a positive integer, or one input given twice.
    """
    shapes: dict[str, Shape] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep:
            name, dims = "", spec
        if name.strip() in shapes:
            which = f"input {name.strip()!r}" if name.strip() else "the only input (a bare shape)"
            raise NetworkError(f"--input-shape is given twice for {which}; give each input once")
        try:
            shape = tuple(int(d) for d in re.split(r"[x,]", dims.strip().lower()) if d)
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise NetworkError(
                f"input shape {spec!r} is not of the form name=1x3x224x224 with positive sizes"
            )
        shapes[name.strip()] = shape
    return shapes


def _read_model(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str, Path | None]:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy, f"model {model.graph.name or '<ModelProto>'!r}", None
    path = Path(model)
    if path.is_dir():
        raise NetworkError(f"{path} is a folder, not an ONNX model file")
    if not path.is_file():
        raise NetworkError(f"model file {path} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, external data raises OSError
        reason = first_line(exc, period=False)
        raise NetworkError(
            f"{path} is not a readable ONNX model (truncated or not ONNX: {reason})"
        ) from None
    if not proto.graph.node or not proto.opset_import:
        raise NetworkError(f"{path} is not an ONNX model (it has no graph nodes or opset)")
    return proto, str(path), path


def _check_opset(proto: onnx.ModelProto, source: str) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS]
    if not versions:
        raise NetworkError(f"{source} imports no default-domain (ai.onnx) opset")
    opset = max(versions)
    if opset < MIN_OPSET:
        raise NetworkError(
            f"{source} uses opset {opset}; the estimator needs opset {MIN_OPSET} or newer "
            f"(convert it with onnx.version_converter.convert_version)"
        )
    return opset


def _check_model(proto: onnx.ModelProto, source: str) -> None:
    try:
        onnx.checker.check_model(_light_model(proto))
    except Exception as exc:
        raise NetworkError(
            f"{source} is not a valid ONNX model: {first_line(exc, period=False)}"
        ) from None


def _light_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without large weight data (they become typed inputs): cheap to check."""
    graph = proto.graph
    light = helper.make_graph(
        list(graph.node),
        graph.name or "graph",
        list(graph.input),
        list(graph.output),
        [t for t in graph.initializer if math.prod(t.dims) <= _LARGE_INITIALIZER],
        value_info=list(graph.value_info),
    )
    declared = {v.name for v in graph.input}
    for tensor in graph.initializer:
        if math.prod(tensor.dims) > _LARGE_INITIALIZER and tensor.name not in declared:
            light.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    result = helper.make_model(
        light, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )
    result.functions.extend(proto.functions)
    return result


def _name_nodes(graph: onnx.GraphProto) -> bool:
    """Give every node a unique name (tables and profiles refer to nodes by name)."""
    seen: set[str] = set()
    changed = False
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            changed = True
        seen.add(node.name)
    return changed


def _graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    weights = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in weights]


def _fix_input_shapes(
    proto: onnx.ModelProto, given: dict[str, Sequence[int]], source: str
) -> dict[str, Shape]:
    inputs = _graph_inputs(proto)
    names = [v.name for v in inputs]
    if "" in given:
        if len(inputs) != 1:
            raise NetworkError(
                f"{source} has {len(inputs)} inputs ({', '.join(names)}); "
                "name the input in the shape, e.g. --input-shape name=1x3x224x224"
            )
        if names[0] in given:
            raise NetworkError(
                f"--input-shape is given twice for input {names[0]!r} of {source} (once bare, "
                "once by name); give each input once"
            )
        given[names[0]] = given.pop("")
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise NetworkError(
            f"{source} has no input named {unknown[0]!r} (inputs: {', '.join(names)})"
        )
    fixed: dict[str, Shape] = {}
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        if value.name in given:
            fixed[value.name] = _set_dims(value, tuple(given[value.name]), source)
            continue
        declared = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
        if not value.type.tensor_type.HasField("shape") or any(
            not isinstance(d, int) or d < 1 for d in declared
        ):
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else "1" for d in declared)
            raise NetworkError(
                f"input {value.name!r} of {source} has a dynamic shape "
                f"({', '.join(map(str, declared)) or 'unknown rank'}); give it with "
                f"--input-shape {value.name}={example or '1x3x224x224'}"
            )
        fixed[value.name] = tuple(int(d) for d in declared)
    return fixed


def _set_dims(value: onnx.ValueInfoProto, shape: Shape, source: str) -> Shape:
    tensor_type = value.type.tensor_type
    if tensor_type.HasField("shape") and len(tensor_type.shape.dim) != len(shape):
        raise NetworkError(
            f"input shape {'x'.join(map(str, shape))} has {len(shape)} dimensions but input "
            f"{value.name!r} of {source} has {len(tensor_type.shape.dim)}"
        )
    for dim, size in zip(tensor_type.shape.dim, shape, strict=True):
        if dim.HasField("dim_value") and dim.dim_value not in (0, size):
            raise NetworkError(
                f"input {value.name!r} of {source} has the fixed shape "
                f"{_format_dims(tensor_type.shape)}, which --input-shape cannot change"
            )
    tensor_type.ClearField("shape")
    for size in shape:
        tensor_type.shape.dim.add().dim_value = size
    return shape


def _format_dims(shape: onnx.TensorShapeProto) -> str:
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else d.dim_param for d in shape.dim)


def _infer_shapes(proto: onnx.ModelProto, source: str) -> tuple[dict[str, Shape], dict[str, int]]:
    light = _light_model(proto)
    del light.graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise NetworkError(
            f"shape inference failed on {source}: {first_line(exc, period=False)}"
        ) from None
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, int] = {}
    graph = inferred.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        _record_value(value, shapes, dtypes)
    for tensor in proto.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
        dtypes[tensor.name] = tensor.data_type
    return shapes, dtypes


def _record_value(
    value: onnx.ValueInfoProto, shapes: dict[str, Shape], dtypes: dict[str, int]
) -> None:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return
    dtypes[value.name] = tensor_type.elem_type
    if not tensor_type.HasField("shape"):
        return
    dims = tensor_type.shape.dim
    if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
        shapes[value.name] = tuple(d.dim_value for d in dims)


# -- whole-network measurements ---------------------------------------------------------------


KERNEL_TIME_COLUMNS: tuple[str, ...] = ("node", "op", "measured_us", "provider", "output_shape")
"""Columns of :attr:`NetworkMeasurement.kernels`."""


@dataclass(frozen=True)
class NetworkMeasureSettings:
    """How a whole network is timed (:class:`~prmodel.targets.base.NetworkRunner`).

    Attributes:
        warmup: Untimed runs of each session before timing.
        rounds: Interleaved rounds; each times ``runs`` plain runs, then ``profiled_runs``.
        runs: Timed plain runs per round (their median is the round's latency).
        profiled_runs: Profiled runs per round (per-kernel times); 0 skips profiling.
        seed: Seed of the random inputs.
        max_rounds: Rounds a network may get in all (0: exactly ``rounds``). After
            ``rounds``, every network whose latency is not yet known within ``settle_pct``
            (:func:`median_uncertainty_pct` of its round medians) gets one more round, the
            unsettled networks' rounds interleaved, until none is left or it had
            ``max_rounds``: rounds go where the noise is.
        settle_pct: The uncertainty (percent) below which a network needs no more rounds.
    """

    warmup: int = 5
    rounds: int = 5
    runs: int = 10
    profiled_runs: int = 2
    seed: int = 0
    max_rounds: int = 0
    settle_pct: float = 1.5

    def __post_init__(self) -> None:
        for name in ("rounds", "runs"):
            if getattr(self, name) < 1:
                raise NetworkError(f"measure setting {name} must be at least 1")
        if self.warmup < 0 or self.profiled_runs < 0:
            raise NetworkError("measure settings warmup and profiled_runs cannot be negative")
        if self.max_rounds and self.max_rounds < self.rounds:
            raise NetworkError(
                f"measure setting max_rounds ({self.max_rounds}) must be 0 or at least "
                f"rounds ({self.rounds})"
            )
        if not (math.isfinite(self.settle_pct) and self.settle_pct > 0):
            raise NetworkError(f"measure setting settle_pct must be above 0, got {self.settle_pct}")

    @property
    def adaptive(self) -> bool:
        """Whether networks whose rounds disagree get more rounds."""
        return self.max_rounds > self.rounds


MEDIAN_SE_FACTOR = 1.2533 * 1.4826
"""Standard error of a median of n normal values, in MADs, times sqrt(n): sqrt(pi / 2) for
the median, 1.4826 from the MAD to the standard deviation."""


def median_uncertainty_pct(values: Sequence[float]) -> float:
    """How well the median of ``values`` (a network's round medians) is known: its standard
    error estimated from their median absolute deviation, in percent of the median (inf for
    fewer than two values or a median of 0). Robust: one disturbed round of five moves it
    little, two move it much."""
    if len(values) < 2:
        return math.inf
    data = np.asarray(values, dtype=np.float64)
    middle = float(np.median(data))
    if middle <= 0:
        return math.inf
    mad = float(np.median(np.abs(data - middle)))
    return 100 * MEDIAN_SE_FACTOR * mad / middle / math.sqrt(len(data))


@dataclass(frozen=True, eq=False)
class NetworkMeasurement:
    """A network's measured latency on a target and its profiled per-kernel times.

    ``total_us`` is the median over rounds of each round's median run time: the latency the
    network typically takes, robust to a neighbour's bursts. A lone layer's ``latency_us``
    is the minimum of its round medians instead, confirmed by a second round within 2 %
    (:mod:`prmodel.measure.runner`); a network's fixed rounds have no such confirmation, and their
    minimum moved about twice as much from one measurement to the next as their median
    (the calibration's scale takes up the steady difference between the two statistics).
    ``median_us``, ``p10_us``, ``p90_us`` describe all timed runs. ``kernels`` has one
    row per profiled kernel (:data:`KERNEL_TIME_COLUMNS`): ``measured_us`` is its median
    time per run. Profiled times carry a floor of a few µs per kernel (docs/method.md,
    "Facts behind the design").
    """

    network: str
    target_id: str
    total_us: float
    median_us: float
    p10_us: float
    p90_us: float
    round_medians_us: tuple[float, ...]
    runs: int
    kernels: pd.DataFrame
    settings: NetworkMeasureSettings

    @property
    def spread_pct(self) -> float:
        """(p90 - p10) / median of all timed runs, in percent."""
        return 100 * (self.p90_us - self.p10_us) / self.median_us

    @property
    def uncertainty_pct(self) -> float:
        """How well ``total_us`` is known (:func:`median_uncertainty_pct` of the rounds)."""
        return median_uncertainty_pct(self.round_medians_us)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "target_id": self.target_id,
            "total_us": self.total_us,
            "median_us": self.median_us,
            "p10_us": self.p10_us,
            "p90_us": self.p90_us,
            "spread_pct": self.spread_pct,
            "round_medians_us": list(self.round_medians_us),
            "runs": self.runs,
            "kernels": json_records(self.kernels),
        }


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN and None as None), for JSON."""
    records = []
    for row in frame.to_dict("records"):
        records.append({k: _plain(v) for k, v in row.items()})
    return records


def _plain(value: Any) -> Any:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


__all__ = [
    "KERNEL_TIME_COLUMNS",
    "MIN_OPSET",
    "STANDARD_DOMAINS",
    "Network",
    "NetworkError",
    "NetworkMeasureSettings",
    "NetworkMeasurement",
    "Shape",
    "json_records",
    "load_network",
    "parse_input_shapes",
]
