"""The sweep runner: benchmarks layers on a target, robustly and resumably, into the store.

:func:`run_sweep` measures what the store lacks and reports counts; :func:`measure_layers`
does that and reads the requested layers' rows back as a frame (the one way to "measure,
then use the measurements"; :func:`measure_and_read` also keeps the sweep's report).

Method:

1. **Resume.** Layers already stored for the target's ``(target_id, fingerprint_hash)``,
   measured fine or failed, are skipped. With a plan name, every requested layer (skipped
   ones too) is recorded as a member of that plan.
2. **Failures.** A layer the target does not support is stored with ``status="error"`` and
   the target's reason; so is a layer whose preparation or run raises. The sweep goes on.
3. **Deterministic targets** (simulators): one call per layer; its kernel time is the latency.
4. **Noisy targets** (real hardware): layers are measured in chunks of ``chunk_size`` (8)
   prepared at once. Each point first gets ``warmup_calls`` discarded calls, whose duration
   sizes its batch: the calls per round that take about ``batch_ms`` (20 ms), at least
   ``min_calls`` (3). Then rounds: in each round the chunk's unfinished points and a
   **canary** (a fixed medium conv, prepared once per sweep) run one batch each in a fresh
   seeded random order, so slow drifts of the machine spread evenly over all points (the
   canary's batch lasts ``canary_batch_ms``, 10 ms, as it is pure overhead). When the
   canary's median wall time of a round is more than ``canary_tolerance`` (10 %) above
   its baseline, the best (lowest) canary round median accepted so far, the round is
   disturbed: its samples are discarded and the round is repeated. After
   ``max_disturbed_retries`` disturbed rounds in a row the machine's new state is taken as
   normal: the round is accepted and the baseline restarts from it.
   A point stops once it has ``min_rounds`` accepted rounds, the relative confidence
   half-width of its median, ``1.57 * IQR / sqrt(n) / median``, is at most
   ``target_rel_ci`` (1 %), and its lowest round median is confirmed: a second round median
   lies within ``confirm_tolerance`` (2 %) of it. On a shared machine round medians wander
   by 5-15 % with the neighbours' load, and the minimum of round medians is only
   reproducible when the quiet state was seen more than once. A point also stops at
   ``max_rounds`` or when the chunk has run ``max_seconds_per_point`` per point.
   Per-call kernel times only exist after ``Benchmark.finish()`` (a profiler writes them at
   the end), so this stopping rule uses the wall times that ``Benchmark.run`` returns; the
   kernel-time half-width is computed at the end and stored in ``extra["rel_ci"]``.
5. **Statistics** of a point use the kernel times of its accepted rounds only (the calls are
   split back into warm-up, accepted and disturbed rounds by the counts the runner made):
   ``n``, median, min, p10, p90, mean; the wall and reorder medians; and
   ``latency_us = min over round medians`` of kernel time, which is far steadier on a shared
   machine than one median. ``extra`` holds ``rel_ci``, ``rel_ci_wall``,
   ``disturbed_rounds``, ``calls_per_round``, ``round_spread`` (max/min round median - 1),
   ``canary_ratio`` (median over the point's accepted rounds of the canary's round median
   over the lowest canary median of the sweep: near 1 on a quiet machine, higher for a
   point measured while the machine was persistently slower), ``canary_us`` (the median of
   those canary round medians in µs of wall time: the same fixed layer across sweeps, so
   ``prmodel show`` can tell from it how fast the machine was hour by hour) and the target's
   own numbers.
6. **Durability.** Each point is committed the moment it is done, so Ctrl-C or SIGKILL loses
   at most the points in flight, and running the same sweep again resumes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from prmodel.layers import LayerConfig
from prmodel.measure._progress import _Bar, _progress_bar
from prmodel.measure._protocol import (
    CANARY_LAYER,
    MeasurementSink,
    MeasureSettings,
    _Runner,
    relative_ci,
)
from prmodel.measure.claims import Claims
from prmodel.measure.machines import refuse_old_ids
from prmodel.measure.store import MeasurementStore
from prmodel.targets.base import Target

_CLAIM_POLL_S = 0.5  # how often a sweep looks whether points another sweep holds are done


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """What one :func:`run_sweep` call did."""

    target_id: str
    fingerprint_hash: str
    plan_name: str | None
    requested: int
    measured: int
    skipped: int
    failed: int
    seconds: float
    disturbed_rounds: int = 0
    canary: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sweep(
    layers: Sequence[LayerConfig],
    target: Target,
    *,
    store: MeasurementStore,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan_name: str | None = None,
    remeasure: bool = False,
    replace_plan: bool = False,
) -> SweepReport:
    """Measure every layer not yet stored for ``target`` and commit each as it is done.

    Points are claimed in the store before they are measured (:mod:`prmodel.measure.claims`),
    so a concurrent sweep on the same store measures none of them again: it leaves them to
    this one, and counts them as skipped once they are stored.

    Args:
        layers: the layers to measure (duplicates are measured once).
        target: where to measure them.
        store: where results go and where already-measured layers are looked up.
        settings: measurement settings for noisy targets (defaults if None).
        progress: show a progress bar with ETA on stderr.
        plan_name: record every requested layer as a member of this plan.
        remeasure: measure stored layers too, replacing each stored point as its new
            measurement comes in (see :mod:`prmodel.measure.recheck`); a layer that fails now
            keeps its stored point.
        replace_plan: ``layers`` are the whole definition of ``plan_name``: members it
            recorded earlier that are not among them are dropped (a plan file edited and run
            again), instead of adding to them.

    Returns:
        Counts of measured, skipped and failed layers and the seconds it took.
    """
    started = time.perf_counter()
    settings = settings or MeasureSettings()
    unique = list({layer.key: layer for layer in layers}.values())
    refuse_old_ids(store, target)  # this machine's rows under an old id: migrate them first
    digest = store.register_target(target.target_id, target.fingerprint())
    if plan_name is not None:
        members = [x.key for x in unique]
        if replace_plan:
            store.set_plan_members(plan_name, target.target_id, digest, members)
        else:
            store.add_to_plan(plan_name, target.target_id, digest, members)
    done = set() if remeasure else store.measured_keys(target.target_id, digest)
    todo = [layer for layer in unique if layer.key not in done]
    runner = _Runner(target, store, settings, digest, keep_stored_ok=remeasure)
    claims = Claims(store, target.target_id, digest, skip_measured=not remeasure)
    with _progress_bar(len(todo), enabled=progress) as bar, claims:
        _measure_claimed(runner, todo, bar, claims, store=store)
    return SweepReport(
        target_id=target.target_id,
        fingerprint_hash=digest,
        plan_name=plan_name,
        requested=len(unique),
        measured=runner.measured,
        skipped=len(unique) - runner.measured - runner.failed,
        failed=runner.failed,
        seconds=time.perf_counter() - started,
        disturbed_rounds=runner.disturbed_rounds,
        canary=runner.canary_used,
    )


def _measure_claimed(
    runner: _Runner,
    todo: Sequence[LayerConfig],
    bar: _Bar,
    claims: Claims,
    *,
    store: MeasurementStore,
) -> None:
    """Measure ``todo`` group by group, each claimed first; then the points that another
    sweep held, once it has measured them (skipped) or its claims lapsed (measured here)."""
    group = max(runner.settings.chunk_size, 1) * (2 if runner.target.deterministic else 1)
    deferred: list[LayerConfig] = []
    try:
        for start in range(0, len(todo), group):
            layers = todo[start : start + group]
            held = set(claims.claim([layer.key for layer in layers]))
            runner.measure_more([x for x in layers if x.key in held], bar)
            deferred += [x for x in layers if x.key not in held]
        while deferred:
            held = set(claims.claim([layer.key for layer in deferred]))
            stored = (
                store.measured_keys(runner.target.target_id, runner.digest)
                if claims.skip_measured
                else set()
            )
            for layer in deferred:
                if layer.key in stored and layer.key not in held:
                    bar.advance()  # measured by the other sweep
            runner.measure_more([x for x in deferred if x.key in held], bar)
            deferred = [x for x in deferred if x.key not in held and x.key not in stored]
            if deferred:
                bar.label(f"waiting for another sweep: {len(deferred)} points")
                time.sleep(_CLAIM_POLL_S)
    finally:
        runner.close()


@dataclass(frozen=True)
class MeasuredLayers:
    """The store rows of the layers just measured, and what the sweep did to get them."""

    frame: pd.DataFrame
    """One row per layer measured fine, in the order of the layers asked for."""
    report: SweepReport
    """How many were measured now, found in the store (skipped) or failed."""


def measure_layers(
    layers: Sequence[LayerConfig],
    target: Target,
    *,
    store: MeasurementStore,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan_name: str | None = None,
) -> pd.DataFrame:
    """Measure what the store lacks of ``layers``, then read all of them back as a frame.

    This is the one way to "measure, then use the measurements": layers already stored for
    this target and fingerprint are reused, the others are measured by :func:`run_sweep`
    (each committed as it is done), and the rows of every requested layer are read back.
    :func:`measure_and_read` does the same and also returns the sweep's counts.

    Args:
        layers: the layers wanted (duplicates are measured and returned once).
        target: where to measure them.
        store: where measurements are looked up and recorded.
        settings: measurement settings for noisy targets (defaults if None).
        progress: show a progress bar with ETA on stderr.
        plan_name: record every requested layer as a member of this plan.

    Returns:
        The store rows (columns :data:`prmodel.measure.store.FRAME_COLUMNS`) of the
        requested layers that have a good measurement, in the order of ``layers`` (first
        appearance), indexed from 0; failed and unsupported layers have no row.
    """
    return measure_and_read(
        layers, target, store=store, settings=settings, progress=progress, plan_name=plan_name
    ).frame


def measure_and_read(
    layers: Sequence[LayerConfig],
    target: Target,
    *,
    store: MeasurementStore,
    settings: MeasureSettings | None = None,
    progress: bool = True,
    plan_name: str | None = None,
) -> MeasuredLayers:
    """:func:`measure_layers`, also returning the :class:`SweepReport` of the sweep.

    For callers that report how many layers were measured, reused or failed. Arguments and
    the frame as for :func:`measure_layers`.
    """
    report = run_sweep(
        layers, target, store=store, settings=settings, progress=progress, plan_name=plan_name
    )
    keys = list(dict.fromkeys(layer.key for layer in layers))
    frame = store.frame(
        target_id=report.target_id, fingerprint_hash=report.fingerprint_hash, layer_keys=keys
    )
    order = {key: i for i, key in enumerate(keys)}
    frame = frame.sort_values("layer_key", key=lambda s: s.map(order), kind="stable")
    return MeasuredLayers(frame=frame.reset_index(drop=True), report=report)


__all__ = [
    "CANARY_LAYER",
    "MeasureSettings",
    "MeasuredLayers",
    "MeasurementSink",
    "SweepReport",
    "measure_and_read",
    "measure_layers",
    "relative_ci",
    "run_sweep",
]
