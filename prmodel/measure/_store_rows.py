"""A measurement as a record, and as the row the store keeps of it (columns: see the store)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from prmodel.layers import LayerConfig
from prmodel.measure.frames import LAYER_COLUMNS, layers_from_frame

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

INT_LAYER_COLUMNS = tuple(c for c in LAYER_COLUMNS if c not in ("kind", "activation", "residual"))


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


@dataclass(frozen=True)
class WorkerStamp:
    """Which cluster worker measured a point: its name (node and process) and its host."""

    worker: str
    host: str


def measurement_row(m: Measurement) -> dict[str, Any]:
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


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    for column in (*INT_LAYER_COLUMNS, "n", "rounds"):
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
