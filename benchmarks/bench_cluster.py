"""Benchmark of cluster sweeps (issue 20): speed-up on SCALE-Sim, throughput of the driver.

(a) **SCALE-Sim full mode**, 200 conv layers (seeded random: 8-96 input and output
    channels, 7x7 to 28x28, kernel 1 or 3; 0.1-3 s each here) swept on a local Ray with 1
    worker, then with 2 workers, each into a fresh store: the speed-up of the sweep itself
    (goal >= 1.8 on 2 cores) and end to end (Ray and the workers started and stopped
    included). Both stores must hold the same numbers. On a shared machine the speed-up
    depends on the neighbours' load, so each run also reports two load-independent shares:
    ``busy_share``, the time the workers spent measuring over workers x sweep time (how well
    the driver keeps them fed), and ``cpu_share``, the CPU time of the workers over their
    busy time (how much of a core each got: below 1 when other processes took the cores).
(b) **The driver's throughput**: the analytic target (microseconds a layer, so the
    driver, Ray and the store are all that is measured) swept through a simulated cluster of
    8 one-CPU nodes (``ray.cluster_utils.Cluster``): points per second end to end into the
    store with the default batching (goal >= 1,000), with one point per batch (the cost of
    one dispatch), and of the store alone (each point committed with its worker stamp).
(c) **A 10,000-layer full-mode data set** on N = 1, 8, 64 workers, from the per-layer cost
    measured in (a) with 1 worker, assuming workers as fast as this machine's cores and the
    parallel efficiency measured in (a) (2 workers); the driver's part from (b).

Run by hand (not by pytest; a few minutes, two cores busy)::

    .venv/bin/python benchmarks/bench_cluster.py [--layers 200] [--analytic 20000]

Writes benchmarks/results/bench_cluster.json (figures under keys ``speedup*`` and
``points_per_s*``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.cluster_utils import Cluster

from prmodel.layers import LayerConfig
from prmodel.measure.cluster import ClusterSettings, open_cluster
from prmodel.measure.store import Measurement, MeasurementStore, WorkerStamp
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.cpu import machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCALESIM = "scalesim:rows=32,cols=32,mode=full"
SPEEDUP_GOAL = 1.8
THROUGHPUT_GOAL = 1000.0
DATASET = 10_000


def scalesim_layers(count: int, seed: int = 0) -> list[LayerConfig]:
    """Seeded random convs of moderate size (a full-mode simulation of 0.1-3 s each)."""
    rng = np.random.default_rng(seed)
    layers: dict[str, LayerConfig] = {}
    while len(layers) < count:
        kernel = int(rng.choice([1, 3]))
        size = int(rng.choice([7, 14, 14, 28]))
        layer = LayerConfig.create(
            "conv",
            channels=int(rng.integers(8, 97)),
            height=size,
            width=size,
            out_channels=int(rng.integers(8, 97)),
            kernel=kernel,
            padding=kernel // 2,
        )
        layers.setdefault(layer.key, layer)
    return list(layers.values())


def analytic_layers(count: int) -> list[LayerConfig]:
    """``count`` distinct small convs (the analytic target evaluates each in microseconds)."""
    return [
        LayerConfig.create(
            "conv", channels=1 + i // 100, height=8, width=8, out_channels=1 + i % 100, kernel=3
        )
        for i in range(count)
    ]


def local_sweep(layers: list[LayerConfig], workers: int, folder: Path) -> dict[str, Any]:
    """Sweep ``layers`` on SCALE-Sim full mode on a local Ray with ``workers`` workers."""
    load_before = os.getloadavg()
    began = time.perf_counter()
    with MeasurementStore(folder / f"w{workers}.sqlite") as store:
        with open_cluster(SCALESIM, ClusterSettings(address="local", workers=workers)) as pool:
            opened = time.perf_counter()
            report = pool.sweep(layers, store=store, progress=False)
            swept = time.perf_counter()
        latencies = store.frame().set_index("layer_key")["latency_us"].sort_index()
    ended = time.perf_counter()
    busy = sum(w.busy_seconds for w in report.workers)
    cpu = sum(w.cpu_seconds for w in report.workers)
    return {
        "workers": workers,
        "sweep_s": round(swept - opened, 2),
        "end_to_end_s": round(ended - began, 2),
        "per_layer_s": round((swept - opened) / len(layers), 4),
        "measured": report.sweep.measured,
        "failed": report.sweep.failed,
        "per_worker_points": [w.points for w in report.workers],
        # load-independent: how busy the driver kept the workers, and how much of a core
        # each worker process got while busy (1.0 on a quiet machine)
        "busy_share": round(busy / (workers * (swept - opened)), 3),
        "cpu_share": round(cpu / busy, 3) if busy else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "latencies": latencies,
    }


def part_a(count: int, folder: Path) -> dict[str, Any]:
    layers = scalesim_layers(count)
    one = local_sweep(layers, 1, folder)
    two = local_sweep(layers, 2, folder)
    same = bool(one.pop("latencies").equals(two.pop("latencies")))
    return {
        "target": SCALESIM,
        "layers": count,
        "one_worker": one,
        "two_workers": two,
        "identical_results": same,
        "speedup_sweep": round(one["sweep_s"] / two["sweep_s"], 3),
        "speedup_end_to_end": round(one["end_to_end_s"] / two["end_to_end_s"], 3),
        "goal_speedup": SPEEDUP_GOAL,
    }


def part_b(count: int, nodes: int, folder: Path) -> dict[str, Any]:
    layers = analytic_layers(count)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        settings = ClusterSettings(address=cluster.address)
        with open_cluster("analytic", settings) as pool:
            workers = len(pool.workers)
            batched = timed_sweep(pool, layers, folder / "batched.sqlite")
        one_each = ClusterSettings(address=cluster.address, batch_seconds=0.0)
        with open_cluster("analytic", one_each) as pool:
            single = timed_sweep(pool, layers[: count // 10], folder / "single.sqlite")
    finally:
        ray.shutdown()
        cluster.shutdown()
    store_only = store_throughput(layers, folder / "store.sqlite")
    return {
        "target": "analytic",
        "nodes": nodes,
        "workers": workers,
        "points": count,
        "points_per_s_end_to_end": batched,
        "points_per_s_one_point_batches": single,
        "ms_per_dispatch": round(1000 / single, 3),
        "points_per_s_store_only": store_only,
        "goal_points_per_s": THROUGHPUT_GOAL,
    }


def timed_sweep(pool: Any, layers: list[LayerConfig], path: Path) -> float:
    with MeasurementStore(path) as store:
        began = time.perf_counter()
        report = pool.sweep(layers, store=store, progress=False)
        seconds = time.perf_counter() - began
    assert report.sweep.measured == len(layers), report
    return round(len(layers) / seconds, 1)


def store_throughput(layers: list[LayerConfig], path: Path) -> float:
    target = AnalyticTarget()
    stamp = WorkerStamp("bench:0", "bench")
    with MeasurementStore(path) as store:
        digest = store.register_target(target.target_id, target.fingerprint())
        rows = [
            Measurement(
                layer=x, target_id=target.target_id, fingerprint_hash=digest, latency_us=1.0
            )
            for x in layers
        ]
        began = time.perf_counter()
        for row in rows:
            store.record(row, worker=stamp)
        seconds = time.perf_counter() - began
    return round(len(layers) / seconds, 1)


def part_c(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    per_layer = a["one_worker"]["per_layer_s"]
    efficiency = min(a["speedup_sweep"] / 2, 1.0)
    driver_s = DATASET / b["points_per_s_end_to_end"]
    table = []
    for workers in (1, 8, 64):
        scale = 1.0 if workers == 1 else efficiency
        hours = DATASET * per_layer / workers / scale / 3600
        table.append({"workers": workers, "hours": round(hours, 3)})
    return {
        "layers": DATASET,
        "per_layer_s": per_layer,
        "parallel_efficiency": round(efficiency, 3),
        "driver_s": round(driver_s, 1),
        "table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=200, help="SCALE-Sim layers in (a)")
    parser.add_argument("--analytic", type=int, default=20_000, help="analytic points in (b)")
    parser.add_argument("--nodes", type=int, default=8, help="simulated nodes in (b)")
    args = parser.parse_args()
    info = machine_info(libraries=("ray", "scalesim"))
    print(f"machine: {info['cpu']}, {info['logical_cores']} cores, load {info['load_average']}")
    with tempfile.TemporaryDirectory() as tmp:
        a = part_a(args.layers, Path(tmp))
        print(json.dumps(a, indent=2))
        b = part_b(args.analytic, args.nodes, Path(tmp))
        print(json.dumps(b, indent=2))
    c = part_c(a, b)
    print(json.dumps(c, indent=2))
    result = {
        "machine": info,
        "speedup_scalesim_full_2_workers": a["speedup_sweep"],
        "speedup_scalesim_full_2_workers_end_to_end": a["speedup_end_to_end"],
        "points_per_s_analytic_8_nodes": b["points_per_s_end_to_end"],
        "points_per_s_analytic_one_point_batches": b["points_per_s_one_point_batches"],
        "points_per_s_store_only": b["points_per_s_store_only"],
        "scalesim_full": a,
        "driver_throughput": b,
        "dataset_10k_full_mode": c,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench_cluster.json'}")


if __name__ == "__main__":
    main()
