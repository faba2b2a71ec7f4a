"""A synthetic noisy staircase sweep, shared by the step-detection and selection tests."""

from __future__ import annotations

import numpy as np


def staircase(
    period: int,
    offset: int,
    *,
    seed: int,
    count: int | None = None,
    jitter: float = 0.05,
    outliers: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """Latency = launch + work padded to the block, with multiplicative jitter and outliers.

    Jitter is log-normal with a 5 % standard deviation; about 3 % of the points are outliers
    30-100 % too slow (a neighbour's burst of load).
    """
    rng = np.random.default_rng(seed)
    x = np.arange(1, (count or max(4 * period, 48)) + 1)
    padded = offset + np.ceil((x - offset) / period) * period
    latency = (20.0 + 5.0 * padded) * np.exp(rng.normal(0.0, jitter, x.size))
    slow = rng.random(x.size) < outliers
    latency[slow] *= rng.uniform(1.3, 2.0, slow.sum())
    return x, latency
