"""Network latency estimates from trained layer models, and whole-network measurements.

:class:`Estimator` maps an ONNX model to the kernels the target runs
(:mod:`prmodel.estimate.kernels`),
predicts every mapped kernel with the trained model of its kind (one vectorised call per
kind), gives unmodelled kernels a fallback cost, and sums them, corrected by the target's
:class:`~prmodel.estimate.calibration.Calibration` where one was fitted.

Fallback for unmodelled kernels (Concat, Softmax, layout reorders, kinds without a trained
model or refused by the target), in this order, named in each row's ``source``:

1. ``bandwidth fit``: the calibration's per-op ``fixed + bytes moved`` fit, learned from
   the profiled times of such kernels in measured networks;
2. ``elementwise proxy``: the trained model of an element-wise kind (relu, else add or mul)
   on the kernel's largest tensor, scaled by the ratio of bytes moved: such ops are
   memory-bound, and the element-wise models have learned this target's bandwidth;
3. ``none``: 0 µs. The row says so, and the estimate's ``unmodelled_share`` shows how much
   of the total rests on fallbacks.

:func:`measure_network` runs a network on an ONNX Runtime target with the target's own
session options (warm-up, rounds of plain and profiled runs) and returns its latency and
per-kernel profiled times (:func:`measure_networks` several, their rounds interleaved);
:func:`compare` joins them to an estimate.
:func:`calibrate` does both on several networks and fits the calibration.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd

from prmodel.estimate.calibration import (
    DEFAULT_CORE_CACHE_BYTES,
    DEFAULT_WEIGHT_CAP_BYTES,
    Calibration,
    CalibrationSample,
    calibration_path,
    fit_calibration,
    load_calibration,
)
from prmodel.estimate.kernels import (
    EstimateError,
    Kernel,
    Network,
    NetworkKernels,
    as_nchw,
    is_onnxruntime_target,
    load_network,
    network_kernels,
)
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import LAYER_COLUMNS
from prmodel.targets.base import Target
from prmodel.workspace import Workspace

ModelInput = str | Path | onnx.ModelProto | Network | NetworkKernels
InputShapes = Mapping[str, Sequence[int]] | None

PROXY_KINDS: tuple[LayerKind, ...] = (LayerKind.RELU, LayerKind.ADD, LayerKind.MUL)
"""Element-wise kinds whose models price unmodelled memory-bound kernels, in preference."""

ESTIMATE_COLUMNS: tuple[str, ...] = (
    "node",
    "op",
    "fused",
    "status",
    "source",
    "params",
    "output_shape",
    "predicted_us",
    "calibrated_us",
    "share_pct",
    "bytes_moved",
    "weight_bytes",
    "note",
    *LAYER_COLUMNS,
)
"""Columns of :attr:`NetworkEstimate.layers`. ``status`` is ``modelled``, ``unmodelled`` or
``free``; ``source`` how the time was obtained (``model``, ``bandwidth fit``,
``elementwise proxy``, ``none``, ``free``); ``output_shape`` the first output as ``1x64x56x56``
(padded channels inside NCHWc); ``kind`` and the other LayerConfig columns
describe the mapped layer (empty where there is none); ``share_pct`` is the share of the
sum of predictions; ``calibrated_us`` the prediction with the per-kernel calibration terms."""


KERNEL_TIME_COLUMNS: tuple[str, ...] = ("node", "op", "measured_us", "provider", "output_shape")
"""Columns of :attr:`NetworkMeasurement.kernels`."""


class LayerModel(Protocol):
    """Anything that predicts kernel latency in µs for layers of one kind."""

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]: ...


# -- estimates --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NetworkEstimate:
    """The estimated latency of one network on one target.

    Attributes:
        network: The network's name.
        target_id: The target it was estimated for.
        runtime: How kernels were found (ORT's optimizer or the exported graph).
        layers: One row per kernel, columns :data:`ESTIMATE_COLUMNS`.
        sum_us: Sum of the kernel predictions (fallbacks included).
        total_us: The estimate: ``sum_us`` corrected by the calibration where there is one.
        calibration: The calibration used, or None (then ``total_us == sum_us``).
        warnings: Distinct warnings raised while predicting (e.g. extrapolation).
    """

    network: str
    target_id: str
    runtime: str
    layers: pd.DataFrame
    sum_us: float
    total_us: float
    calibration: Calibration | None
    warnings: tuple[str, ...] = ()

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def unmodelled_us(self) -> float:
        """Time of the kernels priced by a fallback instead of a trained model."""
        rows = self.layers["status"] == "unmodelled"
        return float(self.layers.loc[rows, "predicted_us"].sum())

    @property
    def unmodelled_share(self) -> float:
        """Share (0-1) of the summed prediction that rests on fallbacks."""
        return self.unmodelled_us / self.sum_us if self.sum_us > 0 else 0.0

    @property
    def total_note(self) -> str:
        """How ``total_us`` was obtained, in words."""
        if self.calibration is None:
            return "plain sum of kernel predictions (no calibration fitted for this target)"
        return f"calibrated: {self.calibration.formula}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary with every kernel row."""
        return {
            "network": self.network,
            "target_id": self.target_id,
            "runtime": self.runtime,
            "total_us": self.total_us,
            "sum_us": self.sum_us,
            "calibrated": self.calibrated,
            "total_note": self.total_note,
            "unmodelled_us": self.unmodelled_us,
            "unmodelled_share": self.unmodelled_share,
            "kernels": _records(self.layers),
            "warnings": list(self.warnings),
        }


class Estimator:
    """Estimates network latency on one target from its trained layer models.

    ``__init__`` only stores its arguments; :meth:`load` reads models and calibration from
    a workspace.

    Args:
        target: The target the models were trained for.
        models: Trained models by layer kind (anything with ``predict(layers)`` in µs).
        calibration: Network-level correction; None for the plain sum.
        strict: Refuse compute-heavy ops that cannot be mapped (else list them unmodelled).
    """

    def __init__(
        self,
        target: Target,
        models: Mapping[LayerKind, LayerModel],
        *,
        calibration: Calibration | None = None,
        strict: bool = True,
    ) -> None:
        self.target = target
        self.models = models
        self.calibration = calibration
        self.strict = strict

    @classmethod
    def load(
        cls,
        workspace: Workspace | str | Path = ".",
        target: Target | str = "cpu",
        *,
        calibrated: bool = True,
        strict: bool = True,
    ) -> Estimator:
        """The estimator for ``target`` with the models (and calibration) saved in a workspace.

        Raises:
            EstimateError: the workspace has no trained models for the target.
            ModelError: a saved model is broken, tampered or mismatched.
        """
        from prmodel.targets import get_target
        from prmodel.train.model import load_models

        ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
        resolved = get_target(target) if isinstance(target, str) else target
        models = load_models(ws, resolved.target_id)
        if not models:
            raise EstimateError(
                f"no trained models for target {resolved.target_id} in {ws.models_dir}; "
                f"train them first (prmodel train --target ...)"
            )
        calibration = load_calibration(ws, resolved.target_id) if calibrated else None
        return cls(resolved, models, calibration=calibration, strict=strict)

    def kernels(self, model: ModelInput, *, input_shapes: InputShapes = None) -> NetworkKernels:
        """The kernels the target runs for ``model``, mapped to layers (no prediction)."""
        if isinstance(model, NetworkKernels):
            return model
        network = _as_network(model, input_shapes)
        return network_kernels(network, self.target, strict=self.strict)

    def predict(self, model: ModelInput, *, input_shapes: InputShapes = None) -> NetworkEstimate:
        """Estimate the latency of ``model``.

        Args:
            model: A path, a ModelProto, a loaded :class:`~prmodel.estimate.kernels.Network`, or its
                kernels from :func:`~prmodel.estimate.kernels.network_kernels` (already mapped).
            input_shapes: Shapes of dynamic inputs
                (see :func:`~prmodel.estimate.kernels.load_network`).

        Raises:
            EstimateError: the model cannot be read or mapped (see :func:`load_network`).
        """
        found = self.kernels(model, input_shapes=input_shapes)
        kernels = found.kernels
        status, notes = self._classify(kernels)
        predicted = np.zeros(len(kernels))
        source = ["free" if s == "free" else "none" for s in status]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._predict_modelled(kernels, status, predicted, source)
            self._predict_unmodelled(kernels, status, predicted, source)
        messages = [w.message for w in caught]
        frame = _estimate_frame(kernels, status, source, predicted, notes, self.calibration)
        sum_us = float(predicted.sum())
        total = sum_us
        if self.calibration is not None:
            active = frame["status"] != "free"
            total = self.calibration.total_us(
                frame.loc[active, "predicted_us"], frame.loc[active, "weight_bytes"]
            )
        return NetworkEstimate(
            network=found.network.name,
            target_id=self.target.target_id,
            runtime=found.runtime,
            layers=frame,
            sum_us=sum_us,
            total_us=total,
            calibration=self.calibration,
            warnings=tuple(dict.fromkeys([*self._stale_calibration(), *map(str, messages)])),
        )

    def _stale_calibration(self) -> list[str]:
        """A warning where the calibration was fitted with other trained models."""
        fitted = dict(self.calibration.notes.get("models") or {}) if self.calibration else {}
        current = model_digests(self.models)
        if not fitted or not current or fitted == current:
            return []
        return [
            "the calibration was fitted with other trained models than these; "
            "rerun prmodel calibrate to refit it"
        ]

    def _classify(self, kernels: Sequence[Kernel]) -> tuple[list[str], list[str]]:
        status, notes = [], []
        for kernel in kernels:
            reasons = [kernel.note] if kernel.note else []
            if kernel.free:
                status.append("free")
            elif kernel.layer is None:
                status.append("unmodelled")
            elif kernel.layer.kind not in self.models:
                status.append("unmodelled")
                reasons.append(f"no trained {kernel.layer.kind.value} model")
            elif (reason := self.target.unsupported_reason(kernel.layer)) is not None:
                status.append("unmodelled")
                reasons.append(f"target refuses it: {reason}")
            else:
                status.append("modelled")
            notes.append("; ".join(reasons))
        return status, notes

    def _predict_modelled(
        self,
        kernels: Sequence[Kernel],
        status: Sequence[str],
        predicted: npt.NDArray[np.float64],
        source: list[str],
    ) -> None:
        by_kind: dict[LayerKind, list[tuple[int, LayerConfig]]] = defaultdict(list)
        for index, kernel in enumerate(kernels):
            if status[index] == "modelled" and kernel.layer is not None:
                by_kind[kernel.layer.kind].append((index, kernel.layer))
        for kind, pairs in by_kind.items():
            indices = [index for index, _ in pairs]
            values = self.models[kind].predict([layer for _, layer in pairs])
            predicted[indices] = np.asarray(values, dtype=np.float64)
            for index in indices:
                source[index] = "model"

    def _predict_unmodelled(
        self,
        kernels: Sequence[Kernel],
        status: Sequence[str],
        predicted: npt.NDArray[np.float64],
        source: list[str],
    ) -> None:
        pending = []
        for index, kernel in enumerate(kernels):
            if status[index] != "unmodelled":
                continue
            fit = self.calibration.unmodelled_fit(kernel.op) if self.calibration else None
            if fit is not None:
                predicted[index] = float(fit.predict(kernel.bytes_moved))
                source[index] = "bandwidth fit"
            else:
                pending.append(index)
        self._proxy(kernels, pending, predicted, source)

    def _proxy(
        self,
        kernels: Sequence[Kernel],
        indices: Sequence[int],
        predicted: npt.NDArray[np.float64],
        source: list[str],
    ) -> None:
        kind = next((k for k in PROXY_KINDS if k in self.models), None)
        if kind is None or not indices:
            return
        proxies: list[tuple[int, LayerConfig]] = []
        for index in indices:
            layer = _proxy_layer(kernels[index], kind)
            if layer is not None:
                proxies.append((index, layer))
        if not proxies:
            return
        times = self.models[kind].predict([layer for _, layer in proxies])
        for (index, layer), proxy_us in zip(proxies, times, strict=True):
            ratio = kernels[index].bytes_moved / max(layer.activation_bytes, 1)
            predicted[index] = float(proxy_us) * ratio
            source[index] = "elementwise proxy"


def model_digests(models: Mapping[LayerKind, LayerModel]) -> dict[str, str]:
    """The sha256 of every model's saved file, by kind ({} unless all were loaded from files)."""
    digests = {}
    for kind, model in models.items():
        card = getattr(model, "card_", None)
        digest = getattr(card, "model_sha256", None)
        if not digest:
            return {}
        digests[kind.value] = str(digest)
    return dict(sorted(digests.items()))


def network_layers(
    models: Sequence[ModelInput], target: Target, *, input_shapes: InputShapes = None
) -> dict[str, list[LayerConfig]]:
    """The mapped layers of each network, in execution order, by network name.

    The layers are those the estimator predicts for ``target`` (fused activations and
    residual adds included); kernels without a layer (reorders, Concat, ...) are left out.
    Networks with equal names are told apart by a ``#2``, ``#3`` suffix.

    Raises:
        EstimateError: a model cannot be read or mapped (see :func:`load_network`).
    """
    mapper = Estimator(target, {}, strict=False)
    found: dict[str, list[LayerConfig]] = {}
    for model in models:
        kernels = mapper.kernels(model, input_shapes=input_shapes)
        name, number = kernels.network.name, 1
        while name in found:
            number += 1
            name = f"{kernels.network.name}#{number}"
        found[name] = [k.layer for k in kernels.kernels if k.layer is not None]
    return found


def _as_network(model: ModelInput, input_shapes: InputShapes) -> Network:
    if isinstance(model, NetworkKernels):
        return model.network
    if isinstance(model, Network):
        return model
    return load_network(model, input_shapes=input_shapes)


def _proxy_layer(kernel: Kernel, kind: LayerKind) -> LayerConfig | None:
    """The element-wise layer over the kernel's largest tensor (None if it moves nothing)."""
    shapes = [s for s in (*kernel.input_shapes, *kernel.output_shapes) if s]
    if not shapes or kernel.bytes_moved <= 0:
        return None
    batch, channels, height, width = as_nchw(max(shapes, key=lambda s: int(np.prod(s))))
    return LayerConfig.create(kind, batch=batch, channels=channels, height=height, width=width)


def _estimate_frame(
    kernels: Sequence[Kernel],
    status: Sequence[str],
    source: Sequence[str],
    predicted: npt.NDArray[np.float64],
    notes: Sequence[str],
    calibration: Calibration | None,
) -> pd.DataFrame:
    total = float(predicted.sum())
    rows = []
    for index, kernel in enumerate(kernels):
        row: dict[str, Any] = {
            "node": kernel.name,
            "op": kernel.op,
            "fused": "+".join(kernel.fused_ops),
            "status": status[index],
            "source": source[index],
            "params": kernel.description,
            "output_shape": "x".join(str(d) for d in kernel.output_shapes[0] or ())
            if kernel.output_shapes
            else "",
            "predicted_us": float(predicted[index]),
            "share_pct": 100 * float(predicted[index]) / total if total > 0 else 0.0,
            "bytes_moved": kernel.bytes_moved,
            "weight_bytes": kernel.weight_bytes,
            "note": notes[index],
        }
        layer = kernel.layer
        for name in LAYER_COLUMNS:
            row[name] = getattr(layer, name) if layer is not None else None
        if layer is not None:
            row["kind"] = layer.kind.value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    # Nullable dtypes keep layer parameters integers although free/unmapped rows have none.
    for name in LAYER_COLUMNS:
        if name not in ("kind", "activation", "residual"):
            frame[name] = frame[name].astype("Int64")
    frame["residual"] = frame["residual"].astype("boolean")
    frame["calibrated_us"] = frame["predicted_us"]
    if calibration is not None and len(frame):
        frame["calibrated_us"] = calibration.kernel_us(frame["predicted_us"], frame["weight_bytes"])
        frame.loc[frame["status"] == "free", "calibrated_us"] = 0.0
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
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


# -- measuring whole networks -----------------------------------------------------------------


@dataclass(frozen=True)
class NetworkMeasureSettings:
    """How :func:`measure_network` times a network.

    Attributes:
        warmup: Untimed runs of each session before timing.
        rounds: Interleaved rounds; each times ``runs`` plain runs, then ``profiled_runs``.
        runs: Timed plain runs per round (their median is the round's latency).
        profiled_runs: Profiled runs per round (per-kernel times); 0 skips profiling.
        seed: Seed of the random inputs.
    """

    warmup: int = 5
    rounds: int = 5
    runs: int = 10
    profiled_runs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "runs"):
            if getattr(self, name) < 1:
                raise EstimateError(f"measure setting {name} must be at least 1")
        if self.warmup < 0 or self.profiled_runs < 0:
            raise EstimateError("measure settings warmup and profiled_runs cannot be negative")


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
    time per run. Profiled times carry a floor of a few µs per kernel (DESIGN.md).
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
            "kernels": _records(self.kernels),
        }


