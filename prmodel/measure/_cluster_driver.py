"""The driver of a cluster sweep: the workers, the queue of points and the store's one writer.

Everything that talks to Ray is here or in the private modules it imports (Ray is imported
at the top: this module is imported only by :func:`prmodel.measure.cluster.open_cluster`).
:class:`SweepCluster` connects to or starts Ray, starts the workers of one target and checks
their fingerprints; its
:meth:`SweepCluster.sweep` hands out points in batches, commits what comes back and puts the
points of a dead worker back in the queue. See :mod:`prmodel.measure.cluster` for the rules;
the reference identity is in :mod:`~prmodel.measure._cluster_reference`, the progress display
in :mod:`~prmodel.measure._cluster_progress`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import ray

from prmodel.errors import first_line
from prmodel.layers import LayerConfig
from prmodel.measure._cluster_config import (
    LOCAL,
    ClusterError,
    ClusterSettings,
    ClusterSweepReport,
    WorkerReport,
)
from prmodel.measure._cluster_progress import _progress, _ProgressView
from prmodel.measure._cluster_reference import (
    RESOURCE_PREFIX,
    _difference,
    _identity_of_cluster,
    _last_line,
    resource_name,
)
from prmodel.measure._cluster_worker import BatchResult, SweepWorker, TargetIdentity, WorkerInfo
from prmodel.measure.claims import Claims
from prmodel.measure.machines import refuse_old_ids
from prmodel.measure.runner import MeasureSettings, SweepReport
from prmodel.measure.store import Measurement, MeasurementStore, WorkerStamp
from prmodel.targets import get_target
from prmodel.targets.base import Target

_WAIT_S = 0.25
_GRACE_S = 10.0
_CLAIM_POLL_S = 0.5
_CONNECT_S = 10.0
_LOCAL_OBJECT_STORE = 200 * 1024**2
"""Bytes of shared memory for a local Ray: results are small (Ray's default is 30 % of RAM)."""
_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


@dataclass(eq=False)
class _Worker:
    """One actor as the driver sees it (mutable, private to the driver)."""

    actor: Any
    label: str
    info: WorkerInfo | None = None
    state: str = "starting"
    """starting, ready, lost or refused (followed by the reason)."""
    points: int = 0
    failed: int = 0
    busy_seconds: float = 0.0
    cpu_seconds: float = 0.0
    per_point_s: float | None = None
    first_batch_at: float | None = None
    last_result_at: float | None = None

    @property
    def name(self) -> str:
        return self.info.worker if self.info is not None else self.label

    @property
    def host(self) -> str:
        return self.info.host if self.info is not None else "?"

    def rate(self) -> float:
        if self.first_batch_at is None or self.last_result_at is None:
            return 0.0
        return self.points / max(self.last_result_at - self.first_batch_at, 1e-9)

    def report(self) -> WorkerReport:
        return WorkerReport(
            worker=self.name,
            host=self.host,
            state="measuring" if self.state == "ready" else self.state,
            points=self.points,
            failed=self.failed,
            busy_seconds=round(self.busy_seconds, 3),
            cpu_seconds=round(self.cpu_seconds, 3),
            points_per_s=round(self.rate(), 3),
        )


@dataclass(eq=False)
class _Batch:
    worker: _Worker
    layers: list[LayerConfig]
    suspect: bool = False
    """One point whose worker died under it before (it runs alone)."""


class SweepCluster:
    """The workers of one target on a Ray cluster, ready to measure sweeps into a store.

    Made by :func:`prmodel.measure.cluster.open_cluster`; a context manager.
    """

    def __init__(
        self,
        spec: str,
        target: TargetIdentity,
        settings: ClusterSettings,
        measure: MeasureSettings,
        *,
        started_ray: bool,
        reference_note: str,
    ) -> None:
        self.spec = spec
        self.target = target
        self.settings = settings
        self.measure = measure
        self.reference = target.fingerprint
        self.digest = target.digest
        self.reference_note = reference_note
        """Where the reference identity came from (said in the report and the CLI)."""
        self._started_ray = started_ray
        self._remote = ray.remote(SweepWorker)
        self._options = self._actor_options()
        self._workers: list[_Worker] = []
        self._starting: dict[Any, _Worker] = {}
        self._restarts_left = 0
        self._built_here: Target | None = None
        """The target as built where the driver runs (None with ``--reference cluster``)."""

    # -- opening and closing -----------------------------------------------------------------
    @classmethod
    def open(cls, spec: str, settings: ClusterSettings, measure: MeasureSettings) -> SweepCluster:
        here = settings.reference == "here" or settings.address == LOCAL
        built = get_target(spec) if here else None
        target = TargetIdentity.of(built) if built is not None else None
        started = _connect(settings, target)
        cluster: SweepCluster | None = None
        try:
            if target is None:
                target, note = _identity_of_cluster(spec, settings)
            else:
                note = "the target as built where the driver runs"
            cluster = cls(spec, target, settings, measure, started_ray=started, reference_note=note)
            cluster._built_here = built
            cluster._start_workers()
        except BaseException:
            if cluster is not None:
                cluster.close()  # its workers (refused ones too) and a Ray it started
            elif started:
                ray.shutdown()
            raise
        return cluster

    def __enter__(self) -> SweepCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker, and Ray itself where this cluster started it."""
        for worker in self._workers:
            _kill(worker.actor)
        self._workers.clear()
        self._starting.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    @property
    def workers(self) -> list[WorkerReport]:
        """Every worker started so far, with its state."""
        return [w.report() for w in self._workers]

    def _actor_options(self) -> dict[str, Any]:
        name = resource_name(self.target.target_id)
        offered = ray.cluster_resources()
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
        if offered.get(name, 0) >= 1:
            return {**options, "num_cpus": 0, "resources": {name: 1}}
        if self.target.deterministic:
            return {**options, "num_cpus": 1}
        declared = sorted(k for k in offered if k.startswith(RESOURCE_PREFIX)) or ["none"]
        hint = " (or --reference cluster, if the driver runs on another kind of machine)"
        raise ClusterError(
            f"no node of the Ray cluster offers the resource {name!r}, so no worker may "
            f"measure {self.target.target_id}: start each device host with ray start "
            f"--address HEAD:6379 --resources '{{\"{name}\": 1}}' (declared now: "
            f"{', '.join(declared)}){hint if self.settings.reference == 'here' else ''}; "
            "see docs/farm.md"
        )

    def _slots(self) -> int:
        offered = ray.cluster_resources()
        resources = self._options.get("resources")
        name = next(iter(resources)) if resources else "CPU"
        units = int(offered.get(name, 0))
        if self.settings.workers is not None:
            units = min(units, self.settings.workers)
        return max(units, 1)

    def _start_workers(self) -> None:
        slots = self._slots()
        for _ in range(slots):
            self._start_one()
        restarts = self.settings.max_restarts
        self._restarts_left = slots if restarts is None else restarts
        self._await_workers()

    def _start_one(self) -> None:
        actor: Any = self._remote.options(**self._options).remote(self.spec, self.measure)
        worker = _Worker(actor, label=f"w{len(self._workers) + 1}")
        self._workers.append(worker)
        self._starting[actor.describe.remote()] = worker

    def _await_workers(self) -> None:
        """Wait until every worker has started, or a first one and ``_GRACE_S`` more.

        Workers that start later join the sweep when they are ready; waiting a little
        here lets the first batches spread over all of them and the report name them all.
        """
        deadline = time.monotonic() + self.settings.start_timeout_s
        while self._starting and time.monotonic() < deadline:
            done, _ = ray.wait(list(self._starting), num_returns=1, timeout=_WAIT_S)
            for ref in done:
                self._admit(ref)
            if self._ready():
                deadline = min(deadline, time.monotonic() + _GRACE_S)
        if not self._ready():
            raise ClusterError(self._no_worker_message())

    def _ready(self) -> list[_Worker]:
        return [w for w in self._workers if w.state == "ready"]

    def _admit(self, ref: Any) -> None:
        """A starting worker described itself: accept it or refuse it (and say why)."""
        worker = self._starting.pop(ref)
        try:
            info: WorkerInfo = ray.get(ref)
        except ray.exceptions.RayError as exc:
            worker.state = f"refused: it could not start ({_last_line(exc)})"
            _kill(worker.actor)
            return
        worker.info = info
        mine = (info.identity.target_id, info.identity.digest) if info.identity else None
        if info.identity is None:
            worker.state = f"refused: the target cannot be built there ({info.error})"
        elif mine != (self.target.target_id, self.digest):
            worker.state = "refused: " + _difference(info.identity, self.target)
        else:
            worker.state = "ready"
        # A refused worker stays alive and idle: it holds its device (or core) until the
        # cluster closes, so no other worker is started on that host in its place.

    def _no_worker_message(self) -> str:
        target = f"{self.target.target_id} (fingerprint {self.digest})"
        refused = [w for w in self._workers if w.state.startswith("refused")]
        if refused:
            names = "; ".join(f"{w.name} on {w.host}: {w.state}" for w in refused)
            return f"no worker of the cluster may measure {target}: {names}"
        return (
            f"no worker of the cluster started within {self.settings.start_timeout_s:.0f} s "
            f"to measure {target}; is every node busy or gone?"
        )

    # -- one sweep ---------------------------------------------------------------------------
    def sweep(
        self,
        layers: Sequence[LayerConfig],
        *,
        store: MeasurementStore,
        progress: bool = True,
        plan_name: str | None = None,
        replace_plan: bool = False,
    ) -> ClusterSweepReport:
        """Measure every layer not yet stored for the target; commit each as it comes back.

        Args:
            layers: the layers to measure (duplicates are measured once).
            store: where results go (this process is its only writer for the sweep).
            progress: show a progress bar with each worker's throughput on stderr.
            plan_name: record every requested layer as a member of this plan.
            replace_plan: ``layers`` are the whole of ``plan_name`` (as in
                :func:`~prmodel.measure.runner.run_sweep`).

        Raises:
            ClusterError: every worker was lost or refused before the sweep was done
                (what was measured is stored; rerun to resume).
        """
        began = time.perf_counter()
        target_id = self.target.target_id
        if self._built_here is not None:
            refuse_old_ids(store, self._built_here)  # as a local sweep: migrate them first
        digest = store.register_target(target_id, self.reference)
        unique = list({layer.key: layer for layer in layers}.values())
        if plan_name is not None:
            members = [x.key for x in unique]
            if replace_plan:
                store.set_plan_members(plan_name, target_id, digest, members)
            else:
                store.add_to_plan(plan_name, target_id, digest, members)
        done = store.measured_keys(target_id, digest)
        todo = [layer for layer in unique if layer.key not in done]
        claims = Claims(store, target_id, digest)
        run = _Dispatch(self, store, todo, claims)
        with _progress(len(todo), enabled=progress) as bar, claims:
            run.loop(bar)
        sweep = SweepReport(
            target_id=target_id,
            fingerprint_hash=digest,
            plan_name=plan_name,
            requested=len(unique),
            measured=run.measured,
            skipped=len(unique) - run.measured - run.failed,
            failed=run.failed,
            seconds=time.perf_counter() - began,
            canary=self.measure.canary and not self.target.deterministic,
        )
        return ClusterSweepReport(
            sweep=sweep,
            workers=tuple(w.report() for w in self._workers),
            requeued=run.requeued,
            lost_workers=run.lost,
            reference=self.reference_note,
        )

    def _replace(self, lost: _Worker) -> None:
        if self._restarts_left > 0:
            self._restarts_left -= 1
            self._start_one()


class _Dispatch:
    """One sweep's queue: hands out batches, commits results, re-queues a dead worker's.

    Points are claimed in the store (:mod:`prmodel.measure.claims`) as they are handed out,
    so a local sweep or another driver on the same store never measures them too; points
    another sweep holds wait in ``deferred`` until it has measured them or its claim lapses.
    """

    def __init__(
        self,
        cluster: SweepCluster,
        store: MeasurementStore,
        todo: Sequence[LayerConfig],
        claims: Claims,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.claims = claims
        self.queue: collections.deque[LayerConfig] = collections.deque(todo)
        self.deferred: list[LayerConfig] = []
        self.elsewhere = 0
        """Points that another sweep measured while this one waited for them."""
        self.losses: dict[str, int] = {}
        self.inflight: dict[Any, _Batch] = {}
        self.committed: set[str] = set()
        self.measured = 0
        self.failed = 0
        self.requeued = 0
        self.lost = 0
        self._depth = 1 if not cluster.target.deterministic else 2
        self._idle_since = time.monotonic()

    def loop(self, bar: _ProgressView) -> None:
        cluster = self.cluster
        while self.queue or self.inflight or self.deferred:
            if not self.queue and not self.inflight:
                self._take_over_deferred()
            self._hand_out()
            refs = [*self.inflight, *cluster._starting]
            waiting = bool(self.queue) and not self.inflight
            if waiting and (
                not refs or time.monotonic() - self._idle_since > cluster.settings.start_timeout_s
            ):
                raise ClusterError(self._stranded())
            if not waiting:
                self._idle_since = time.monotonic()
            if not refs:
                continue
            done, rest = ray.wait(refs, num_returns=1, timeout=_WAIT_S)
            if done and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
            for ref in done:
                if ref in cluster._starting:
                    cluster._admit(ref)
                elif ref in self.inflight:
                    self._collect(ref)
            bar.show(len(self.committed) + self.elsewhere, cluster._workers)

    def _take_over_deferred(self) -> None:
        """Queue the deferred points whose claim lapsed; drop those measured meanwhile."""
        time.sleep(_CLAIM_POLL_S)
        target = self.cluster.target.target_id
        stored = self.store.measured_keys(target, self.cluster.digest)
        held = set(self.claims.claim([x.key for x in self.deferred if x.key not in stored]))
        self.elsewhere += sum(x.key in stored for x in self.deferred)
        self.queue.extend(x for x in self.deferred if x.key in held)
        self.deferred = [x for x in self.deferred if x.key not in held and x.key not in stored]

    def _hand_out(self) -> None:
        held: dict[_Worker, list[_Batch]] = collections.defaultdict(list)
        for batch in self.inflight.values():
            held[batch.worker].append(batch)
        for worker in self.cluster._ready():
            mine = held[worker]
            while self.queue and len(mine) < self._depth:
                # A point whose worker died under it runs alone on a worker holding nothing
                # else: if it kills this one too, no innocent point is lost with it.
                suspect = bool(self.losses.get(self.queue[0].key))
                if any(b.suspect for b in mine) or (suspect and mine):
                    break
                layers = self._next_batch(worker)
                if not layers:
                    continue
                batch = _Batch(worker, layers, suspect=suspect)
                self.inflight[worker.actor.measure.remote(layers)] = batch
                mine.append(batch)
                if worker.first_batch_at is None:
                    worker.first_batch_at = time.perf_counter()

    def _next_batch(self, worker: _Worker) -> list[LayerConfig]:
        """The next points for ``worker``, claimed; empty where another sweep holds them all."""
        if self.losses.get(self.queue[0].key):
            return [self.queue.popleft()]  # claimed already, when it was first handed out
        size = self._batch_size(worker)
        batch: list[LayerConfig] = []
        while self.queue and len(batch) < size and not self.losses.get(self.queue[0].key):
            batch.append(self.queue.popleft())
        held = set(self.claims.claim([x.key for x in batch]))
        self.deferred += [x for x in batch if x.key not in held]
        return [x for x in batch if x.key in held]

    def _batch_size(self, worker: _Worker) -> int:
        cluster = self.cluster
        if not cluster.target.deterministic:
            return max(cluster.measure.chunk_size, 1)
        if worker.per_point_s is None:
            return 1
        wanted = cluster.settings.batch_seconds / max(worker.per_point_s, 1e-6)
        # near the end, smaller batches so that every worker finishes at about the same time
        fair = math.ceil(len(self.queue) / (2 * max(len(cluster._ready()), 1)))
        return int(max(1, min(wanted, fair, 4096)))

    def _collect(self, ref: Any) -> None:
        batch = self.inflight.pop(ref)
        worker = batch.worker
        try:
            result: BatchResult = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._lose(worker, batch, exc)
            return
        now = time.perf_counter()
        worker.busy_seconds += result.seconds
        worker.cpu_seconds += result.cpu_seconds
        worker.last_result_at = now
        if batch.layers:
            per_point = result.seconds / len(batch.layers)
            old = worker.per_point_s
            worker.per_point_s = per_point if old is None else 0.5 * old + 0.5 * per_point
        stamp = WorkerStamp(worker.name, worker.host)
        for measurement in result.measurements:
            self._commit(measurement, worker, stamp)

    def _commit(self, measurement: Measurement, worker: _Worker, stamp: WorkerStamp) -> None:
        if measurement.layer_key in self.committed:
            return  # never twice; the driver hands each point to one worker at a time
        self.store.record(measurement, worker=stamp)
        self.committed.add(measurement.layer_key)
        worker.points += 1
        if measurement.status == "ok":
            self.measured += 1
        else:
            self.failed += 1
            worker.failed += 1

    def _lose(self, worker: _Worker, batch: _Batch, exc: BaseException) -> None:
        """A worker died (or broke): re-queue everything it held, start a replacement."""
        held = [batch, *(b for b in self.inflight.values() if b.worker is worker)]
        self.inflight = {r: b for r, b in self.inflight.items() if b.worker is not worker}
        if worker.state == "ready":
            worker.state = f"lost: {first_line(exc)}"
            self.lost += 1
            _kill(worker.actor)
            self.cluster._replace(worker)
        for layer in reversed([x for b in held for x in b.layers]):
            if layer.key in self.committed:
                continue
            losses = self.losses.get(layer.key, 0) + 1
            self.losses[layer.key] = losses
            if losses >= self.cluster.settings.max_losses:
                self._give_up(layer, worker, losses)
            else:
                self.queue.appendleft(layer)
                self.requeued += 1

    def _give_up(self, layer: LayerConfig, worker: _Worker, losses: int) -> None:
        error = (
            f"the worker measuring it died {losses} times (last {worker.name} on {worker.host}); "
            "the layer may crash the target"
        )
        failed = Measurement.failed(
            layer,
            target_id=self.cluster.target.target_id,
            fingerprint_hash=self.cluster.digest,
            error=error,
        )
        self._commit(failed, worker, WorkerStamp(worker.name, worker.host))

    def _stranded(self) -> str:
        left = len(self.queue) + sum(len(b.layers) for b in self.inflight.values())
        states = "; ".join(f"{w.name} on {w.host}: {w.state}" for w in self.cluster._workers)
        return (
            f"no worker is left to measure {self.cluster.target.target_id}: {left} points were "
            f"not measured ({len(self.committed)} were stored); rerun to resume. Workers: {states}"
        )


# -- connecting --------------------------------------------------------------------------------
def _connect(settings: ClusterSettings, target: TargetIdentity | None) -> bool:
    """Connect to the cluster (or start a local one); True where Ray was started here."""
    if ray.is_initialized():
        return False  # an embedding program (or a test) connected already: use its cluster
    if settings.address == LOCAL:
        assert target is not None  # a local cluster always measures the target built here
        workers = settings.local_workers(deterministic=target.deterministic)
        resources = {} if target.deterministic else {resource_name(target.target_id): 1.0}
        # Ray warns that it turned token authentication on for a new local instance: right
        # for a sweep's private Ray, and nothing the user must act on.
        logging.getLogger(_TOKEN_LOGGER).setLevel(logging.ERROR)
        ray.init(
            address="local",  # a new private instance, even where RAY_ADDRESS names a cluster
            num_cpus=workers,
            resources=resources,
            object_store_memory=_LOCAL_OBJECT_STORE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        return True
    _check_reachable(settings.address)
    try:
        ray.init(address=settings.address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {settings.address}: {first_line(exc)}"
        ) from None
    return False


def _check_reachable(address: str) -> None:
    """Fail fast on a head that does not answer (Ray itself retries for minutes)."""
    if address == "auto":
        return  # Ray reads the address of this machine's cluster and says if there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {reason.lower()} (is the head "
            "started, and is the port its GCS port 6379 or, with ray://, its client port "
            "10001?)"
        ) from None


def _kill(actor: Any) -> None:
    with contextlib.suppress(Exception):  # already dead or its node gone: nothing to stop
        ray.kill(actor, no_restart=True)


__all__ = ["RESOURCE_PREFIX", "SweepCluster", "resource_name"]
