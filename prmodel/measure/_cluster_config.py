"""The settings and the reports of a cluster sweep (:mod:`prmodel.measure.cluster`).

Apart from the driver so that the public module and the Ray driver share them without an
import circle; nothing here imports Ray.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from prmodel.errors import PrmodelError
from prmodel.measure.runner import SweepReport

LOCAL = "local"
"""The address that starts a Ray instance on this machine for the sweep."""
REFERENCES = ("here", "cluster")
"""Where the identity that workers must match comes from (:attr:`ClusterSettings.reference`)."""

_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class ClusterError(PrmodelError):
    """A cluster that cannot be used: Ray missing, an unreachable address, no fit worker."""


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Where and how a cluster sweep runs.

    ``address``: ``local`` (start Ray here with ``workers`` CPUs), ``auto`` (the Ray
    cluster this machine belongs to), ``HOST:PORT`` (a head's GCS port, 6379) or
    ``ray://HOST:PORT`` (a head's Ray Client port, 10001).
    """

    address: str = LOCAL
    workers: int | None = None
    """Most workers to start (local: the CPUs Ray gets; default one per CPU here)."""
    batch_seconds: float = 0.2
    """Deterministic targets: about this much work goes to a worker at once."""
    max_losses: int = 2
    """A point whose worker died under it this many times is stored as an error."""
    max_restarts: int | None = None
    """Workers started to replace lost ones, in all (default: as many as were started)."""
    start_timeout_s: float = 120.0
    """How long to wait for a first worker (or a replacement when none is left)."""
    reference: str = "here"
    """What the target is, that workers must match: ``here`` (built where the driver
    runs) or ``cluster`` (what most of the cluster's devices report: for a driver on
    another kind of machine, e.g. a laptop connected with ``ray://``)."""

    def __post_init__(self) -> None:
        if self.address not in (LOCAL, "auto") and not _ADDRESS.match(self.address):
            raise ClusterError(
                f"--cluster {self.address!r} is not a cluster address: use 'local', 'auto', "
                "HOST:PORT (the head's GCS port) or ray://HOST:PORT (its Ray Client port)"
            )
        if self.workers is not None and self.workers < 1:
            raise ClusterError(f"--workers must be at least 1, got {self.workers}")
        if self.reference not in REFERENCES:
            raise ClusterError(
                f"--reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}"
            )
        if self.max_losses < 1:
            raise ClusterError(f"max_losses must be at least 1, got {self.max_losses}")

    def local_workers(self, *, deterministic: bool) -> int:
        """Workers of a local cluster: one per CPU (deterministic) or the one device here.

        Raises:
            ClusterError: more than one worker asked for a measured (noisy) target here.
        """
        if not deterministic:
            if self.workers not in (None, 1):
                raise ClusterError(
                    f"--workers {self.workers} on one machine would run {self.workers} "
                    "benchmarks of a measured target at once, and each would time the "
                    "others' load; use --workers 1, or a Ray cluster whose device hosts each "
                    "declare the target's resource (docs/farm.md)"
                )
            return 1
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did since the cluster was opened (or why it did nothing)."""

    worker: str
    host: str
    state: str
    """``measuring`` (alive at the end), ``lost`` (died) or ``refused`` (and why)."""
    points: int = 0
    failed: int = 0
    busy_seconds: float = 0.0
    """Seconds it spent measuring (its batches' wall time)."""
    cpu_seconds: float = 0.0
    """CPU time its process used for them: near ``busy_seconds`` for a simulator with a core
    to itself, lower where the host's cores are shared."""
    points_per_s: float = 0.0
    """Points it delivered over the seconds from its first batch to its last."""


@dataclass(frozen=True)
class ClusterSweepReport:
    """What one cluster sweep did: the counts of a local sweep, and per worker."""

    sweep: SweepReport
    workers: tuple[WorkerReport, ...]
    """Every worker started since the cluster was opened, with its totals so far."""
    requeued: int
    """Points handed out again because the worker holding them died."""
    lost_workers: int
    reference: str = ""
    """Where the identity that workers had to match came from."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.sweep.as_dict(),
            "requeued": self.requeued,
            "lost_workers": self.lost_workers,
            "reference": self.reference,
            "workers": [asdict(w) for w in self.workers],
        }


__all__ = ["LOCAL", "ClusterError", "ClusterSettings", "ClusterSweepReport", "WorkerReport"]
