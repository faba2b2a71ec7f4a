"""Benchmark of the sweep runner on a real target: harness overhead and repeatability.

Overhead: a chunk of 8 convs of one size (small, medium, large) is swept into a temporary
store. With T the sweep's wall time, P the points and n a point's accepted timed calls,
``T / P / n`` is the wall time the sweep spent per measured call; minus the kernel time it is
the harness overhead, reported as a share of the kernel time (``overhead_total``). The ONNX
Runtime target runs every timed call twice (a plain call for the wall clock, a profiled one
for the kernel time), so ``overhead_runner = (T / P / n - 2 * wall median) / kernel`` is what
the runner adds beyond those two executions (sessions, warm-ups, canary, disturbed rounds,
bookkeeping).

Per call: ``wall median - kernel median`` over the kernel median is what one timed call
through ``run_with_iobinding`` costs beyond the layer's own kernel (``per_call_overhead``;
this includes the lone layer's layout reorders, which are also reported alone, and the
session's dispatch), the distortion the harness adds to what it measures.

Where the time goes: the target is wrapped so that the time spent inside ``prepare``,
``run`` (points and canary apart) and ``finish``/``close`` is summed; the rest of the sweep's
wall time is the runner's own work (scheduling, statistics, SQLite commits). Shares of T.

Repeatability: the same 10 points are swept twice into two fresh stores; the relative
difference of ``latency_us`` is reported (median and max).

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--target cpu] [--pin CPU]``.
Writes ``benchmarks/results/bench_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.layers import LayerConfig
from prmodel.measure.runner import CANARY_LAYER, MeasureSettings, measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.targets import Target, get_target
from prmodel.targets.cpu import machine_info
from prmodel.targets.profiles import HardwareProfile

RESULTS = Path(__file__).parent / "results" / "bench_sweep.json"

SIZES: dict[str, dict[str, int]] = {
    "small": {"channels": 16, "height": 28, "width": 28, "out_channels": 16},
    "medium": {"channels": 64, "height": 28, "width": 28, "out_channels": 64},
    "large": {"channels": 64, "height": 56, "width": 56, "out_channels": 128},
}


def conv(**params: int) -> LayerConfig:
    return LayerConfig.create("conv", kernel=3, padding=1, **params)


def size_points(params: dict[str, int]) -> list[LayerConfig]:
    """8 convs around one size (distinct output channels, so none is reused)."""
    base = params["out_channels"]
    return [conv(**{**params, "out_channels": base - 4 + i}) for i in range(8)]


def repeat_points() -> list[LayerConfig]:
    """10 convs from ~50 µs to ~1 ms: channel counts inside and at the edge of plateaus."""
    outs = (8, 16, 17, 32, 33, 48, 64, 65, 96, 128)
    return [conv(channels=64, height=28, width=28, out_channels=o) for o in outs]


class _TimedBenchmark:
    def __init__(self, bench: Any, clock: dict[str, float], canary: bool) -> None:
        self.layer = bench.layer
        self._bench = bench
        self._clock = clock
        self._run_key = "run_canary" if canary else "run_points"

    def _timed(self, key: str, call: Any, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args)
        finally:
            self._clock[key] += time.perf_counter() - began

    def run(self, calls: int) -> list[float]:
        return self._timed(self._run_key, self._bench.run, calls)

    def finish(self) -> Any:
        return self._timed("finish_close", self._bench.finish)

    def close(self) -> None:
        self._timed("finish_close", self._bench.close)


class TimedTarget:
    """A target wrapper that sums the time spent inside each target call."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self.name = target.name
        self.deterministic = target.deterministic
        self.clock = dict.fromkeys(("prepare", "run_points", "run_canary", "finish_close"), 0.0)

    @property
    def target_id(self) -> str:
        return self._target.target_id

    def fingerprint(self) -> dict[str, Any]:
        return self._target.fingerprint()

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        return self._target.unsupported_reason(layer)

    def hardware_profile(self) -> HardwareProfile:
        return self._target.hardware_profile()

    def prepare(self, layer: LayerConfig) -> Any:
        began = time.perf_counter()
        bench = self._target.prepare(layer)
        self.clock["prepare"] += time.perf_counter() - began
        return _TimedBenchmark(bench, self.clock, canary=layer == CANARY_LAYER)


def sweep(
    layers: list[LayerConfig], target_spec: str, settings: MeasureSettings
) -> tuple[pd.DataFrame, float, TimedTarget]:
    target = TimedTarget(get_target(target_spec))
    with tempfile.TemporaryDirectory() as tmp, MeasurementStore(Path(tmp) / "m.sqlite") as store:
        began = time.perf_counter()
        frame = measure_layers(layers, target, store=store, settings=settings, progress=False)
        seconds = time.perf_counter() - began
    return frame, seconds, target


