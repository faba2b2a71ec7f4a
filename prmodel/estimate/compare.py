"""An estimate next to a measurement of the same network: per-kernel and total errors.

:func:`compare` joins the profiled kernel times of a
:class:`~prmodel.networks.NetworkMeasurement` to the kernels of a
:class:`~prmodel.estimate.estimator.NetworkEstimate`; the :class:`Comparison` it returns gives
the total's error, the plain sum's error and each modelled kernel's error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.estimate.estimator import UNPRICED, NetworkEstimate
from prmodel.networks import NetworkMeasurement, json_records


@dataclass(frozen=True, eq=False)
class Comparison:
    """An estimate next to a measurement of the same network on the same target.

    ``layers`` is the estimate's table with ``measured_us`` (profiled, NaN where no kernel
    matched) and ``error_pct`` (predicted vs measured, per kernel).
    """

    estimate: NetworkEstimate
    measurement: NetworkMeasurement
    layers: pd.DataFrame
    unmatched: tuple[str, ...]

    @property
    def total_error_pct(self) -> float:
        """Error of the estimate's total against the measured latency, in percent."""
        measured = self.measurement.total_us
        return 100 * (self.estimate.total_us - measured) / measured

    @property
    def sum_error_pct(self) -> float:
        """Error of the plain (uncalibrated) sum against the measured latency, in percent."""
        measured = self.measurement.total_us
        return 100 * (self.estimate.sum_us - measured) / measured

    def layer_errors(self, *, min_measured_us: float = 0.0) -> npt.NDArray[np.float64]:
        """Per-kernel relative errors (percent) of modelled kernels with a measurement."""
        rows = self.layers[
            (self.layers["status"] == "modelled")
            & self.layers["measured_us"].notna()
            & (self.layers["measured_us"] > min_measured_us)
        ]
        return rows["error_pct"].to_numpy(dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        errors = self.layer_errors()
        return {
            **self.estimate.to_dict(),
            "kernels": json_records(self.layers),
            "measured": {
                key: value
                for key, value in self.measurement.to_dict().items()
                if key not in ("kernels", "network", "target_id")
            },
            "total_error_pct": self.total_error_pct,
            "sum_error_pct": self.sum_error_pct,
            "layer_mape": float(np.mean(np.abs(errors))) if len(errors) else None,
            "unmatched_kernels": list(self.unmatched),
        }


def compare(estimate: NetworkEstimate, measurement: NetworkMeasurement) -> Comparison:
    """Join profiled kernel times to the estimate's kernels.

    ORT names the nodes it creates (``ReorderOutput_token_12``, nameless inlined nodes)
    differently in every session, and even orders them differently, so those are paired by
    op and output shape instead (equal ops of equal shape cost the same), then by op alone.
    """
    measured = measurement.kernels.reset_index(drop=True)
    layers = estimate.layers.copy()
    matched: list[int | None] = [None] * len(layers)
    free = list(range(len(measured)))
    keys: tuple[Callable[[str, str, str], tuple[str, ...]], ...] = (
        lambda node, op, shape: (node,),
        lambda node, op, shape: (op, shape),
        lambda node, op, shape: (op,),
    )
    for pass_index, key in enumerate(keys):
        waiting: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for j in free:
            row = measured.iloc[j]
            if pass_index == 0 and _generated_name(str(row["node"]), str(row["op"])):
                continue
            waiting[key(str(row["node"]), str(row["op"]), str(row["output_shape"]))].append(j)
        for i in range(len(layers)):
            if matched[i] is not None:
                continue
            node, op = str(layers["node"].iloc[i]), str(layers["op"].iloc[i]).rpartition(".")[2]
            candidates = waiting.get(key(node, op, str(layers["output_shape"].iloc[i])))
            if candidates:
                matched[i] = candidates.pop(0)
        taken = {j for j in matched if j is not None}
        free = [j for j in free if j not in taken]
    times = measured["measured_us"].to_numpy(dtype=np.float64)
    layers["measured_us"] = [times[j] if j is not None else np.nan for j in matched]
    comparable = (layers["measured_us"] > 0) & (layers["status"] != "free")
    if "source" in layers:
        # An unpriced kernel has no prediction to be wrong by: its 0 µs is not an estimate.
        comparable &= layers["source"] != UNPRICED
    layers["error_pct"] = (
        100 * (layers["predicted_us"] - layers["measured_us"]) / layers["measured_us"]
    ).where(comparable)
    unmatched = tuple(str(measured["node"].iloc[j]) for j in free)
    return Comparison(estimate, measurement, layers, unmatched=unmatched)


def _generated_name(node: str, op: str) -> bool:
    """Whether ORT made up ``node``'s name (it differs between sessions)."""
    return bool(re.search(r"_token_\d+$", node)) or bool(
        re.fullmatch(rf"{re.escape(op)}_\d+", node)
    )


__all__ = ["Comparison", "compare"]
