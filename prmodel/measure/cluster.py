"""Sweeps fanned out over a Ray cluster: many devices, one store, nothing lost or measured twice.

``prmodel sweep PLAN --cluster ADDRESS`` measures a sweep's layers on Ray workers instead of
this machine; ``docs/farm.md`` shows how to set up a farm. How it works:

1. **Who measures.** A device host declares one Ray resource ``prmodel:<target_id>`` per
   device (``ray start ... --resources '{"prmodel:ort-cpu-t1-all": 1}'``). The driver starts
   one worker per unit of that resource, and a worker holds its unit for the whole sweep, so
   two benchmarks never share a device. A deterministic target (SCALE-Sim, analytic) that no
   node declares a resource for gets one worker per CPU of the cluster instead.
2. **Same machine, or refused.** Each worker builds the target from its spec on its own
   host and reports the fingerprint. A worker whose fingerprint differs from the target's
   (built where the driver runs) is refused and named with the fields that differ; it keeps
   its device idle until the sweep ends, so no other worker is started there. One store
   never mixes machines silently.
3. **One writer.** Workers measure batches with the same runner as a local sweep
   (interleaved rounds, canary and stopping rule on noisy targets; a failing layer becomes an
   error row) and send the measurements back; the driver commits each point the moment its
   batch arrives, stamped with the worker that measured it (``prmodel show`` lists them).
4. **Nothing lost, nothing twice.** The driver alone hands out points, each to one worker at a
   time. When a worker dies (its process killed, its host gone), the points it held go back
   to the queue and another worker measures them; a point whose worker died under it
   ``max_losses`` times (it may be what kills them) is stored as an error saying so. Killing
   the driver loses the points in flight; the workers die with it (Ray ties them to it) and
   rerunning the sweep resumes from the store.

Ray is an optional dependency (``pip install 'prmodel[cluster]'``): this module does not
import it, and a local sweep never does; :mod:`prmodel.measure._cluster_driver` (with the
private modules it imports) holds the code that talks to Ray and is imported only when a
cluster is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prmodel.layers import LayerConfig
from prmodel.measure._cluster_config import (
    LOCAL,
    ClusterError,
    ClusterSettings,
    ClusterSweepReport,
    WorkerReport,
)
from prmodel.measure.plans import SweepPlan
from prmodel.measure.runner import MeasureSettings
from prmodel.measure.store import MeasurementStore

if TYPE_CHECKING:
    from prmodel.measure._cluster_driver import SweepCluster


def open_cluster(
    spec: str, settings: ClusterSettings, *, measure: MeasureSettings | None = None
) -> SweepCluster:
    """Connect to (or start) a Ray cluster and start the workers of target ``spec``.

    Use it as a context manager; it stops the workers (and a Ray it started) on exit.

    Args:
        spec: the target spec, built here (the reference fingerprint) and on every worker.
        settings: the cluster's address and limits.
        measure: measurement settings for noisy targets (defaults if None).

    Raises:
        ClusterError: Ray not installed, the cluster unreachable, or no node to run on.
    """
    try:
        # Ray is an optional, heavy dependency: imported only when a cluster is opened.
        from prmodel.measure import _cluster_driver
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("ray"):
            raise
        raise ClusterError(
            "--cluster needs Ray, which is not installed: pip install 'prmodel[cluster]'"
        ) from None
    return _cluster_driver.SweepCluster.open(spec, settings, measure or MeasureSettings())


def run_cluster_sweep(
    layers: Sequence[LayerConfig],
    spec: str,
    *,
    store: MeasurementStore,
    cluster: ClusterSettings,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan_name: str | None = None,
) -> ClusterSweepReport:
    """:func:`~prmodel.measure.runner.run_sweep` on a cluster: open it, sweep, close it.

    To sweep several plans on the same workers, use :func:`open_cluster` once and call its
    ``sweep`` per plan.
    """
    with open_cluster(spec, cluster, measure=settings) as pool:
        return pool.sweep(layers, store=store, progress=progress, plan_name=plan_name)


def sweep_plans_on_cluster(
    plans: Sequence[SweepPlan],
    spec: str,
    *,
    store: MeasurementStore,
    cluster: ClusterSettings,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    on_plan: Callable[[SweepPlan], None] | None = None,
) -> list[ClusterSweepReport]:
    """Measure the layers of each plan on one set of cluster workers (``prmodel sweep``).

    Args:
        plans: the plans, measured one after the other (each plan's layers become its
            members, as ``prmodel sweep`` records them locally).
        spec: the target spec (see :func:`open_cluster`).
        store: where results go; this process is its one writer.
        cluster: the cluster's address and limits.
        settings: measurement settings for noisy targets (defaults if None).
        progress: show a progress bar with each worker's throughput on stderr.
        on_plan: called with each plan before it is measured (to print its name).

    Returns:
        One report per plan; each lists every worker with its totals so far.
    """
    reports = []
    with open_cluster(spec, cluster, measure=settings) as pool:
        for plan in plans:
            if on_plan is not None:
                on_plan(plan)
            reports.append(
                pool.sweep(
                    plan.layers(),
                    store=store,
                    progress=progress,
                    plan_name=plan.name,
                    replace_plan=True,
                )
            )
    return reports


__all__ = [
    "LOCAL",
    "ClusterError",
    "ClusterSettings",
    "ClusterSweepReport",
    "WorkerReport",
    "open_cluster",
    "run_cluster_sweep",
    "sweep_plans_on_cluster",
]