def overhead(name: str, target_spec: str, settings: MeasureSettings) -> dict[str, Any]:
    layers = size_points(SIZES[name])
    frame, seconds, timed = sweep(layers, target_spec, settings)
    shares = {key: round(value / seconds, 3) for key, value in timed.clock.items()}
    shares["runner_own"] = round(1 - sum(timed.clock.values()) / seconds, 3)
    per_call_us = seconds * 1e6 / len(layers) / frame["n"].to_numpy()
    kernel = frame["median_us"].to_numpy()
    wall = frame["wall_median_us"].to_numpy()
    reorder = frame["reorder_median_us"].fillna(0.0).to_numpy()
    per_call = (wall - kernel) / kernel
    dispatch = (wall - kernel - reorder) / kernel
    total = (per_call_us - kernel) / kernel
    runner = (per_call_us - 2 * wall) / kernel
    return {
        "size": name,
        "layer": layers[4].label,
        "points": len(layers),
        "sweep_seconds": round(seconds, 2),
        "kernel_median_us": round(float(np.median(kernel)), 1),
        "calls_per_point_median": int(np.median(frame["n"])),
        "rounds_median": float(np.median(frame["rounds"])),
        "per_call_overhead_median": round(float(np.median(per_call)), 3),
        "per_call_overhead_spread": [
            round(float(per_call.min()), 3),
            round(float(per_call.max()), 3),
        ],
        "reorder_share_median": round(float(np.median(reorder / kernel)), 3),
        "dispatch_overhead_median": round(float(np.median(dispatch)), 3),
        "overhead_total_median": round(float(np.median(total)), 3),
        "overhead_total_spread": [round(float(total.min()), 3), round(float(total.max()), 3)],
        "overhead_runner_median": round(float(np.median(runner)), 3),
        "overhead_runner_spread": [round(float(runner.min()), 3), round(float(runner.max()), 3)],
        "time_shares": shares,
    }


def repeatability(target_spec: str, settings: MeasureSettings) -> dict[str, Any]:
    layers = repeat_points()
    first, s1, _ = sweep(layers, target_spec, settings)
    second, s2, _ = sweep(layers, target_spec, settings)
    a = first.set_index("layer_key")["latency_us"]
    b = second.set_index("layer_key")["latency_us"].reindex(a.index)
    delta = (b - a).abs() / a
    return {
        "points": len(layers),
        "sweep_seconds": [round(s1, 2), round(s2, 2)],
        "rel_delta_median": round(float(delta.median()), 4),
        "rel_delta_max": round(float(delta.max()), 4),
        "per_point": [
            {
                "out_channels": int(o),
                "latency_us_1": float(x),
                "latency_us_2": float(y),
                "rel_delta": round(float(d), 4),
            }
            for o, x, y, d in zip(
                first["out_channels"], a.to_numpy(), b.to_numpy(), delta.to_numpy(), strict=True
            )
        ],
    }


def machine() -> dict[str, Any]:
    return machine_info(libraries=("onnxruntime",))


_SHARE_KEYS = ("prepare", "run_points", "run_canary", "finish_close", "runner_own")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu", help="target spec (default cpu)")
    parser.add_argument("--pin", type=int, default=None, help="pin the process to this CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    settings = MeasureSettings()
    info = machine()
    rows = [overhead(name, args.target, settings) for name in SIZES]
    repeat = repeatability(args.target, settings)
    target = get_target(args.target)
    result = {
        "machine": info,
        "target_id": target.target_id,
        "pinned_cpu": args.pin,
        "settings": asdict(settings),
        "overhead": rows,
        "repeatability": repeat,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    load = info["load_average"]
    print(f"machine: {info['cpu']}, {info['logical_cores']} cores, load average {load}")
    print(f"target: {target.target_id}, pinned cpu: {args.pin}")
    header = (
        "size",
        "kernel µs",
        "calls/pt",
        "rounds",
        "per call",
        "reorders",
        "dispatch",
        "sweep total",
        "runner",
    )
    print("{:<8}{:>11}{:>10}{:>8}{:>10}{:>10}{:>10}{:>13}{:>9}".format(*header))
    for r in rows:
        print(
            f"{r['size']:<8}{r['kernel_median_us']:>11}{r['calls_per_point_median']:>10}"
            f"{r['rounds_median']:>8}{r['per_call_overhead_median']:>10.1%}"
            f"{r['reorder_share_median']:>10.1%}{r['dispatch_overhead_median']:>10.1%}"
            f"{r['overhead_total_median']:>13.1%}{r['overhead_runner_median']:>9.1%}"
        )
    print("share of sweep time: " + ", ".join(_SHARE_KEYS))
    for r in rows:
        shares = r["time_shares"]
        print(f"{r['size']:<8}" + "".join(f"{shares[k]:>14.1%}" for k in _SHARE_KEYS))
    print(
        f"repeatability over {repeat['points']} points: |Δ latency_us| / latency_us median "
        f"{repeat['rel_delta_median']:.2%}, max {repeat['rel_delta_max']:.2%}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
