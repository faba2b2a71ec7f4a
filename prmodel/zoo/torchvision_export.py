"""torchvision's reference architectures exported as ONNX files (the optional ``zoo`` extra).

:func:`export_network` and :func:`export_all` write torchvision's reference architectures
as ONNX files with random weights (nothing is downloaded). They need torch and torchvision,
imported only when called. The torch-free builders of :mod:`prmodel.zoo` make the same
architectures without them; this exporter stays for comparisons with the real export.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

from prmodel.zoo.builder import OPSET, ZooError

ZOO_INSTALL_HINT = "pip install torch==2.14.1 torchvision==0.29.1"

REFERENCE_NETWORKS: tuple[str, ...] = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "vgg11",
    "vgg16",
    "squeezenet1_1",
    "shufflenet_v2_x1_0",
    "densenet121",
    "googlenet",
    "regnet_y_400mf",
    "mnasnet1_0",
    "convnext_tiny",
)
"""torchvision model names that :func:`export_network` knows (all at 1x3xSxS)."""


@dataclass(frozen=True)
class ExportedNetwork:
    """The outcome of exporting one reference network (``error`` set where it failed)."""

    name: str
    path: Path
    size_bytes: int = 0
    nodes: int = 0
    parameters: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _import_torchvision() -> tuple[ModuleType, ModuleType]:
    try:  # optional heavy dependencies: pip install 'prmodel[zoo]'
        import torch
        import torchvision.models
    except ImportError:
        raise ZooError(
            f"exporting reference networks needs torch and torchvision; "
            f"install the zoo extra: {ZOO_INSTALL_HINT}"
        ) from None
    return torch, torchvision.models


def export_network(
    name: str,
    path: str | Path,
    *,
    input_size: int = 224,
    seed: int = 0,
    dynamo: bool = False,
) -> ExportedNetwork:
    """Write torchvision's ``name`` with random weights as an ONNX file (opset 17).

    Weights are seeded random (``weights=None``): nothing is downloaded, and latency does not
    depend on weight values. Constant folding is on, so batch-norm is folded into the convs
    as in any deployed export. The classic TorchScript exporter is used unless ``dynamo``.

    Args:
        name: One of :data:`REFERENCE_NETWORKS`.
        path: The ``.onnx`` file to write (parent folders are created).
        input_size: Height and width of the static ``1 x 3 x S x S`` input.
        seed: Seed of the random weights.
        dynamo: Use torch's ``torch.export``-based exporter instead of TorchScript.

    Returns:
        What was written: file size, node count, parameter count and op histogram.

    Raises:
        ZooError: unknown name, torch/torchvision missing, or the export failed.
    """
    if name not in REFERENCE_NETWORKS:
        raise ZooError(
            f"unknown reference network {name!r} (known: {', '.join(REFERENCE_NETWORKS)})"
        )
    torch, models = _import_torchvision()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        _export(torch, models, name, target, input_size=input_size, seed=seed, dynamo=dynamo)
        model = onnx.load(target)
        onnx.checker.check_model(model)
    except Exception as exc:  # torch raises many unrelated types; keep the message
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"exporting {name} to {target} failed: {message}") from exc
    return _describe(name, target, model, seconds=time.perf_counter() - started)


def _export(
    torch: ModuleType,
    models: ModuleType,
    name: str,
    target: Path,
    *,
    input_size: int,
    seed: int,
    dynamo: bool,
) -> None:
    torch.manual_seed(seed)
    options: dict[str, object] = {"weights": None}
    if name == "googlenet":
        # The auxiliary classifiers only run in training; without them the graph is the
        # inference network, and torchvision skips its slow scipy-based initialisation.
        options.update(aux_logits=False, init_weights=False)
    network = getattr(models, name)(**options).eval()
    example = torch.randn(1, 3, input_size, input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            network,
            (example,),
            str(target),
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["output"],
            dynamo=dynamo,
            **({"external_data": False} if dynamo else {}),
        )


def _describe(name: str, path: Path, model: onnx.ModelProto, *, seconds: float) -> ExportedNetwork:
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return ExportedNetwork(
        name=name,
        path=path,
        size_bytes=path.stat().st_size,
        nodes=len(model.graph.node),
        parameters=parameters,
        op_counts=dict(sorted(ops.items())),
        seconds=round(seconds, 3),
    )


def export_all(
    folder: str | Path,
    *,
    names: Iterable[str] | None = None,
    input_size: int = 224,
    seed: int = 0,
    dynamo: bool = False,
) -> list[ExportedNetwork]:
    """Export several reference networks into ``folder`` as ``<name>.onnx``.

    A network whose export fails is reported (``error`` set) and the others still run.

    Args:
        folder: Output folder (created if missing).
        names: Which networks; all of :data:`REFERENCE_NETWORKS` when None.
        input_size: Height and width of the static input.
        seed: Seed of the random weights.
        dynamo: Use torch's ``torch.export``-based exporter instead of TorchScript.

    Raises:
        ZooError: torch/torchvision missing, or an unknown name (checked before exporting).
    """
    chosen = list(REFERENCE_NETWORKS if names is None else names)
    unknown = [n for n in chosen if n not in REFERENCE_NETWORKS]
    if unknown:
        raise ZooError(
            f"unknown reference network {unknown[0]!r} (known: {', '.join(REFERENCE_NETWORKS)})"
        )
    _import_torchvision()
    results = []
    for name in chosen:
        path = Path(folder) / f"{name}.onnx"
        try:
            result = export_network(name, path, input_size=input_size, seed=seed, dynamo=dynamo)
        except ZooError as exc:
            result = ExportedNetwork(name=name, path=path, error=str(exc))
        results.append(result)
    return results
