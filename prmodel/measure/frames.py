"""Layers as DataFrame rows: the tabular form that stores, features and reports share.

A layer frame has one column per :class:`~prmodel.layers.LayerConfig` field (``kind``,
``batch``, ``channels``, ..., ``groups``, ``activation``, ``residual``) plus ``layer_key``.
Measurement frames add the measured columns documented in :mod:`prmodel.measure.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from prmodel.layers import LayerConfig, layer_fields

LAYER_COLUMNS: tuple[str, ...] = layer_fields()


def layers_to_frame(layers: Sequence[LayerConfig]) -> pd.DataFrame:
    """One row per layer, with every LayerConfig field and the layer's key."""
    rows = []
    for layer in layers:
        row = {name: getattr(layer, name) for name in LAYER_COLUMNS}
        row["kind"] = layer.kind.value
        row["layer_key"] = layer.key
        rows.append(row)
    return pd.DataFrame(rows, columns=[*LAYER_COLUMNS, "layer_key"])


def layers_from_frame(frame: pd.DataFrame) -> list[LayerConfig]:
    """Rebuild the layers of a frame that has the LayerConfig columns."""
    missing = [c for c in LAYER_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"frame lacks layer columns: {', '.join(missing)}")
    layers = []
    for record in frame[list(LAYER_COLUMNS)].to_dict("records"):
        activation = record["activation"]
        record["activation"] = None if activation is None or pd.isna(activation) else activation
        record["residual"] = bool(record["residual"])
        kind = record.pop("kind")
        layers.append(LayerConfig(kind=kind, **{k: _plain(v) for k, v in record.items()}))
    return layers


def _plain(value: Any) -> Any:
    # numpy scalars from a DataFrame -> Python ints, which LayerConfig validation expects
    if hasattr(value, "item"):
        return value.item()
    return value
