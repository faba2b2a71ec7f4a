"""What the target of a cluster sweep is: the reference identity, and how a worker's differs.

Ray is imported at the top: only :mod:`prmodel.measure._cluster_driver` imports this module,
so only ``--cluster`` loads it. :func:`_identity_of_cluster` asks the cluster's nodes
(``--reference cluster``); :func:`_difference` names why a worker is refused.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import ray

from prmodel.errors import first_line
from prmodel.measure._cluster_config import ClusterError, ClusterSettings
from prmodel.measure._cluster_worker import TargetIdentity, WorkerInfo, probe

RESOURCE_PREFIX = "prmodel:"
"""A device host declares ``prmodel:<target_id>``: one unit per device it lends."""


def resource_name(target_id: str) -> str:
    """The Ray resource that a host declares per device of ``target_id``."""
    return f"{RESOURCE_PREFIX}{target_id}"


# -- the reference: what the target is ------------------------------------------------------
def _identity_of_cluster(spec: str, settings: ClusterSettings) -> tuple[TargetIdentity, str]:
    """What most of the cluster's devices say the target is (``--reference cluster``).

    The target is built once on every live node; a node counts with the devices it declares
    for the id it reports (or, for a deterministic target that no node declares, its CPUs).
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    task = ray.remote(probe)
    refs = [
        task.options(
            num_cpus=0,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False
            ),
        ).remote(spec)
        for node in nodes
    ]
    try:
        infos: list[WorkerInfo] = ray.get(refs, timeout=settings.start_timeout_s)
    except ray.exceptions.RayError as exc:
        message = f"cannot build {spec} on the cluster's nodes: {first_line(exc)}"
        raise ClusterError(message) from None
    found = {(i.identity.target_id, i.identity.digest): i.identity for i in infos if i.identity}
    votes: collections.Counter[tuple[str, str]] = collections.Counter()
    for node, info in zip(nodes, infos, strict=True):
        if info.identity is not None:
            units = node["Resources"].get(resource_name(info.identity.target_id), 0)
            votes[info.identity.target_id, info.identity.digest] += units
    if not +votes:
        for node, info in zip(nodes, infos, strict=True):
            if info.identity is not None and info.identity.deterministic:
                cpus = node["Resources"].get("CPU", 0)
                votes[info.identity.target_id, info.identity.digest] += cpus
    votes = +votes  # drop zero counts
    if not votes:
        reasons = "; ".join(f"{i.host}: {i.error or 'no device declared'}" for i in infos)
        raise ClusterError(f"no node of the cluster can measure {spec}: {reasons}")
    ranked = votes.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        groups = "; ".join(
            f"{count:g} devices say {target_id} fingerprint {digest}"
            for (target_id, digest), count in ranked
        )
        raise ClusterError(
            f"the cluster's devices disagree on what {spec} is ({groups}): run the driver on "
            "a host of the kind to measure, without --reference cluster"
        )
    chosen, count = ranked[0]
    total = sum(votes.values())
    return found[chosen], f"what {count:g} of the cluster's {total:g} devices report"


# -- naming what differs ---------------------------------------------------------------------
def _difference(found: TargetIdentity, reference: TargetIdentity) -> str:
    if found.target_id != reference.target_id:
        return f"it measures {found.target_id}, not {reference.target_id}"
    mine = _flatten(found.fingerprint)
    theirs = _flatten(reference.fingerprint)
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    shown = ", ".join(
        f"{k} {_short(mine.get(k))} there, {_short(theirs.get(k))} on the target" for k in keys[:3]
    )
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return f"its fingerprint {found.digest} differs from the target's: {shown}{more}"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _short(value: Any) -> str:
    text = "(none)" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _last_line(exc: BaseException) -> str:
    """The exception at the end of a remote traceback (Ray puts its own header first)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
