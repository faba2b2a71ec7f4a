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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.frames import LAYER_COLUMNS, layers_from_frame
from prmodel.targets.base import fingerprint_hash

SCHEMA_VERSION = 1

Status = Literal["ok", "error"]

STAT_COLUMNS: tuple[str, ...] = (
    "latency_us",
    "median_us",
    "min_us",
    "p10_us",
    "p90_us",
    "mean_us",
    "n",
    "rounds",
    "wall_median_us",
    "reorder_median_us",
)
"""The measured numbers of a row, in column order."""

FRAME_COLUMNS: tuple[str, ...] = (
    *LAYER_COLUMNS,
    "layer_key",
    "target_id",
    "fingerprint_hash",
    "status",
    "error",
    *STAT_COLUMNS,
    "extra",
    "measured_at",
)
"""Every column of :meth:`MeasurementStore.frame`, in order."""

_INT_LAYER_COLUMNS = tuple(c for c in LAYER_COLUMNS if c not in ("kind", "activation", "residual"))

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    fingerprint TEXT,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash)
);
CREATE TABLE IF NOT EXISTS measurements (
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    {", ".join(f"{c} INTEGER NOT NULL" for c in _INT_LAYER_COLUMNS)},
    activation TEXT,
    residual INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    latency_us REAL, median_us REAL, min_us REAL, p10_us REAL, p90_us REAL, mean_us REAL,
    n INTEGER NOT NULL, rounds INTEGER NOT NULL,
    wall_median_us REAL, reorder_median_us REAL,
    extra TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    PRIMARY KEY (target_id, fingerprint_hash, layer_key)
);
CREATE INDEX IF NOT EXISTS measurements_kind ON measurements (target_id, kind);
CREATE TABLE IF NOT EXISTS plan_members (
    plan TEXT NOT NULL,
    target_id TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    layer_key TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (plan, target_id, fingerprint_hash, layer_key)
);
CREATE INDEX IF NOT EXISTS plan_members_layer
    ON plan_members (target_id, fingerprint_hash, layer_key);
"""


class StoreError(PrmodelError):
    """A store that cannot be opened or written, or an export to an unknown format."""


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, as stored in ``measured_at``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """The result of benchmarking one layer on one target (see the module docstring).

    A failed layer has ``status="error"``, its reason in ``error`` and no numbers.
    """

    layer: LayerConfig
    target_id: str
    fingerprint_hash: str
    status: Status = "ok"
    error: str | None = None
    latency_us: float | None = None
    median_us: float | None = None
    min_us: float | None = None
    p10_us: float | None = None
    p90_us: float | None = None
    mean_us: float | None = None
    n: int = 0
    rounds: int = 0
    wall_median_us: float | None = None
    reorder_median_us: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)
    measured_at: str = field(default_factory=utc_now)

    @classmethod
    def failed(
        cls, layer: LayerConfig, *, target_id: str, fingerprint_hash: str, error: str
    ) -> Measurement:
        """A measurement recording that ``layer`` could not be built or run."""
        return cls(
            layer=layer,
            target_id=target_id,
            fingerprint_hash=fingerprint_hash,
            status="error",
            error=error,
        )

    @property
    def layer_key(self) -> str:
        return self.layer.key


class MeasurementStore:
    """An SQLite file of measurements, plan memberships and target fingerprints.

    Example::

        with MeasurementStore(workspace.store_path) as store:
            store.record(measurement)
            frame = store.frame(target_id="ort-cpu-t1-all", kind="conv")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open measurement store {self.path}: {exc}") from None

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

    def _create_schema(self) -> None:
        with self._conn:
            self._conn.executescript(_SCHEMA)
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

    def record(self, measurement: Measurement) -> None:
        """Store ``measurement`` (replacing an earlier one of the same layer) and commit."""
        row = _measurement_row(measurement)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO targets VALUES (?, ?, NULL, ?)",
                (measurement.target_id, measurement.fingerprint_hash, utc_now()),
            )
            self._conn.execute(
                f"INSERT OR REPLACE INTO measurements ({names}) VALUES ({marks})",
                tuple(row.values()),
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
        return _typed_frame(pd.DataFrame(rows, columns=list(FRAME_COLUMNS)))

    def _load_key_filter(self, layer_keys: Iterable[str]) -> None:
        # A temp table instead of "IN (?, ?, ...)": key lists can exceed SQLite's variable cap.
        with self._conn:
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

        Raises:
            StoreError: a suffix other than .parquet or .csv.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".csv"):
            raise StoreError(f"cannot export to {path}: the file name must end in .parquet or .csv")
        frame = self.frame(**filters)
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return len(frame)


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


def _measurement_row(m: Measurement) -> dict[str, Any]:
    layer = m.layer
    row: dict[str, Any] = {name: getattr(layer, name) for name in LAYER_COLUMNS}
    row["kind"] = layer.kind.value
    row["residual"] = int(layer.residual)
    row.update(
        layer_key=layer.key,
        target_id=m.target_id,
        fingerprint_hash=m.fingerprint_hash,
        status=m.status,
        error=m.error,
    )
    row.update({name: getattr(m, name) for name in STAT_COLUMNS})
    row["extra"] = json.dumps(dict(m.extra), sort_keys=True)
    row["measured_at"] = m.measured_at
    return row


def _typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    for column in (*_INT_LAYER_COLUMNS, "n", "rounds"):
        frame[column] = frame[column].astype("int64")
    frame["residual"] = frame["residual"].astype(bool)
    for column in STAT_COLUMNS:
        if column not in ("n", "rounds"):
            frame[column] = frame[column].astype("float64")
    return frame


def measurement_from_row(row: Mapping[str, Any]) -> Measurement:
    """Rebuild a :class:`Measurement` from one row of :meth:`MeasurementStore.frame`."""
    layer = layers_from_frame(pd.DataFrame([dict(row)]))[0]

    def number(name: str) -> float | None:
        value = row[name]
        return None if value is None or pd.isna(value) else float(value)

    error = row["error"]
    return Measurement(
        layer=layer,
        target_id=str(row["target_id"]),
        fingerprint_hash=str(row["fingerprint_hash"]),
        status="error" if row["status"] == "error" else "ok",
        error=None if error is None or pd.isna(error) else str(error),
        latency_us=number("latency_us"),
        median_us=number("median_us"),
        min_us=number("min_us"),
        p10_us=number("p10_us"),
        p90_us=number("p90_us"),
        mean_us=number("mean_us"),
        n=int(row["n"]),
        rounds=int(row["rounds"]),
        wall_median_us=number("wall_median_us"),
        reorder_median_us=number("reorder_median_us"),
        extra={k: float(v) for k, v in json.loads(row["extra"]).items()},
        measured_at=str(row["measured_at"]),
    )


__all__ = [
    "FRAME_COLUMNS",
    "SCHEMA_VERSION",
    "Measurement",
    "MeasurementStore",
    "StoreError",
    "measurement_from_row",
    "utc_now",
]
