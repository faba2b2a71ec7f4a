"""Network latency estimates from trained layer models.

:class:`Estimator` maps an ONNX model to the kernels the target runs
(:mod:`prmodel.estimate.kernels`), predicts every mapped kernel with the trained model of its
kind (one vectorised call per kind), gives unmodelled kernels a fallback cost, and sums them,
corrected by the target's :class:`~prmodel.estimate.calibration.Calibration` where one was
fitted.

Fallback for unmodelled kernels (Concat, Softmax, layout reorders, kinds without a trained
model or refused by the target), in this order, named in each row's ``source``:

1. ``bandwidth fit``: the calibration's per-op ``fixed + bytes moved`` fit, learned from
   the profiled times of such kernels in measured networks;
2. ``elementwise proxy``: the trained model of an element-wise kind (relu, else add or mul)
   on the kernel's largest tensor, scaled by the ratio of bytes moved: such ops are
   memory-bound, and the element-wise models have learned this target's bandwidth;
3. ``unpriced``: nothing prices the kernel. It counts 0 µs in the sums, so the total is a
   lower bound: :attr:`NetworkEstimate.partial` is true, the estimate says "at least", its
   ``unpriced_*`` fields give the share of kernels and of bytes moved left out, and its
   first warning names the kinds and ops without a model. An :class:`Estimator` refuses
   such an estimate (:class:`PartialEstimateError`) unless it was made with
   ``partial=True``.

Measuring a network (:func:`prmodel.workflows.calibrate.measure_network`) and comparing it
with an estimate (:func:`prmodel.estimate.compare.compare`) live elsewhere: this module
never runs a network.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.estimate.calibration import Calibration, load_calibration
from prmodel.estimate.kernels import (
    EstimateError,
    InputShapes,
    Kernel,
    ModelInput,
    NetworkKernels,
    as_nchw,
    as_network,
    network_kernels,
)
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import LAYER_COLUMNS
from prmodel.networks import json_records
from prmodel.targets import get_target
from prmodel.targets.base import Target
from prmodel.train.artifacts import explain_missing_models, load_models, model_folder_notes
from prmodel.workspace import Workspace

PROXY_KINDS: tuple[LayerKind, ...] = (LayerKind.RELU, LayerKind.ADD, LayerKind.MUL)
"""Element-wise kinds whose models price unmodelled memory-bound kernels, in preference."""

UNPRICED = "unpriced"
"""The ``source`` of a kernel that nothing prices (it counts 0 µs: the total is a lower bound)."""

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
``elementwise proxy``, ``unpriced``: nothing prices it, 0 in the sums, ``free``);
``output_shape`` the first output as ``1x64x56x56``
(padded channels inside NCHWc); ``kind`` and the other LayerConfig columns
describe the mapped layer (empty where there is none); ``share_pct`` is the share of the
sum of predictions; ``calibrated_us`` the prediction with the per-kernel calibration terms."""


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
    def unpriced(self) -> pd.DataFrame:
        """The kernels nothing prices (``source == "unpriced"``): 0 µs in every sum."""
        return self.layers[self.layers["source"] == UNPRICED]

    @property
    def unpriced_kernels(self) -> int:
        """How many kernels nothing prices."""
        return len(self.unpriced)

    @property
    def partial(self) -> bool:
        """Whether some kernel is unpriced, so that ``total_us`` is only a lower bound."""
        return self.unpriced_kernels > 0

    @property
    def unpriced_count_share(self) -> float:
        """Share (0-1) of the network's kernels (free ones aside) that nothing prices."""
        timed = int((self.layers["status"] != "free").sum())
        return self.unpriced_kernels / timed if timed else 0.0

    @property
    def unpriced_bytes_share(self) -> float:
        """Share (0-1) of the bytes the network's kernels move that unpriced kernels move.

        Their time is unknown, so no share of the time can be given; most of them are
        memory-bound, for which the bytes moved are the honest measure of what is missing.
        """
        moved = self.layers.loc[self.layers["status"] != "free", "bytes_moved"].sum()
        return float(self.unpriced["bytes_moved"].sum() / moved) if moved > 0 else 0.0

    @property
    def missing_models(self) -> dict[str, int]:
        """What lacks a model, with its number of unpriced kernels: layer kinds without a
        trained model (``maxpool``; ``sigmoid (op QuickGelu)`` where the op is not the kind's
        own), kinds the target refuses (``conv, refused by the target``) and ops without a
        layer kind (``op Concat``)."""
        found: dict[str, int] = {}
        for _, row in self.unpriced.iterrows():
            found[_missing_label(row)] = found.get(_missing_label(row), 0) + 1
        return found

    @property
    def partial_note(self) -> str:
        """One sentence on what the estimate leaves out ("" when nothing is unpriced)."""
        if not self.partial:
            return ""
        missing = ", ".join(
            f"{name} in {count} kernel{'s' if count > 1 else ''}"
            for name, count in self.missing_models.items()
        )
        return (
            f"{self.network}: {self.unpriced_kernels} of "
            f"{int((self.layers['status'] != 'free').sum())} kernels "
            f"({_percent(self.unpriced_count_share)} of the kernels, "
            f"{_percent(self.unpriced_bytes_share)} of the bytes moved) have no model and "
            f"count 0 µs, so the estimate is at least {self.total_us:,.1f} µs: no model for "
            f"{missing}"
        )

    @property
    def total_note(self) -> str:
        """How ``total_us`` was obtained, in words."""
        bound = "at least: unpriced kernels count 0; " if self.partial else ""
        if self.calibration is None:
            return f"{bound}plain sum of kernel predictions (no calibration fitted for this target)"
        return f"{bound}calibrated: {self.calibration.formula}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary with every kernel row (unpriced kernels' times null)."""
        kernels = json_records(self.layers)
        for record in kernels:
            if record["source"] == UNPRICED:
                record.update(predicted_us=None, calibrated_us=None, share_pct=None)
        return {
            "network": self.network,
            "target_id": self.target_id,
            "runtime": self.runtime,
            "total_us": self.total_us,
            "total_is_lower_bound": self.partial,
            "sum_us": self.sum_us,
            "calibrated": self.calibrated,
            "total_note": self.total_note,
            "unmodelled_us": self.unmodelled_us,
            "unmodelled_share": self.unmodelled_share,
            "partial": self.partial,
            "unpriced_kernels": self.unpriced_kernels,
            "unpriced_count_share": self.unpriced_count_share,
            "unpriced_bytes_share": self.unpriced_bytes_share,
            "missing_models": self.missing_models,
            "kernels": kernels,
            "warnings": list(self.warnings),
        }


