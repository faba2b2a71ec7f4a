"""The measurement store: every benchmark result, in one SQLite file, committed as it is made.

The store is the single source of truth for measurements. It runs SQLite in WAL mode and
commits each :class:`Measurement` as soon as :meth:`MeasurementStore.record` is called, so a
sweep killed at any instant (Ctrl-C, SIGKILL) loses at most the point it was measuring, and a
re-run resumes from what is stored. ``synchronous=NORMAL`` is enough for that: in WAL mode a
committed transaction is in the WAL file (at least in the OS page cache) before ``commit``
returns, which a killed process cannot undo; only a power loss or kernel crash can lose the
last few commits, and FULL would cost an fsync per point to guard against that.

Tables (schema version :data:`SCHEMA_VERSION`):

- ``schema_version(version)``: one row.
- ``targets(target_id, fingerprint_hash, fingerprint, first_seen)``: every target measured,
  with its fingerprint as JSON (hardware and software identity).
- ``measurements``: one row per (target_id, fingerprint_hash, layer_key); re-recording a layer
  replaces its row (upsert).
- ``plan_members(plan, target_id, fingerprint_hash, layer_key, added_at)``: which named plans
  requested which layers (many-to-many; a point measured once can belong to many plans).
- ``measured_by(target_id, fingerprint_hash, layer_key, worker, host)``: the cluster worker
  (:mod:`prmodel.measure.cluster`) that measured a point; points of local sweeps have no row.
  Added without a schema version change: older stores get the table when opened.
- ``claims(target_id, fingerprint_hash, layer_key, owner, expires_at)``: points a running
  sweep is measuring, so that a concurrent sweep on the same store leaves them alone
  (:mod:`prmodel.measure.claims`); a claim lapses at ``expires_at`` (seconds since the epoch)
  unless renewed. Also added without a schema version change.

Columns of :meth:`MeasurementStore.frame` (and of exports), one row per measured layer:

- every :class:`~prmodel.layers.LayerConfig` field (``kind``, ``batch``, ``channels``,
  ``height``, ``width``, ``out_channels``, ``kernel_h`` ... ``groups``, ``activation``,
  ``residual``; see :data:`prmodel.measure.frames.LAYER_COLUMNS`) and ``layer_key``;
- ``target_id``, ``fingerprint_hash``: the target and the exact hardware/software measured;
- ``status`` (``"ok"`` or ``"error"``) and ``error`` (the reason, for errors);
- ``latency_us``: THE modelled quantity. For noisy targets the minimum over interleaved
  round medians of the layer's own kernel time; for deterministic targets the exact value;
- ``median_us``, ``min_us``, ``p10_us``, ``p90_us``, ``mean_us``: kernel-time statistics of
  all accepted calls; ``n`` calls in ``rounds`` rounds;
- ``wall_median_us``: median caller-side time of a whole run; ``reorder_median_us``: median
  layout-conversion time around the lone layer (empty where the target has none);
- ``extra``: JSON text of target- and runner-specific numbers (confidence half-width, canary
  disturbances, cycles, ...); ``measured_at``: ISO 8601 UTC time of the measurement.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from prmodel.layers import LayerKind, parse_kind
from prmodel.measure._store_file import (
    SCHEMA,
    SCHEMA_VERSION,
    StoreError,
    connect_readonly,
    corrupt_message,
    create_atomically,
    open_problem,
    refuse_unusable,
    shadow_missing_tables,
)
from prmodel.measure._store_rows import (
    FRAME_COLUMNS,
    Measurement,
    WorkerStamp,
    measurement_from_row,
    measurement_row,
    typed_frame,
    utc_now,
)
from prmodel.targets.base import fingerprint_hash


class MeasurementStore:
    """An SQLite file of measurements, plan memberships and target fingerprints.

    Example::

        with MeasurementStore(workspace.store_path) as store:
            store.record(measurement)
            frame = store.frame(target_id="ort-cpu-avx2-3f9c-t1-all", kind="conv")
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, check: bool = False) -> None:
        """Open the store at ``path``, creating it (and its folder) if it does not exist.

        Args:
            path: The SQLite file.
            readonly: Only read: nothing is written, not even the WAL's shared-memory file,
                so a store on read-only media (a shared drive, a container layer) opens.
            check: Refuse a store that fails SQLite's quick integrity check.

        Raises:
            StoreError: a folder or an empty (0-byte) file at ``path``, no store there
                (``readonly``), a read-only store opened for writing, a store that is not
                SQLite or fails the check (the message says how to recover).
        """
        self.path = Path(path)
        self.readonly = readonly
        refuse_unusable(self.path, readonly=readonly)
        try:
            if readonly:
                self._conn = connect_readonly(self.path)
            else:
                create_atomically(self.path)
                self._conn = sqlite3.connect(self.path, timeout=30.0)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(open_problem(self.path, exc)) from None
        if check:
            problems = self.integrity_problems(quick=True)
            if problems:
                self._conn.close()
                raise StoreError(corrupt_message(self.path, problems))

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        self._conn.close()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def integrity_problems(self, *, quick: bool = False) -> list[str]:
        """What SQLite's ``integrity_check`` (``quick_check``: faster, fewer checks) finds
        wrong with the file; empty for a sound store."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            rows = self._conn.execute(f"PRAGMA {pragma}(20)").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(row[0]) for row in rows]
        return [] if found == ["ok"] else found

    def check_integrity(self) -> None:
        """Run SQLite's full integrity check.

        Raises:
            StoreError: the file is damaged; the message says how to recover what is readable.
        """
        problems = self.integrity_problems()
        if problems:
            raise StoreError(corrupt_message(self.path, problems))

    def _create_schema(self) -> None:
        if self.readonly:
            shadow_missing_tables(self._conn)
            self._check_version()
            return
        with self._conn:
            self._conn.executescript(SCHEMA)
            self._check_version()

    def _check_version(self) -> None:
        with self._conn:
            rows = self._conn.execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                self._conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif rows[0][0] != SCHEMA_VERSION:
                raise StoreError(
                    f"measurement store {self.path} has schema version {rows[0][0]}, "
                    f"this prmodel reads version {SCHEMA_VERSION}"
                )

    # -- writing -----------------------------------------------------------------------------
    def register_target(self, target_id: str, fingerprint: Mapping[str, Any]) -> str:
        """Remember a target's fingerprint; returns its hash (the key measurements use)."""
        digest = fingerprint_hash(fingerprint)
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        with self._conn:
            self._conn.execute(
                "INSERT INTO targets VALUES (?, ?, ?, ?) ON CONFLICT (target_id, "
                "fingerprint_hash) DO UPDATE SET fingerprint = excluded.fingerprint",
                (target_id, digest, text, utc_now()),
            )
        return digest

    def record(self, measurement: Measurement, *, worker: WorkerStamp | None = None) -> None:
        """Store ``measurement`` (replacing an earlier one of the same layer) and commit.

        ``worker``: the cluster worker that measured it; None (a local sweep) drops the
        stamp an earlier measurement of the layer may have had.
        """
        row = measurement_row(measurement)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        key = (measurement.target_id, measurement.fingerprint_hash, measurement.layer_key)
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO targets VALUES (?, ?, NULL, ?)",
                (measurement.target_id, measurement.fingerprint_hash, utc_now()),
            )
            self._conn.execute(
                f"INSERT OR REPLACE INTO measurements ({names}) VALUES ({marks})",
                tuple(row.values()),
            )
            if worker is None:
                self._conn.execute(
                    "DELETE FROM measured_by WHERE target_id = ? AND fingerprint_hash = ? "
                    "AND layer_key = ?",
                    key,
                )
            else:
                self._conn.execute(
                    "INSERT OR REPLACE INTO measured_by VALUES (?, ?, ?, ?, ?)",
                    (*key, worker.worker, worker.host),
                )

    def add_to_plan(
        self, plan: str, target_id: str, fingerprint_hash: str, layer_keys: Iterable[str]
    ) -> None:
        """Record that ``plan`` requested the layers ``layer_keys`` on this target."""
        now = utc_now()
        with self._conn:
            self._conn.executemany(
                "INSERT OR IGNORE INTO plan_members VALUES (?, ?, ?, ?, ?)",
                ((plan, target_id, fingerprint_hash, key, now) for key in layer_keys),
            )

    def set_plan_members(
        self, plan: str, target_id: str, fingerprint_hash: str, layer_keys: Iterable[str]
    ) -> int:
        """Make ``layer_keys`` the whole of ``plan`` on ``target_id``: members it no longer
        requests are dropped, the new ones added. Another target's members of a plan of the
        same name are left alone (``prmodel plan`` draws different layers per target under
        one name). Returns how many members were dropped (0 when nothing changed)."""
        keys = list(dict.fromkeys(layer_keys))
        now = utc_now()
        with self._conn:
            self._load_key_filter(keys, commit=False)
            dropped = self._conn.execute(
                "DELETE FROM plan_members WHERE plan = ? AND target_id = ? AND layer_key NOT IN "
                "(SELECT layer_key FROM temp.key_filter)",
                (plan, target_id),
            ).rowcount
            self._conn.executemany(
                "INSERT OR IGNORE INTO plan_members VALUES (?, ?, ?, ?, ?)",
                ((plan, target_id, fingerprint_hash, key, now) for key in keys),
            )
        return int(dropped)

    # -- claims of concurrent sweeps ---------------------------------------------------------
    def claim(
        self,
        target_id: str,
        fingerprint_hash: str,
        layer_keys: Iterable[str],
        *,
        owner: str,
        lease_s: float,
        alive: Callable[[str], bool] | None = None,
        skip_measured: bool = True,
    ) -> list[str]:
        """Claim points for ``owner`` for ``lease_s`` seconds; returns the keys it now holds.

        In one write transaction, so two sweeps never hold the same point: a point is
        claimed unless it is already measured (with ``skip_measured``) or held by another
        owner whose claim has not lapsed and who is ``alive`` (default: everyone). The
        owner's own claims among ``layer_keys`` are renewed.
        """
        keys = list(dict.fromkeys(layer_keys))
        now = time.time()
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._load_key_filter(keys, commit=False)
            measured = set()
            if skip_measured:
                measured = {
                    key
                    for (key,) in self._conn.execute(
                        "SELECT layer_key FROM measurements WHERE target_id = ? AND "
                        "fingerprint_hash = ? AND layer_key IN "
                        "(SELECT layer_key FROM temp.key_filter)",
                        (target_id, fingerprint_hash),
                    )
                }
            holders = dict(
                self._conn.execute(
                    "SELECT layer_key, owner FROM claims WHERE target_id = ? AND "
                    "fingerprint_hash = ? AND expires_at > ? AND layer_key IN "
                    "(SELECT layer_key FROM temp.key_filter)",
                    (target_id, fingerprint_hash, now),
                ).fetchall()
            )
            living = {h: alive is None or h == owner or alive(h) for h in set(holders.values())}
            mine = [
                key
                for key in keys
                if key not in measured
                and (key not in holders or holders[key] == owner or not living[holders[key]])
            ]
            self._conn.executemany(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                ((target_id, fingerprint_hash, key, owner, now + lease_s) for key in mine),
            )
        return mine

    def renew_claims(self, owner: str, *, lease_s: float) -> None:
        """Extend every claim of ``owner`` to ``lease_s`` seconds from now."""
        with self._conn:
            self._conn.execute(
                "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + lease_s, owner)
            )

    def release_claims(self, owner: str, layer_keys: Iterable[str] | None = None) -> None:
        """Drop the claims of ``owner`` (only on ``layer_keys`` where given)."""
        with self._conn:
            if layer_keys is None:
                self._conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
                return
            self._conn.executemany(
                "DELETE FROM claims WHERE owner = ? AND layer_key = ?",
                ((owner, key) for key in layer_keys),
            )

    # -- reading -----------------------------------------------------------------------------
    def measured_keys(self, target_id: str, fingerprint_hash: str) -> set[str]:
        """Keys of every layer stored for this target, measured fine or failed."""
        rows = self._conn.execute(
            "SELECT layer_key FROM measurements WHERE target_id = ? AND fingerprint_hash = ?",
            (target_id, fingerprint_hash),
        )
        return {key for (key,) in rows}

    def get(self, target_id: str, fingerprint_hash: str, layer_key: str) -> Measurement | None:
        """The stored measurement of one layer, or None."""
        frame = self.frame(
            target_id=target_id,
            fingerprint_hash=fingerprint_hash,
            layer_keys=[layer_key],
            include_errors=True,
        )
        if frame.empty:
            return None
        return measurement_from_row(frame.iloc[0].to_dict())

    def frame(
        self,
        *,
        target_id: str | None = None,
        fingerprint_hash: str | None = None,
        kind: LayerKind | str | None = None,
        layer_keys: Iterable[str] | None = None,
        plan: str | None = None,
        include_errors: bool = False,
    ) -> pd.DataFrame:
        """Stored measurements as a DataFrame with the columns of :data:`FRAME_COLUMNS`.

        Args:
            target_id: only this target (all fingerprints of it unless ``fingerprint_hash``).
            fingerprint_hash: only this exact hardware/software identity.
            kind: only this layer kind.
            layer_keys: only these layers.
            plan: only layers that this named plan requested.
            include_errors: also rows of layers that failed (``status == "error"``).
        """
        where, params = _filters(target_id, fingerprint_hash, kind, plan, include_errors)
        if layer_keys is not None:
            self._load_key_filter(layer_keys)
            where.append("m.layer_key IN (SELECT layer_key FROM temp.key_filter)")
        sql = f"SELECT {', '.join(f'm.{c}' for c in FRAME_COLUMNS)} FROM measurements m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY m.target_id, m.kind, m.measured_at, m.layer_key"
        rows = self._conn.execute(sql, params).fetchall()
        return typed_frame(pd.DataFrame(rows, columns=list(FRAME_COLUMNS)))

    def _load_key_filter(self, layer_keys: Iterable[str], *, commit: bool = True) -> None:
        # A temp table instead of "IN (?, ?, ...)": key lists can exceed SQLite's variable cap.
        # commit=False: inside a transaction the caller commits.
        with self._conn if commit else nullcontext():
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS key_filter (layer_key TEXT)")
            self._conn.execute("DELETE FROM temp.key_filter")
            self._conn.executemany(
                "INSERT INTO temp.key_filter VALUES (?)", ((k,) for k in layer_keys)
            )

    def targets(self) -> pd.DataFrame:
        """Every target seen: target_id, fingerprint_hash, fingerprint (JSON), first_seen."""
        rows = self._conn.execute(
            "SELECT target_id, fingerprint_hash, fingerprint, first_seen FROM targets "
            "ORDER BY first_seen, target_id"
        ).fetchall()
        return pd.DataFrame(
            rows, columns=["target_id", "fingerprint_hash", "fingerprint", "first_seen"]
        )

    def plan_names(self, *, target_id: str | None = None) -> list[str]:
        """Names of the plans recorded in the store (for one target if given), sorted."""
        sql = "SELECT DISTINCT plan FROM plan_members"
        params: tuple[str, ...] = ()
        if target_id is not None:
            sql += " WHERE target_id = ?"
            params = (target_id,)
        return sorted(name for (name,) in self._conn.execute(sql + " ORDER BY plan", params))

    def summary(self) -> pd.DataFrame:
        """Counts of stored layers per target, kind and status."""
        rows = self._conn.execute(
            "SELECT target_id, kind, SUM(status = 'ok'), SUM(status = 'error'), "
            "MAX(measured_at) FROM measurements GROUP BY target_id, kind "
            "ORDER BY target_id, kind"
        ).fetchall()
        return pd.DataFrame(rows, columns=["target_id", "kind", "ok", "error", "last_measured"])

    def workers(self) -> pd.DataFrame:
        """Which cluster worker measured what: per target, host and worker, the points
        (``ok``, ``error``), the first and last ``measured_at``, and ``canary_us``, the median
        canary time of its points (µs of wall time; NaN for deterministic targets), which
        shows a host slower than its peers. Empty where no point came from a cluster.
        """
        columns = ["target_id", "host", "worker", "ok", "error", "first", "last", "canary_us"]
        found = self._conn.execute(
            "SELECT m.target_id, w.host, w.worker, m.status, m.measured_at, m.extra "
            "FROM measured_by w JOIN measurements m ON m.target_id = w.target_id AND "
            "m.fingerprint_hash = w.fingerprint_hash AND m.layer_key = w.layer_key"
        ).fetchall()
        if not found:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(
            [
                (t, host, worker, status == "ok", status != "ok", at, json.loads(extra))
                for t, host, worker, status, at, extra in found
            ],
            columns=["target_id", "host", "worker", "ok", "error", "at", "extra"],
        )
        frame["canary_us"] = [float(e.get("canary_us", "nan")) for e in frame["extra"]]
        grouped = frame.groupby(["target_id", "host", "worker"], as_index=False).agg(
            ok=("ok", "sum"),
            error=("error", "sum"),
            first=("at", "min"),
            last=("at", "max"),
            canary_us=("canary_us", "median"),
        )
        return grouped[columns].sort_values(["target_id", "first", "worker"], ignore_index=True)

    def machine_speed(self) -> pd.DataFrame:
        """How fast the machine was, hour by hour, judged by the sweep's canary.

        Every point measured on a noisy target keeps ``canary_us`` in ``extra``: the median
        wall time of the same fixed conv (``prmodel.measure.runner.CANARY_LAYER``) in the rounds
        that
        measured the point. Per target, fingerprint and hour of ``measured_at`` this gives the
        points, the canary's median and ``relative``: that median over the fastest hour's of
        the same target and fingerprint (1.10: the machine ran 10 % slower than at its best,
        and so, roughly, did the layers measured then). Empty where no point has a canary.
        """
        columns = ["target_id", "fingerprint", "hour", "points", "canary_us", "relative"]
        found = self._conn.execute(
            "SELECT target_id, fingerprint_hash, substr(measured_at, 1, 13), extra "
            "FROM measurements WHERE status = 'ok' AND extra LIKE '%canary_us%'"
        ).fetchall()
        rows = [
            (target, digest[:8], hour, float(json.loads(extra)["canary_us"]))
            for target, digest, hour, extra in found
        ]
        if not rows:
            return pd.DataFrame(columns=columns)
        frame = pd.DataFrame(rows, columns=["target_id", "fingerprint", "hour", "canary_us"])
        keys = ["target_id", "fingerprint", "hour"]
        hourly = frame.groupby(keys, as_index=False).agg(
            points=("canary_us", "size"), canary_us=("canary_us", "median")
        )
        fastest = hourly.groupby(["target_id", "fingerprint"])["canary_us"].transform("min")
        hourly["relative"] = hourly["canary_us"] / fastest
        return hourly[columns].sort_values(keys, ignore_index=True)

    # -- export ------------------------------------------------------------------------------
    def export(self, path: str | Path, **filters: Any) -> int:
        """Write :meth:`frame` (with ``filters``) to ``.parquet`` or ``.csv``; returns rows.

        Every row also carries its target's ``fingerprint`` (JSON, as registered), so the
        file says on its own which machine and runtime measured it.

        Raises:
            StoreError: a suffix other than .parquet or .csv.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if path.is_dir():
            raise StoreError(f"cannot export to {path}: it is a folder; name a file")
        if suffix not in (".parquet", ".csv"):
            raise StoreError(f"cannot export to {path}: the file name must end in .parquet or .csv")
        frame = self.frame(**filters)
        fingerprints = self.targets()[["target_id", "fingerprint_hash", "fingerprint"]]
        frame = frame.merge(fingerprints, on=["target_id", "fingerprint_hash"], how="left")
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return len(frame)

    # -- renaming ----------------------------------------------------------------------------
    def rename_target(self, old_id: str, new_id: str, fingerprint_hash: str) -> int:
        """Move every row of ``old_id`` with ``fingerprint_hash`` to ``new_id`` (``prmodel
        migrate``), in every table, in one transaction; returns the measurements moved.

        A point already stored under ``new_id`` keeps that (later) row; the old one is
        dropped.
        """
        tables = [
            name
            for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if {"target_id", "fingerprint_hash"}
            <= {row[1] for row in self._conn.execute(f"PRAGMA table_info({name})")}
        ]
        where = "WHERE target_id = ? AND fingerprint_hash = ?"
        moved = 0
        with self._conn:
            for table in tables:
                cursor = self._conn.execute(
                    f"UPDATE OR IGNORE {table} SET target_id = ? {where}",
                    (new_id, old_id, fingerprint_hash),
                )
                if table == "measurements":
                    moved = cursor.rowcount
                self._conn.execute(f"DELETE FROM {table} {where}", (old_id, fingerprint_hash))
        return moved


def _filters(
    target_id: str | None,
    fingerprint_hash: str | None,
    kind: LayerKind | str | None,
    plan: str | None,
    include_errors: bool,
) -> tuple[list[str], list[str]]:
    where: list[str] = []
    params: list[str] = []
    for column, value in (("target_id", target_id), ("fingerprint_hash", fingerprint_hash)):
        if value is not None:
            where.append(f"m.{column} = ?")
            params.append(value)
    if kind is not None:
        where.append("m.kind = ?")
        params.append(parse_kind(kind).value)
    if plan is not None:
        where.append(
            "EXISTS (SELECT 1 FROM plan_members p WHERE p.plan = ? AND p.target_id = "
            "m.target_id AND p.fingerprint_hash = m.fingerprint_hash AND "
            "p.layer_key = m.layer_key)"
        )
        params.append(plan)
    if not include_errors:
        where.append("m.status = 'ok'")
    return where, params


__all__ = [
    "FRAME_COLUMNS",
    "SCHEMA_VERSION",
    "Measurement",
    "MeasurementStore",
    "StoreError",
    "WorkerStamp",
    "measurement_from_row",
    "utc_now",
]
