"""Claims on points, so that concurrent sweeps on one store never measure a point twice.

Before measuring a group of points a sweep claims them in the store
(:meth:`~prmodel.measure.store.MeasurementStore.claim`, one write transaction): a point is
claimed only if it is not measured yet and no other live sweep holds it. Points another
sweep holds are left to it; this sweep comes back to them at the end and takes them over
only if they are still not measured and their claim has lapsed.

A claim lasts :data:`LEASE_S` seconds and is renewed every :data:`HEARTBEAT_S` by a thread
of the sweep (with its own connection), so a sweep that dies stops renewing: its claims
lapse within a lease. On the same host a claim of a process that no longer exists counts as
lapsed at once, so a sweep killed with SIGKILL and run again resumes without waiting.

The owner of a claim is ``host:pid:token``. One writer that hands points to others (the Ray
driver of :mod:`prmodel.measure.cluster`) holds one :class:`Claims` for all its points.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from types import TracebackType

from prmodel.errors import PrmodelError
from prmodel.measure.store import MeasurementStore

LEASE_S = 60.0
"""How long a claim holds without renewal."""

HEARTBEAT_S = 15.0
"""How often a sweep renews its claims."""


def new_owner() -> str:
    """A claim owner unique to this process and call: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """Whether the process that holds a claim may still run (unknown hosts: assumed so)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user
    return True


class Claims:
    """The claims of one sweep (or one cluster driver) on a store, renewed while it runs.

    Use it as a context manager: on exit the heartbeat stops and every claim is released.

    Args:
        store: The store whose points are claimed.
        target_id: The target of the points.
        fingerprint_hash: The exact hardware and software they are measured on.
        skip_measured: Never claim a point already stored (False when measuring again).
        lease_s: How long a claim holds without renewal.
        heartbeat_s: How often the claims are renewed.
    """

    def __init__(
        self,
        store: MeasurementStore,
        target_id: str,
        fingerprint_hash: str,
        *,
        skip_measured: bool = True,
        lease_s: float = LEASE_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.store = store
        self.target_id = target_id
        self.fingerprint_hash = fingerprint_hash
        self.skip_measured = skip_measured
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.owner = new_owner()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, keys: Sequence[str]) -> list[str]:
        """Claim what can be claimed of ``keys``; returns the keys now held, in order."""
        return self.store.claim(
            self.target_id,
            self.fingerprint_hash,
            keys,
            owner=self.owner,
            lease_s=self.lease_s,
            alive=owner_alive,
            skip_measured=self.skip_measured,
        )

    def release(self, keys: Sequence[str] | None = None) -> None:
        """Let go of ``keys`` (of every claim where None)."""
        self.store.release_claims(self.owner, keys)

    def __enter__(self) -> Claims:
        self._thread = threading.Thread(target=self._beat, name="prmodel-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()

    def _beat(self) -> None:
        # Its own connection: an SQLite connection belongs to the thread that made it.
        while not self._stop.wait(self.heartbeat_s):
            try:
                with MeasurementStore(self.store.path) as store:
                    store.renew_claims(self.owner, lease_s=self.lease_s)
            except (PrmodelError, sqlite3.Error):
                continue  # a busy store: the next beat renews; a lease outlasts a few misses


__all__ = ["HEARTBEAT_S", "LEASE_S", "Claims", "new_owner", "owner_alive"]
