"""Whole-network runs: measure networks, compare them with estimates, fit the calibration.

:func:`measure_networks` (and :func:`measure_network` for one) runs networks on any target
that can (a :class:`~prmodel.targets.base.NetworkRunner`, e.g. ONNX Runtime: warm-up,
interleaved rounds of plain and profiled runs) and returns their latencies and per-kernel
profiled times; :func:`~prmodel.estimate.compare.compare` joins them to an estimate, and
:func:`estimate_network` does it all for one network (``prmodel estimate --measure``).
:func:`calibrate` measures several networks, compares them with uncalibrated estimates and
fits the target's :class:`~prmodel.estimate.calibration.Calibration`
(:func:`calibrate_workspace` with the models saved in a workspace: ``prmodel calibrate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from prmodel.estimate.calibration import (
    Calibration,
    CalibrationSample,
    calibration_path,
    core_cache_bytes,
    fit_calibration,
    last_level_cache_bytes,
)
from prmodel.estimate.compare import Comparison, compare
from prmodel.estimate.estimator import Estimator, LayerModel, NetworkEstimate, model_digests
from prmodel.estimate.kernels import (
    EstimateError,
    InputShapes,
    ModelInput,
    as_network,
    network_kernels,
)
from prmodel.layers import LayerKind
from prmodel.networks import NetworkMeasurement, NetworkMeasureSettings, load_network
from prmodel.targets import get_target
from prmodel.targets.base import NetworkRunner, Target
from prmodel.workspace import Workspace


def measure_network(
    model: ModelInput,
    target: Target,
    *,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_round: Callable[[int], None] | None = None,
) -> NetworkMeasurement:
    """Run a whole network on a target and time it, with per-kernel profiles.

    The target runs the network as it ran its layers (for ONNX Runtime: the target's own
    session options and providers). To measure several networks, :func:`measure_networks`
    interleaves their rounds. ``on_round`` is called with the number of each round done.

    Raises:
        EstimateError: the target cannot run whole networks, or cannot run the model.
    """
    return measure_networks(
        [model], target, input_shapes=input_shapes, settings=settings, on_round=on_round
    )[0]


def measure_networks(
    models: Sequence[ModelInput],
    target: Target,
    *,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[NetworkMeasurement]:
    """Measure several networks with their rounds interleaved, as the sweep runner does layers.

    Round *r* of every network runs before round *r + 1* of any, so every network sees the
    same mix of the machine's fast and slow moments (see
    :func:`prmodel.targets.onnxruntime.networks.measure_networks` for the figures).

    Args:
        models: The networks (paths, ModelProtos, loaded networks or their kernels).
        target: A target that can run whole networks (ONNX Runtime: cpu, cuda, ...).
        input_shapes: Shapes of dynamic inputs (the same for every network).
        settings: How to time each network (rounds, runs per round, profiled runs).
        on_round: Called with the number of each round done (1, 2, ...), for progress.

    Returns:
        One measurement per network, in the order given.

    Raises:
        EstimateError: the target cannot run whole networks, or cannot run a model.
    """
    networks = [as_network(model, input_shapes) for model in models]
    if not isinstance(target, NetworkRunner):
        raise EstimateError(
            f"target {target.target_id} cannot run whole networks; measuring needs an "
            "ONNX Runtime target (cpu, cuda, ...)"
        )
    return target.measure_networks(
        networks, settings or NetworkMeasureSettings(), on_round=on_round
    )


def estimate_network(
    model: str | Path,
    target: Target | str = "cpu",
    *,
    workspace: Workspace | str | Path = ".",
    input_shapes: InputShapes = None,
    strict: bool = True,
    partial: bool = False,
    measure: NetworkMeasureSettings | None = None,
    from_other_machine: str | None = None,
    on_round: Callable[[int], None] | None = None,
) -> tuple[NetworkEstimate, Comparison | None]:
    """Estimate a network with a workspace's trained models; optionally measure and compare it.

    The network's kernels are mapped while the models load: ONNX Runtime's optimizer
    releases the GIL, and loading the models is mostly imports.

    Args:
        model: The ONNX file.
        target: The target (or its spec) whose trained models and calibration are used.
        workspace: The workspace holding the trained models.
        input_shapes: Shapes of dynamic inputs.
        strict: Refuse compute-heavy ops that cannot be mapped (else list them unmodelled).
        partial: Return an estimate with unpriced kernels (a lower bound) instead of raising.
        from_other_machine: Use the models (and calibration) of this target id, trained on
            another machine, on purpose; the estimate's first warning says so.
        measure: Also run the network on the target with these settings and compare.
        on_round: Called with the number of each measuring round done, for progress.

    Returns:
        The estimate, and its comparison with the measurement where ``measure`` was given.

    Raises:
        EstimateError: the model cannot be read, mapped or run, or the workspace has no
            trained models for the target.
        PartialEstimateError: some kernels have no model (unless ``partial``).
    """
    network = load_network(model, input_shapes=input_shapes)
    resolved = get_target(target) if isinstance(target, str) else target
    with ThreadPoolExecutor(max_workers=1) as pool:
        kernels = pool.submit(network_kernels, network, resolved, strict=strict)
        estimator = Estimator.load(
            workspace, resolved, partial=partial, from_other_machine=from_other_machine
        )
        estimate = estimator.predict(kernels.result())
    if measure is None:
        return estimate, None
    measurement = measure_network(network, estimator.target, settings=measure, on_round=on_round)
    return estimate, compare(estimate, measurement)


def calibrate(
    networks: Sequence[ModelInput],
    target: Target,
    models: Mapping[LayerKind, LayerModel],
    *,
    workspace: Workspace | None = None,
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_network: Callable[[Comparison], None] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> Calibration:
    """Measure networks, compare with uncalibrated estimates and fit the target's calibration.

    The networks are measured together, their rounds interleaved (:func:`measure_networks`),
    so that the machine's drift moves them alike and the fit sees their differences.

    Args:
        networks: The calibration networks (paths or ModelProtos).
        target: A target that can run whole networks (the networks are run on it).
        models: The trained layer models of the target.
        workspace: Where to save ``calibration.json`` (not saved if None).
        input_shapes: Input shapes for networks with dynamic inputs.
        settings: How to measure each network.
        on_network: Called with each network's comparison (progress, tables).
        on_round: Called with the number of each measuring round done (1, 2, ...), for
            progress; every round measures every network.

    Returns:
        The fitted calibration (also saved where ``workspace`` is given).

    Raises:
        EstimateError: a network cannot be read or run.
        CalibrationError: nothing to fit.
    """
    # Partial on purpose: the fit learns the cost of the kernels that no model prices.
    estimator = Estimator(target, models, calibration=None, strict=False, partial=True)
    loaded = [as_network(model, input_shapes) for model in networks]
    measurements = measure_networks(loaded, target, settings=settings, on_round=on_round)
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
            "fingerprint": target.fingerprint(),  # checked when the calibration is loaded
        },
    )
    if workspace is not None:
        calibration.save(calibration_path(workspace, target.target_id))
    return calibration


def calibrate_workspace(
    networks: Sequence[ModelInput],
    target: Target | str,
    *,
    workspace: Workspace | str | Path = ".",
    input_shapes: InputShapes = None,
    settings: NetworkMeasureSettings | None = None,
    on_network: Callable[[Comparison], None] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> Calibration:
    """:func:`calibrate` with the target's trained models from ``workspace``, saved there.

    Raises:
        EstimateError: no trained models for the target, or a network cannot be read or run.
        CalibrationError: nothing to fit.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
    loaded = Estimator.load(ws, target, calibrated=False)
    return calibrate(
        networks,
        loaded.target,
        loaded.models,
        workspace=ws,
        input_shapes=input_shapes,
        settings=settings,
        on_network=on_network,
        on_round=on_round,
    )


__all__ = [
    "calibrate",
    "calibrate_workspace",
    "estimate_network",
    "measure_network",
    "measure_networks",
]
