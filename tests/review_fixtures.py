"""A workspace with training, calibration and estimate runs in MLflow, built in seconds.

:func:`build_reviewed` makes it (``conftest.py`` shares one per session as the fixture
``reviewed``: a new MLflow SQLite store alone costs seconds).

Training is the analytic target's (exact latencies, ridge and XGBoost with default
hyper-parameters). Calibration needs a target that runs whole networks:
:class:`NetworkAnalyticTarget` is the analytic target that also "measures" networks, each
kernel taking its analytic time times a seeded factor, the network its kernel sum times 1.08
plus 40 µs, so the calibration's coefficients and errors are known in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
import pytest

from prmodel.estimate.estimator import Estimator
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_to_frame
from prmodel.networks import Network, NetworkMeasurement, NetworkMeasureSettings
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import fingerprint_hash
from prmodel.train.settings import TrainSettings
from prmodel.train.tracking import log_training
from prmodel.train.training import TrainingReport, train_models
from prmodel.workflows.calibrate import estimate_network
from prmodel.workflows.review import TrackedCalibration, calibrate_and_log, log_estimate
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg

NETWORK_SCALE = 1.08
NETWORK_OFFSET_US = 40.0
QUICK = NetworkMeasureSettings(warmup=0, rounds=2, runs=3, profiled_runs=1)


@dataclass(frozen=True)
class _Exact:
    target: AnalyticTarget

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        return np.array([self.target.latency_us(layer) for layer in layers], dtype=np.float64)


@dataclass(frozen=True)
class NetworkAnalyticTarget(AnalyticTarget):
    """The analytic target (same id and fingerprint) that can also run whole networks."""

    def measure_networks(
        self,
        networks: Sequence[Network],
        settings: NetworkMeasureSettings | None = None,
        *,
        on_round: Callable[[int], None] | None = None,
    ) -> list[NetworkMeasurement]:
        settings = settings or NetworkMeasureSettings()
        truth = Estimator(self, {kind: _Exact(self) for kind in LayerKind}, strict=False)
        measured = [
            self._measure(truth, network, index, settings) for index, network in enumerate(networks)
        ]
        for done in range(settings.rounds):
            if on_round is not None:
                on_round(done + 1)
        return measured

    def _measure(
        self, truth: Estimator, network: Network, seed: int, settings: NetworkMeasureSettings
    ) -> NetworkMeasurement:
        table = truth.predict(network).layers
        running = table[table["status"] != "free"]
        memory_us = running["bytes_moved"].to_numpy(dtype=np.float64) / (self.gbps * 1e3)
        exact = np.where(
            running["status"] == "modelled",
            running["predicted_us"].to_numpy(dtype=np.float64),
            memory_us + self.launch_us,
        )
        times = exact * np.random.default_rng(seed).uniform(0.9, 1.3, len(running))
        kernels = pd.DataFrame(
            {
                "node": running["node"].to_numpy(),
                "op": [str(op).rpartition(".")[2] for op in running["op"]],
                "measured_us": times,
                "provider": "analytic",
                "output_shape": running["output_shape"].to_numpy(),
            }
        )
        total = NETWORK_SCALE * float(times.sum()) + NETWORK_OFFSET_US
        return NetworkMeasurement(
            network=network.name,
            target_id=self.target_id,
            total_us=total,
            median_us=total,
            p10_us=0.97 * total,
            p90_us=1.05 * total,
            round_medians_us=(total,) * settings.rounds,
            runs=settings.rounds * settings.runs,
            kernels=kernels,
            settings=settings,
        )


def measured_layers(kind: LayerKind, n: int, seed: int) -> pd.DataFrame:
    """``n`` random layers of ``kind`` with their exact analytic latency, as the store has them."""
    rng = np.random.default_rng(seed)
    target = AnalyticTarget()
    layers = []
    for _ in range(n):
        if kind is LayerKind.CONV:
            size = int(rng.integers(4, 40))
            layer = LayerConfig.create(
                kind,
                channels=int(rng.integers(1, 130)),
                height=size,
                width=size,
                out_channels=int(rng.integers(1, 130)),
                kernel=int(rng.choice([1, 3])),
                padding=1,
            )
        else:
            layer = LayerConfig.create(
                kind, channels=int(rng.integers(8, 600)), out_channels=int(rng.integers(1, 300))
            )
        layers.append(layer)
    frame = layers_to_frame(layers)
    frame["latency_us"] = [target.latency_us(layer) for layer in layers]
    frame["target_id"] = target.target_id
    frame["fingerprint_hash"] = fingerprint_hash(target.fingerprint())
    frame["status"] = "ok"
    return frame


def train_and_log(workspace: Workspace) -> TrainingReport:
    """Conv and dense models of the analytic target, saved and logged (about 3 s)."""
    kinds = (LayerKind.CONV, LayerKind.DENSE)
    train = pd.concat([measured_layers(k, 120, seed=i) for i, k in enumerate(kinds)])
    test = pd.concat([measured_layers(k, 30, seed=10 + i) for i, k in enumerate(kinds)])
    report = train_models(
        train,
        target_id=AnalyticTarget().target_id,
        fingerprint_hash=fingerprint_hash(AnalyticTarget().fingerprint()),
        fingerprint=AnalyticTarget().fingerprint(),
        settings=TrainSettings(regressor="xgboost", trials=0, folds=2),
        test_frame=test,
        workspace=workspace,
        progress=False,
    )
    return log_training(report, workspace=workspace, train_set="pr")


def tiny_networks(folder: Path) -> list[Path]:
    """Three small ONNX networks saved in ``folder``."""
    paths = []
    for make in (tiny_resnet, tiny_mobilenet, tiny_vgg):
        model: onnx.ModelProto = make()
        path = folder / f"{make.__name__}.onnx"
        onnx.save(model, path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Reviewed:
    """A workspace whose MLflow store holds two training runs (conv and dense, registered as
    version 1 each), a calibration from three tiny networks and an estimate of tiny_resnet
    measured against the calibrated estimate."""

    workspace: Workspace
    calibration: TrackedCalibration
    estimate_run_id: str


def build_reviewed(root: Path) -> Reviewed:
    """Build :class:`Reviewed` under ``root`` (MLflow store: the workspace's own)."""
    target = NetworkAnalyticTarget()
    workspace = Workspace.at(root / "ws").create()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        train_and_log(workspace)
        networks = tiny_networks(workspace.root)
        tracked = calibrate_and_log(networks, target, workspace=workspace, settings=QUICK)
        estimate, comparison = estimate_network(
            networks[0], target, workspace=workspace, strict=False, partial=True, measure=QUICK
        )
        run_id = log_estimate(estimate, comparison, workspace=workspace, model_path=networks[0])
    return Reviewed(workspace, tracked, run_id)