class PartialEstimateError(EstimateError):
    """Some kernels of a network have no model: the estimate would only be a lower bound.

    ``estimate`` holds that partial estimate, for a caller that wants it anyway.
    """

    def __init__(self, estimate: NetworkEstimate, *, notes: Sequence[str] = ()) -> None:
        self.estimate = estimate
        also = f" (also: {'; '.join(notes)})" if notes else ""
        super().__init__(
            f"{estimate.partial_note}{also}; train those kinds (an element-wise model such as "
            "relu also prices reorders, Concat and other memory-bound ops), fit a calibration "
            "(prmodel calibrate), or ask for a partial estimate (--partial; "
            "Estimator(..., partial=True))"
        )


def _percent(share: float) -> str:
    """A share as a percentage that never rounds a partial share to 0 % or 100 %."""
    if 0 < share < 0.01:
        return "under 1 %"
    return "over 99 %" if 0.99 < share < 1 else f"{100 * share:.0f} %"


def _missing_label(row: pd.Series) -> str:
    kind, op = row["kind"], str(row["op"]).rpartition(".")[2]
    if not isinstance(kind, str) or not kind:
        return f"op {op}"
    # The op too where it is not the kind's own (QuickGelu as sigmoid, a scaling Mul as relu).
    own = op.lower().replace("average", "avg") == kind  # GlobalAveragePool is globalavgpool's
    label = kind if own else f"{kind} (op {op})"
    return f"{label}, refused by the target" if "target refuses" in row["note"] else label


