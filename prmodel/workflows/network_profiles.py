"""The network-profile data set: every kernel of every profiled network, one Parquet per target.

``prmodel learn`` profiles whole networks and keeps what it measured in
``sweeps/network-profiles/<target_id>.parquet``, one row per kernel the estimator maps
(:data:`PROFILE_COLUMNS`): who measured it (target id, fingerprint, protocol), which network
(its name and the hash of the builder settings that made it), the network's measured
latency, and the kernel (op, mapped layer, bytes, profiled time). A rerun on the same
machine with the same protocol reuses every network already in the file; rows of other
machines or protocols stay in the file and are left out.

The file is rewritten whole and atomically after every measured batch of networks, so an
interrupted run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.errors import PrmodelError, first_line
from prmodel.estimate.compare import Comparison
from prmodel.estimate.op_costs import CalibrationSample, in_network_us
from prmodel.layers import LayerConfig
from prmodel.measure.frames import LAYER_COLUMNS, layers_from_frame
from prmodel.networks import NetworkMeasureSettings
from prmodel.workspace import Workspace

PROFILE_SET = "network-profiles"
"""The data set's name (its folder under ``sweeps/``, and what model cards call it)."""
PROFILE_FORMAT = 1
"""Bumped when the meaning of a column changes (part of the protocol)."""

IDENTITY_COLUMNS: tuple[str, ...] = (
    "target_id",
    "fingerprint_hash",
    "fingerprint",
    "protocol_hash",
    "protocol",
)
NETWORK_COLUMNS: tuple[str, ...] = (
    "network",
    "network_hash",
    "builder",
    "network_options",
    "measured_at",
    "measure_batch",
    "seconds",
    "network_total_us",
    "network_spread_pct",
    "round_medians_us",
)
KERNEL_COLUMNS: tuple[str, ...] = (
    "kernel",
    "node",
    "op",
    "fused",
    "status",
    "output_shape",
    "bytes_moved",
    "weight_bytes",
    "measured_us",
    *LAYER_COLUMNS,
)
PROFILE_COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, *NETWORK_COLUMNS, *KERNEL_COLUMNS)
"""Columns of the data set. ``fingerprint`` and ``protocol`` are JSON texts (``protocol``:
the measure settings and :data:`PROFILE_FORMAT`); ``network_options`` the builder's options
as JSON; ``measure_batch`` the batch it was measured in (numbered per run); ``seconds`` the
wall time that building, measuring and mapping the network took (its share of its batch);
``round_medians_us`` a JSON list; ``kernel`` the kernel's position in the network;
``status`` ``free`` for kernels that do no work, else ``timed``; ``measured_us`` the kernel's
profiled time (median per run, NaN where the profile has none); the layer columns describe
the mapped layer (empty where there is none)."""


class ProfileSetError(PrmodelError, ValueError):
    """A network-profile file that cannot be read or does not hold what it should."""


def profiles_path(workspace: Workspace, target_id: str) -> Path:
    """Where a target's network profiles live: ``sweeps/network-profiles/<target_id>.parquet``."""
    return workspace.sweeps_dir / PROFILE_SET / f"{target_id}.parquet"


def protocol(settings: NetworkMeasureSettings) -> dict[str, Any]:
    """What decides how a network's kernels were timed (rows of another protocol are not
    mixed with these)."""
    recorded = asdict(settings)
    if not settings.adaptive:  # fixed rounds: the protocol of data sets written before both
        recorded.pop("max_rounds")
        recorded.pop("settle_pct")
    return {"format": PROFILE_FORMAT, "settings": recorded}