def measure_network(
    model: ModelInput,
    target: Target,
    *,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
) -> NetworkMeasurement:
    """Run a whole network on an ONNX Runtime target and time it, with per-kernel profiles.

    Uses the target's own session options and providers, so the network runs exactly as
    its layers were measured. Plain runs (``run_with_iobinding``, inputs bound once) give
    the latency; profiled runs in a second session give per-kernel times. To measure
    several networks, :func:`measure_networks` interleaves their rounds.

    Raises:
        EstimateError: the target is not an ONNX Runtime target, or ORT cannot run the model.
    """
    return measure_networks([model], target, input_shapes=input_shapes, settings=settings)[0]


def measure_networks(
    models: Sequence[ModelInput],
    target: Target,
    *,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[NetworkMeasurement]:
    """Measure several networks with their rounds interleaved, as the sweep runner does layers.

    Round *r* of every network runs before round *r + 1* of any, so each network's rounds
    are spread over the whole measurement and every network sees the same mix of the
    machine's fast and slow moments. On a shared machine whose speed drifts over seconds,
    this cuts the noise of one network's latency against another's: on the development VM,
    three back-to-back measurements of the 15 reference networks moved against each other
    by 3.2 % (RMS per network, the common speed factor removed; minimum of round medians)
    with 2 passes of 5 consecutive rounds per network, by 1.8 % with 10 interleaved rounds,
    and by 0.8 % with the median of those rounds (``total_us``).

    Every network's sessions stay open for the whole measurement: two per network (plain
    and profiled), each with its own copy of the weights. Each round starts with one
    untimed run, since the network before it left its own data in the caches.

    Args:
        models: The networks (paths, ModelProtos, loaded networks or their kernels).
        target: An ONNX Runtime target.
        input_shapes: Shapes of dynamic inputs (the same for every network).
        settings: How to time each network (rounds, runs per round, profiled runs).
        on_round: Called with the number of each round done (1, 2, ...), for progress.

    Raises:
        EstimateError: the target is not an ONNX Runtime target, or ORT cannot run a model.
    """
    settings = settings or NetworkMeasureSettings()
    networks = [_as_network(model, input_shapes) for model in models]
    if not is_onnxruntime_target(target):
        raise EstimateError(
            f"target {target.target_id} cannot run whole networks; measuring needs an "
            "ONNX Runtime target (cpu, cuda, ...)"
        )
    with tempfile.TemporaryDirectory(prefix="prmodel-measure-") as tmp:
        bound = []
        for index, network in enumerate(networks):
            plain = _BoundNetwork(network, target, settings=settings, profile_dir=None)
            profiled = None
            if settings.profiled_runs:
                profile_dir = Path(tmp) / str(index)  # ORT names profiles by the second
                profile_dir.mkdir()
                profiled = _BoundNetwork(
                    network, target, settings=settings, profile_dir=profile_dir
                )
            bound.append((plain, profiled))
        round_medians: list[list[float]] = [[] for _ in networks]
        all_runs: list[list[float]] = [[] for _ in networks]
        for number in range(1, settings.rounds + 1):
            for (plain, profiled), medians, runs in zip(
                bound, round_medians, all_runs, strict=True
            ):
                plain.run()
                times = [plain.timed_run() for _ in range(settings.runs)]
                medians.append(statistics.median(times))
                runs.extend(times)
                for _ in range(settings.profiled_runs if profiled else 0):
                    profiled.run()  # type: ignore[union-attr]
            if on_round is not None:
                on_round(number)
        kernels = [
            profiled.kernel_times() if profiled else _empty_kernels() for _, profiled in bound
        ]
    return [
        _measurement(network, target, settings, medians, runs, found)
        for network, medians, runs, found in zip(
            networks, round_medians, all_runs, kernels, strict=True
        )
    ]


def _measurement(
    network: Network,
    target: Target,
    settings: NetworkMeasureSettings,
    round_medians: Sequence[float],
    all_runs: Sequence[float],
    kernels: pd.DataFrame,
) -> NetworkMeasurement:
    p10, p90 = np.percentile(all_runs, [10, 90])
    return NetworkMeasurement(
        network=network.name,
        target_id=target.target_id,
        total_us=float(statistics.median(round_medians)),
        median_us=float(statistics.median(all_runs)),
        p10_us=float(p10),
        p90_us=float(p90),
        round_medians_us=tuple(float(m) for m in round_medians),
        runs=len(all_runs),
        kernels=kernels,
        settings=settings,
    )


class _BoundNetwork:
    """One session of a network with random inputs bound once (and optionally profiled)."""

    def __init__(
        self,
        network: Network,
        target: Any,
        *,
        settings: NetworkMeasureSettings,
        profile_dir: Path | None,
    ) -> None:
        import onnxruntime as ort

        options = _session_options(target, profile_dir)
        try:
            self.session = ort.InferenceSession(
                network.model_source(), options, providers=target.providers()
            )
        except Exception as exc:
            raise EstimateError(
                f"ONNX Runtime cannot load {network.source}: {str(exc).splitlines()[0]}"
            ) from None
        self.device = str(getattr(target, "bind_device", "cpu"))
        self.binding = self.session.io_binding()
        self._values = _bind(self.binding, network, self.device, settings.seed)
        self.profiled = profile_dir is not None
        self.warmup = settings.warmup
        for _ in range(settings.warmup):
            self.run()

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)
        if self.device != "cpu":
            self.binding.synchronize_outputs()

    def timed_run(self) -> float:
        start = time.perf_counter_ns()
        self.run()
        return (time.perf_counter_ns() - start) / 1e3

    def kernel_times(self) -> pd.DataFrame:
        path = Path(self.session.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        return _kernel_times(events, skip_runs=self.warmup)


def _session_options(target: Any, profile_dir: Path | None) -> Any:
    if profile_dir is None:
        return target.session_options(profile=False)
    try:
        return target.session_options(profile=True, profile_prefix=profile_dir / "profile")
    except TypeError:  # a target whose session_options takes no prefix
        options = target.session_options(profile=True)
        options.profile_file_prefix = str(profile_dir / "profile")
        return options


def _bind(binding: Any, network: Network, device: str, seed: int) -> list[Any]:
    """Bind seeded random inputs and preallocated outputs; returns what must stay alive."""
    import onnxruntime as ort
    from onnx import helper

    rng = np.random.default_rng(seed)
    values = []
    for name, shape in network.input_shapes.items():
        dtype = helper.tensor_dtype_to_np_dtype(network.dtypes.get(name, 1))
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal(shape).astype(dtype)
        else:
            array = np.zeros(shape, dtype=dtype)  # ids and indices: zeros are always valid
        value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
        binding.bind_ortvalue_input(name, value)
        values.append(value)
    for output in network.model.graph.output:
        out_shape = network.shapes.get(output.name)
        if out_shape is None:
            binding.bind_output(output.name, device)
            continue
        dtype = helper.tensor_dtype_to_np_dtype(network.dtypes.get(output.name, 1))
        value = ort.OrtValue.ortvalue_from_shape_and_type(list(out_shape), dtype, device, 0)
        binding.bind_ortvalue_output(output.name, value)
        values.append(value)
    return values


def _kernel_times(events: Sequence[Mapping[str, Any]], *, skip_runs: int) -> pd.DataFrame:
    """Median per-run time of every kernel in a profiler trace, warm-up runs skipped."""
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[skip_runs:]
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(runs))
    info: dict[str, tuple[str, str, str]] = {}
    order: list[str] = []
    starts = [start for start, _ in runs]
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        index = int(np.searchsorted(starts, int(event["ts"]), side="right")) - 1
        if index < 0 or int(event["ts"]) > runs[index][1]:
            continue
        node = name.removesuffix("_kernel_time")
        if node not in info:
            args = event.get("args", {})
            info[node] = (
                str(args.get("op_name", "")),
                str(args.get("provider", "")),
                _shape_text(args.get("output_type_shape")),
            )
            order.append(node)
        per_run[node][index] += float(event["dur"])
    rows = [
        {
            "node": node,
            "op": info[node][0],
            "measured_us": float(statistics.median(per_run[node])) if runs else float("nan"),
            "provider": info[node][1],
            "output_shape": info[node][2],
        }
        for node in order
    ]
    return pd.DataFrame(rows, columns=list(KERNEL_TIME_COLUMNS))