class Estimator:
    """Estimates network latency on one target from its trained layer models.

    ``__init__`` only stores its arguments; :meth:`load` reads models and calibration from
    a workspace.

    Args:
        target: The target the models were trained for.
        models: Trained models by layer kind (anything with ``predict(layers)`` in µs).
        calibration: Network-level correction; None for the plain sum.
        strict: Refuse compute-heavy ops that cannot be mapped (else list them unmodelled).
        partial: Return estimates with unpriced kernels (a lower bound, marked
            :attr:`NetworkEstimate.partial`) instead of raising :class:`PartialEstimateError`.
        notes: Warnings every estimate carries (e.g. model folders that were skipped).
    """

    def __init__(
        self,
        target: Target,
        models: Mapping[LayerKind, LayerModel],
        *,
        calibration: Calibration | None = None,
        strict: bool = True,
        partial: bool = False,
        notes: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.models = models
        self.calibration = calibration
        self.strict = strict
        self.partial = partial
        self.notes = tuple(notes)

    @classmethod
    def load(
        cls,
        workspace: Workspace | str | Path = ".",
        target: Target | str = "cpu",
        *,
        calibrated: bool = True,
        strict: bool = True,
        partial: bool = False,
        from_other_machine: str | None = None,
    ) -> Estimator:
        """The estimator for ``target`` with the models (and calibration) saved in a workspace.

        Models and calibration must have been made on this machine
        (:mod:`prmodel.train.card_checks`); ``from_other_machine`` uses those of another
        target id on purpose, and every estimate then says so first among its warnings.

        Raises:
            EstimateError: the workspace has no trained models for the target.
            ModelError: a saved model is broken, tampered or mismatched.
            OtherMachineError: models or calibration of another machine, not on purpose.
            OldTargetIdError: the models are under the target's old id.
        """
        ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
        resolved = get_target(target) if isinstance(target, str) else target
        models_id = from_other_machine or resolved.target_id
        on_purpose = from_other_machine is not None
        running = resolved.fingerprint()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            models = load_models(ws, models_id, running=running, on_purpose=on_purpose)
            if not models:
                explained = None if on_purpose else explain_missing_models(ws, resolved)
                raise explained or EstimateError(
                    f"no trained models for target {models_id} in {ws.models_dir}; "
                    f"train them first (prmodel train --target ...)"
                )
            calibration = None
            if calibrated:
                calibration = load_calibration(
                    ws, models_id, running=running, on_purpose=on_purpose
                )
        return cls(
            resolved,
            models,
            calibration=calibration,
            strict=strict,
            partial=partial,
            notes=[*map(str, (w.message for w in caught)), *model_folder_notes(ws, models_id)],
        )

    def kernels(self, model: ModelInput, *, input_shapes: InputShapes = None) -> NetworkKernels:
        """The kernels the target runs for ``model``, mapped to layers (no prediction)."""
        if isinstance(model, NetworkKernels):
            return model
        network = as_network(model, input_shapes)
        return network_kernels(network, self.target, strict=self.strict)

    def predict(self, model: ModelInput, *, input_shapes: InputShapes = None) -> NetworkEstimate:
        """Estimate the latency of ``model``.

        Args:
            model: A path, a ModelProto, a loaded :class:`~prmodel.networks.Network`, or its
                kernels from :func:`~prmodel.estimate.kernels.network_kernels` (already mapped).
            input_shapes: Shapes of dynamic inputs
                (see :func:`~prmodel.networks.load_network`).

        Raises:
            EstimateError: the model cannot be read or mapped
                (see :func:`~prmodel.networks.load_network`).
            PartialEstimateError: some kernels have no model (unless ``partial``).
        """
        found = self.kernels(model, input_shapes=input_shapes)
        kernels = found.kernels
        status, notes = self._classify(kernels)
        predicted = np.zeros(len(kernels))
        source = ["free" if s == "free" else UNPRICED for s in status]
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
            beyond = self.calibration.beyond_networks(sum_us)
            if beyond is not None:
                messages.append(UserWarning(beyond))
        estimate = NetworkEstimate(
            network=found.network.name,
            target_id=self.target.target_id,
            runtime=found.runtime,
            layers=frame,
            sum_us=sum_us,
            total_us=total,
            calibration=self.calibration,
            warnings=tuple(
                dict.fromkeys([*self.notes, *self._stale_calibration(), *map(str, messages)])
            ),
        )
        if not estimate.partial:
            return estimate
        if not self.partial:
            raise PartialEstimateError(estimate, notes=self.notes)
        # The loudest warning comes first: the total leaves kernels out.
        loud = f"partial estimate: {estimate.partial_note}"
        return replace(estimate, warnings=(loud, *estimate.warnings))

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
            if kernels[index].compute_bound:
                continue  # arithmetic, not memory traffic: no element-wise op prices it
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


def mapped_layers(
    models: Sequence[ModelInput], target: Target, *, input_shapes: InputShapes = None
) -> dict[str, list[LayerConfig]]:
    """The layers the estimator maps each network to, in execution order, by network name.

    The layers are those the estimator predicts for ``target`` (fused activations and
    residual adds included); kernels without a layer (reorders, Concat, ...) are left out.
    Networks with equal names are told apart by a ``#2``, ``#3`` suffix.

    Raises:
        EstimateError: a model cannot be read or mapped
            (see :func:`~prmodel.networks.load_network`).
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


__all__ = [
    "ESTIMATE_COLUMNS",
    "PROXY_KINDS",
    "UNPRICED",
    "EstimateError",
    "Estimator",
    "LayerModel",
    "NetworkEstimate",
    "PartialEstimateError",
    "mapped_layers",
    "model_digests",
]