def protocol_hash(settings: NetworkMeasureSettings) -> str:
    """A short digest of :func:`protocol`."""
    text = json.dumps(protocol(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def profile_rows(
    comparison: Comparison,
    *,
    identity: Mapping[str, str],
    network: Mapping[str, Any],
) -> pd.DataFrame:
    """The data set's rows for one measured network.

    Args:
        comparison: The network's kernel table (from a model-less estimate) joined with its
            profiled times.
        identity: The values of :data:`IDENTITY_COLUMNS`.
        network: The values of :data:`NETWORK_COLUMNS` other than the measured latency
            (``network``, ``network_hash``, ``builder``, ``network_options``,
            ``measured_at``, ``measure_batch``, ``seconds``).
    """
    table = comparison.layers.reset_index(drop=True)
    measurement = comparison.measurement
    rows = pd.DataFrame({name: table[name] for name in ("node", "op", "fused", "output_shape")})
    rows.insert(0, "kernel", np.arange(len(table)))
    rows["status"] = np.where(table["status"] == "free", "free", "timed")
    rows["bytes_moved"] = table["bytes_moved"].astype("int64")
    rows["weight_bytes"] = table["weight_bytes"].astype("int64")
    rows["measured_us"] = table["measured_us"].astype("float64")
    for name in LAYER_COLUMNS:
        rows[name] = table[name]
    for name, value in reversed(list(identity.items())):
        rows.insert(0, name, value)
    values = {
        **network,
        "network_total_us": measurement.total_us,
        "network_spread_pct": measurement.spread_pct,
        "round_medians_us": json.dumps(list(measurement.round_medians_us)),
    }
    for position, name in enumerate(NETWORK_COLUMNS):
        rows.insert(len(IDENTITY_COLUMNS) + position, name, values[name])
    return rows[list(PROFILE_COLUMNS)]


def read_profiles(path: Path) -> pd.DataFrame:
    """The data set at ``path`` (an empty frame with its columns where there is no file).

    Raises:
        ProfileSetError: an unreadable file, or one that lacks columns of the data set.
    """
    if not path.exists():
        return pd.DataFrame(columns=list(PROFILE_COLUMNS))
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own errors for truncated or foreign files
        raise ProfileSetError(
            f"network-profile file {path} is unreadable ({first_line(exc)}); move it away "
            "to measure again"
        ) from None
    missing = [name for name in PROFILE_COLUMNS if name not in frame.columns]
    if missing:
        raise ProfileSetError(
            f"network-profile file {path} lacks the columns {', '.join(missing)}; it was not "
            "written by this version of prmodel learn (move it away to measure again)"
        )
    return frame


def write_profiles(path: Path, frame: pd.DataFrame) -> Path:
    """Write the data set atomically (the parent folders are created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _plain_types(frame).to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def append_profiles(path: Path, rows: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Add networks' rows to the data set at ``path`` (replacing earlier rows of the same
    network, machine and protocol); returns the whole data set."""
    frame = read_profiles(path)
    new = pd.concat(list(rows), ignore_index=True) if rows else frame.iloc[:0]
    if len(frame) and len(new):
        keys = ["target_id", "fingerprint_hash", "protocol_hash", "network"]
        replaced = frame.set_index(keys).index.isin(new.set_index(keys).index)
        frame = frame[~replaced]
    kept = [f for f in (frame, new) if len(f)]
    whole = pd.concat(kept, ignore_index=True) if kept else frame
    write_profiles(path, whole)
    return whole


def matching_rows(
    frame: pd.DataFrame, *, target_id: str, fingerprint_hash: str, protocol_hash: str
) -> pd.DataFrame:
    """The rows measured by this target on this machine with this protocol."""
    keep = (
        (frame["target_id"] == target_id)
        & (frame["fingerprint_hash"] == fingerprint_hash)
        & (frame["protocol_hash"] == protocol_hash)
    )
    return frame[keep].reset_index(drop=True)


def kernel_layers(frame: pd.DataFrame) -> list[LayerConfig | None]:
    """Each row's mapped layer (None for kernels without one)."""
    layers: list[LayerConfig | None] = [None] * len(frame)
    mapped = frame["kind"].notna().to_numpy()
    if mapped.any():
        for index, layer in zip(
            np.flatnonzero(mapped), layers_from_frame(frame[mapped]), strict=True
        ):
            layers[int(index)] = layer
    return layers


def in_network_times(rows: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Each kernel's profiled time less the profiler's own cost (per network; NaN: none).

    ``rows`` must have a default index (0..n-1)."""
    times = np.full(len(rows), np.nan)
    for name, group in rows.groupby("network", sort=False):
        sample = CalibrationSample(
            name=str(name),
            measured_us=float(group["network_total_us"].iloc[0]),
            kernels=group[["status", "measured_us"]].reset_index(drop=True),
        )
        times[group.index] = in_network_us(sample)
    return times


def _plain_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer layer columns stay integers; objects become text or None."""
    out = frame.copy()
    for name in LAYER_COLUMNS:
        if name in ("kind", "activation"):
            out[name] = out[name].astype("object").where(out[name].notna(), None)
        elif name == "residual":
            out[name] = out[name].astype("boolean")
        else:
            out[name] = out[name].astype("Int64")
    return out


__all__ = [
    "IDENTITY_COLUMNS",
    "KERNEL_COLUMNS",
    "NETWORK_COLUMNS",
    "PROFILE_COLUMNS",
    "PROFILE_FORMAT",
    "PROFILE_SET",
    "ProfileSetError",
    "append_profiles",
    "in_network_times",
    "kernel_layers",
    "matching_rows",
    "profile_rows",
    "profiles_path",
    "protocol",
    "protocol_hash",
    "read_profiles",
    "write_profiles",
]
