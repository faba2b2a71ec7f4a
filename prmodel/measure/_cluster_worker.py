"""The worker side of a cluster sweep: one Ray actor that owns one device (or one core).

A :class:`SweepWorker` builds the target from its spec on the host it runs on, so its
fingerprint is that host's, and tells the driver who it is (:class:`WorkerInfo`). The driver
accepts it only where that fingerprint is the target's. Each :meth:`SweepWorker.measure`
call then measures a batch of layers with the same runner as a local sweep (interleaved
rounds, canary, stopping rule, failures stored as errors) and hands the measurements back
instead of writing them: the driver is the store's one writer. The runner lives as long as
the worker, so the canary's baseline is the best that this device has shown in the sweep.

Ray wraps this class in the driver (:mod:`prmodel.measure._cluster_driver`); nothing here
imports Ray except the one call that names the node.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prmodel.layers import LayerConfig
from prmodel.measure._progress import _Bar
from prmodel.measure._protocol import MeasureSettings, _reason, _Runner
from prmodel.measure.store import Measurement
from prmodel.targets import get_target
from prmodel.targets.base import Target, fingerprint_hash


@dataclass(frozen=True)
class TargetIdentity:
    """What a target is where it was built: its id, its fingerprint, whether it is exact."""

    target_id: str
    fingerprint: dict[str, Any]
    deterministic: bool

    @property
    def digest(self) -> str:
        """The fingerprint's hash, as the store keys measurements."""
        return fingerprint_hash(self.fingerprint)

    @classmethod
    def of(cls, target: Target) -> TargetIdentity:
        return cls(target.target_id, target.fingerprint(), target.deterministic)


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is and what it measures: the driver checks this before using it."""

    worker: str
    """``<node id, 8 hex>:<pid>``: unique in the cluster, stored with each point it measures."""
    host: str
    node_id: str
    identity: TargetIdentity | None
    error: str | None = None
    """Why the target could not be built on this host (then ``identity`` is None)."""


def identify(spec: str) -> tuple[WorkerInfo, Target | None]:
    """Build the target of ``spec`` in this process; who we are and what it is here."""
    # Imported here, not at the top: only a Ray worker process calls this, and Ray is an
    # optional dependency that the rest of the module does not need.
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    name = f"{node_id[:8]}:{os.getpid()}"
    host = socket.gethostname()
    try:
        target = get_target(spec)
        identity = TargetIdentity.of(target)
    except Exception as exc:  # a host that cannot build the target is refused, with why
        return WorkerInfo(name, host, node_id, None, error=_reason(exc)), None
    return WorkerInfo(name, host, node_id, identity), target


def probe(spec: str) -> WorkerInfo:
    """:func:`identify` for a one-off Ray task on a node: what the target is there."""
    return identify(spec)[0]


@dataclass(frozen=True)
class BatchResult:
    """The measurements of one batch, in the order they were finished, and its duration."""

    measurements: list[Measurement]
    seconds: float
    cpu_seconds: float
    """CPU time of the worker's process for the batch: well below ``seconds`` where the
    host's cores are shared (or the target waits on a device)."""


@dataclass
class _Outbox:
    """The runner's sink on a worker: collects what a local sweep would record."""

    measurements: list[Measurement] = field(default_factory=list)

    def record(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)

    def get(self, target_id: str, fingerprint_hash: str, layer_key: str) -> Measurement | None:
        return None  # a cluster sweep never re-measures stored points


class SweepWorker:
    """A Ray actor measuring batches of layers of one target on the device it owns."""

    def __init__(self, spec: str, settings: MeasureSettings) -> None:
        self._settings = settings
        self._runner: _Runner | None = None
        self._outbox = _Outbox()
        self._info, self._target = identify(spec)

    def describe(self) -> WorkerInfo:
        """Who this worker is, what it measures and with which fingerprint."""
        return self._info

    def measure(self, layers: Sequence[LayerConfig]) -> BatchResult:
        """Measure ``layers`` as a local sweep would; failures come back as error rows."""
        if self._target is None or self._info.identity is None:
            raise RuntimeError(f"worker {self._info.worker} has no target: {self._info.error}")
        began = time.perf_counter()
        cpu = time.process_time()
        if self._runner is None:
            digest = self._info.identity.digest
            self._runner = _Runner(self._target, self._outbox, self._settings, digest)
        self._runner.measure_more(layers, _Bar(None, None))
        done, self._outbox.measurements = self._outbox.measurements, []
        return BatchResult(done, time.perf_counter() - began, time.process_time() - cpu)

    def close(self) -> None:
        """Release the canary; the driver calls this before it lets the worker go."""
        if self._runner is not None:
            self._runner.close()


__all__ = ["BatchResult", "SweepWorker", "TargetIdentity", "WorkerInfo", "identify", "probe"]