def _shape_text(shapes: Any) -> str:
    """``1x16x56x56`` from a profiler's ``[{"float": [1, 16, 56, 56]}]``."""
    if not shapes or not isinstance(shapes, list) or not isinstance(shapes[0], dict):
        return ""
    dims: list[int] = next(iter(shapes[0].values()), [])
    return "x".join(str(d) for d in dims)


def _empty_kernels() -> pd.DataFrame:
    return pd.DataFrame(columns=list(KERNEL_TIME_COLUMNS))


# -- estimate vs measurement ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Comparison:
    """An estimate next to a measurement of the same network on the same target.

    ``layers`` is the estimate's table with ``measured_us`` (profiled, NaN where no kernel
    matched) and ``error_pct`` (predicted vs measured, per kernel).
    """

    estimate: NetworkEstimate
    measurement: NetworkMeasurement
    layers: pd.DataFrame
    unmatched: tuple[str, ...]

    @property
    def total_error_pct(self) -> float:
        """Error of the estimate's total against the measured latency, in percent."""
        measured = self.measurement.total_us
        return 100 * (self.estimate.total_us - measured) / measured

    @property
    def sum_error_pct(self) -> float:
        """Error of the plain (uncalibrated) sum against the measured latency, in percent."""
        measured = self.measurement.total_us
        return 100 * (self.estimate.sum_us - measured) / measured

    def layer_errors(self, *, min_measured_us: float = 0.0) -> npt.NDArray[np.float64]:
        """Per-kernel relative errors (percent) of modelled kernels with a measurement."""
        rows = self.layers[
            (self.layers["status"] == "modelled")
            & self.layers["measured_us"].notna()
            & (self.layers["measured_us"] > min_measured_us)
        ]
        return rows["error_pct"].to_numpy(dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        errors = self.layer_errors()
        return {
            **self.estimate.to_dict(),
            "kernels": _records(self.layers),
            "measured": {
                key: value
                for key, value in self.measurement.to_dict().items()
                if key not in ("kernels", "network", "target_id")
            },
            "total_error_pct": self.total_error_pct,
            "sum_error_pct": self.sum_error_pct,
            "layer_mape": float(np.mean(np.abs(errors))) if len(errors) else None,
            "unmatched_kernels": list(self.unmatched),
        }


def compare(estimate: NetworkEstimate, measurement: NetworkMeasurement) -> Comparison:
    """Join profiled kernel times to the estimate's kernels.

    ORT names the nodes it creates (``ReorderOutput_token_12``, nameless inlined nodes)
    differently in every session, and even orders them differently, so those are paired by
    op and output shape instead (equal ops of equal shape cost the same), then by op alone.
    """
    measured = measurement.kernels.reset_index(drop=True)
    layers = estimate.layers.copy()
    matched: list[int | None] = [None] * len(layers)
    free = list(range(len(measured)))
    keys: tuple[Callable[[str, str, str], tuple[str, ...]], ...] = (
        lambda node, op, shape: (node,),
        lambda node, op, shape: (op, shape),
        lambda node, op, shape: (op,),
    )
    for pass_index, key in enumerate(keys):
        waiting: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for j in free:
            row = measured.iloc[j]
            if pass_index == 0 and _generated_name(str(row["node"]), str(row["op"])):
                continue
            waiting[key(str(row["node"]), str(row["op"]), str(row["output_shape"]))].append(j)
        for i in range(len(layers)):
            if matched[i] is not None:
                continue
            node, op = str(layers["node"].iloc[i]), str(layers["op"].iloc[i]).rpartition(".")[2]
            candidates = waiting.get(key(node, op, str(layers["output_shape"].iloc[i])))
            if candidates:
                matched[i] = candidates.pop(0)
        taken = {j for j in matched if j is not None}
        free = [j for j in free if j not in taken]
    times = measured["measured_us"].to_numpy(dtype=np.float64)
    layers["measured_us"] = [times[j] if j is not None else np.nan for j in matched]
    comparable = (layers["measured_us"] > 0) & (layers["status"] != "free")
    layers["error_pct"] = (
        100 * (layers["predicted_us"] - layers["measured_us"]) / layers["measured_us"]
    ).where(comparable)
    unmatched = tuple(str(measured["node"].iloc[j]) for j in free)
    return Comparison(estimate, measurement, layers, unmatched=unmatched)


def _generated_name(node: str, op: str) -> bool:
    """Whether ORT made up ``node``'s name (it differs between sessions)."""
    return bool(re.search(r"_token_\d+$", node)) or bool(
        re.fullmatch(rf"{re.escape(op)}_\d+", node)
    )


# -- calibration --------------------------------------------------------------------------------


def calibrate(
    networks: Sequence[ModelInput],
    target: Target,
    models: Mapping[LayerKind, LayerModel],
    *,
    workspace: Workspace | None = None,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_network: Callable[[Comparison], None] | None = None,
) -> Calibration:
    """Measure networks, compare with uncalibrated estimates and fit the target's calibration.

    The networks are measured together, their rounds interleaved (:func:`measure_networks`),
    so that the machine's drift moves them alike and the fit sees their differences.

    Args:
        networks: The calibration networks (paths or ModelProtos).
        target: An ONNX Runtime target (the networks are run on it).
        models: The trained layer models of the target.
        workspace: Where to save ``calibration.json`` (not saved if None).
        input_shapes: Input shapes for networks with dynamic inputs.
        settings: How to measure each network.
        on_network: Called with each network's comparison (progress, tables).

    Raises:
        EstimateError: a network cannot be read or run.
        CalibrationError: nothing to fit.
    """
    estimator = Estimator(target, models, calibration=None, strict=False)
    loaded = [_as_network(model, input_shapes) for model in networks]
    measurements = measure_networks(loaded, target, settings=settings)
    samples = []
    for network, measurement in zip(loaded, measurements, strict=True):
        comparison = compare(estimator.predict(network), measurement)
        if on_network is not None:
            on_network(comparison)
        samples.append(
            CalibrationSample(
                name=network.name,
                measured_us=comparison.measurement.total_us,
                kernels=comparison.layers,
            )
        )
    settings = settings or NetworkMeasureSettings()
    calibration = fit_calibration(
        samples,
        target_id=target.target_id,
        weight_cap_bytes=last_level_cache_bytes(target),
        core_cache_bytes=core_cache_bytes(target),
        notes={
            "measure_settings": asdict(settings),
            "networks": [s.name for s in samples],
            "models": model_digests(models),
        },
    )
    if workspace is not None:
        calibration.save(calibration_path(workspace, target.target_id))
    return calibration


def last_level_cache_bytes(target: Target) -> int:
    """The target's last-level cache in bytes, from its fingerprint (default 32 MiB)."""
    return _cache_bytes(target, ("l3_kib", "l2_kib"), DEFAULT_WEIGHT_CAP_BYTES)


def core_cache_bytes(target: Target) -> int:
    """The target's per-core (L2) cache in bytes, from its fingerprint (default 2 MiB)."""
    return _cache_bytes(target, ("l2_kib",), DEFAULT_CORE_CACHE_BYTES)


def _cache_bytes(target: Target, keys: tuple[str, ...], default: int) -> int:
    """The first of the fingerprint's cache sizes ``keys`` (KiB) that is known, in bytes."""
    try:
        fingerprint = target.fingerprint()
    except Exception:  # a fingerprint is informative here, never a reason to fail
        return default
    for key in keys:
        value = fingerprint.get(key)
        if isinstance(value, int) and value > 0:
            return value * 1024
    return default


__all__ = [
    "ESTIMATE_COLUMNS",
    "KERNEL_TIME_COLUMNS",
    "PROXY_KINDS",
    "Comparison",
    "EstimateError",
    "Estimator",
    "LayerModel",
    "NetworkEstimate",
    "NetworkMeasureSettings",
    "NetworkMeasurement",
    "calibrate",
    "compare",
    "core_cache_bytes",
    "last_level_cache_bytes",
    "measure_network",
    "measure_networks",
    "model_digests",
    "network_layers",
]
