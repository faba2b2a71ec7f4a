"""A test-only target for cluster sweeps: the analytic model on simulated boards.

Loaded by the dotted plugin spec ``cluster_targets.BoardTarget:delay_ms=30`` on every Ray
worker (the test cluster's nodes put ``tests/`` on ``PYTHONPATH``). Its fingerprint names the
board of the host it is built on (``PRMODEL_TEST_BOARD``, ``a`` where unset), so a node whose
environment says ``b`` plays a host of another machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from prmodel.layers import LayerConfig
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import Benchmark

BOARD_ENV = "PRMODEL_TEST_BOARD"


@dataclass(frozen=True)
class BoardTarget(AnalyticTarget):
    """The analytic target, ``delay_ms`` per layer; ``crash_out``: a layer with that many
    output channels kills the process measuring it (a layer that crashes the runtime)."""

    delay_ms: float = 0.0
    crash_out: int = 0

    @classmethod
    def from_options(cls, options: dict[str, str]) -> BoardTarget:  # type: ignore[override]
        return cls(
            delay_ms=float(options.get("delay_ms", 0)), crash_out=int(options.get("crash_out", 0))
        )

    @property
    def target_id(self) -> str:
        return "board-analytic"

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "board": os.environ.get(BOARD_ENV, "a")}

    def prepare(self, layer: LayerConfig) -> Benchmark:
        if layer.out_channels == self.crash_out:
            os._exit(3)
        time.sleep(self.delay_ms / 1000)
        return super().prepare(layer)
