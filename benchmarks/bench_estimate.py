"""Benchmark of the estimator: network and per-layer accuracy on reference networks, and speed.

For every network in ``benchmarks/networks/*.onnx`` (H4's torchvision exports) the script

1. estimates it with the workspace's trained models (the plain kernel sum);
2. measures it on the target (``measure_network``: warm-up, interleaved rounds, the minimum
   of round medians) with per-kernel profiles;
3. fits the whole-network calibration on all *other* networks and applies it to this one
   (leave-one-network-out), so no network is predicted by a calibration that saw it.

It reports whole-network MAPE, RMSPE, the share within ±5 % / ±10 %, Spearman's rank
correlation and the worst network's error, for the plain sum and the left-out calibration
(goal: MAPE <= 5 %, every network within ±10 %); the per-layer MAPE of modelled kernels
against their profiled times (all kernels and those of at least 20 µs, since the profiler
adds a floor of a few µs); and the end-to-end time of ``prmodel estimate`` on a
ResNet-50-sized graph (goal <= 2 s), with an in-process breakdown.

``--oracle`` replaces the trained models by the layers' own lone measurements (measured
through the sweep runner into the workspace's store, plan ``oracle-networks``): the
error left is that of the kernel mapping and the calibration alone, not of the regressor.

Run: ``.venv/bin/python benchmarks/bench_estimate.py [--workspace .] [--target cpu]
[--rounds 5] [--oracle] [NETWORK.onnx ...]``. Writes ``benchmarks/results/bench_estimate.json``
and ``.md`` (``bench_estimate_oracle.*`` with ``--oracle``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.calibration import CalibrationSample, fit_calibration, load_calibration
from prmodel.estimator import (
    Comparison,
    Estimator,
    LayerModel,
    NetworkMeasureSettings,
    compare,
    last_level_cache_bytes,
    measure_network,
)
from prmodel.graph import NetworkKernels, load_network
from prmodel.layers import LayerConfig, LayerKind
from prmodel.machine import machine_info
from prmodel.metrics import summarize
from prmodel.targets import Target, get_target
from prmodel.workspace import Workspace

HERE = Path(__file__).parent
NETWORKS = HERE / "networks"
RESULTS = HERE / "results"
TIMING_NETWORK = "resnet50"
MIN_LAYER_US = 20.0


# -- machine and settings --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return machine_info(libraries=("onnxruntime",))


# -- models ----------------------------------------------------------------------------------------


class MeasuredModel:
    """An 'oracle' model: each layer's own lone measurement (0 where it could not run)."""

    def __init__(self, latency_by_key: Mapping[str, float]) -> None:
        self.latency_by_key = latency_by_key

    def predict(self, layers: Sequence[LayerConfig]) -> npt.NDArray[np.float64]:
        return np.array([self.latency_by_key.get(layer.key, 0.0) for layer in layers])


def oracle_models(
    kernels: Sequence[NetworkKernels], target: Target, workspace: Workspace
) -> tuple[dict[LayerKind, LayerModel], int]:
    """Measure every mapped layer alone (what is not stored yet); returns models, failures."""
    from prmodel.store import MeasurementStore
    from prmodel.sweep import MeasureSettings, measure_layers

    layers = [k.layer for found in kernels for k in found.kernels if k.layer is not None]
    unique = list({layer.key: layer for layer in layers}.values())
    print(f"oracle: {len(unique)} distinct layers to measure alone (stored ones are reused)")
    settings = MeasureSettings(max_rounds=7, max_seconds_per_point=10.0)
    with MeasurementStore(workspace.store_path) as store:
        frame = measure_layers(
            unique, target, store=store, settings=settings, plan_name="oracle-networks"
        )
    latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
    model = MeasuredModel(latency)
    return {kind: model for kind in LayerKind}, len(unique) - len(latency)


# -- one network -----------------------------------------------------------------------------------


def measure_all(
    paths: Sequence[Path],
    estimator: Estimator,
    kernels: Sequence[NetworkKernels],
    settings: NetworkMeasureSettings,
) -> list[Comparison]:
    comparisons = []
    for path, found in zip(paths, kernels, strict=True):
        began = time.perf_counter()
        estimate = estimator.predict(found)
        measurement = measure_network(found.network, estimator.target, settings=settings)
        comparison = compare(estimate, measurement)
        comparisons.append(comparison)
        print(
            f"{path.stem:22s} measured {measurement.total_us / 1e3:8.2f} ms "
            f"(spread {measurement.spread_pct:4.1f} %)  kernel sum "
            f"{estimate.sum_us / 1e3:8.2f} ms ({comparison.sum_error_pct:+6.1f} %)  "
            f"unmodelled {100 * estimate.unmodelled_share:4.1f} %  "
            f"[{time.perf_counter() - began:.0f} s]",
            flush=True,
        )
    return comparisons


def left_out_totals(
    comparisons: Sequence[Comparison],
    kernels: Sequence[NetworkKernels],
    estimator: Estimator,
    cache_bytes: int,
) -> list[float]:
    """Each network's total under a calibration fitted on all the other networks."""
    samples = [
        CalibrationSample(c.estimate.network, c.measurement.total_us, c.layers) for c in comparisons
    ]
    totals = []
    for i, found in enumerate(kernels):
        others = samples[:i] + samples[i + 1 :]
        calibration = fit_calibration(
            others, target_id=estimator.target.target_id, weight_cap_bytes=cache_bytes
        )
        calibrated = Estimator(estimator.target, estimator.models, calibration=calibration)
        totals.append(calibrated.predict(found).total_us)
    return totals


# -- figures ---------------------------------------------------------------------------------------


def network_figures(measured: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    errors = 100 * (np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
    worst = int(np.argmax(np.abs(errors)))
    return {
        **summarize(measured, predicted),
        "worst_error_pct": float(errors[worst]),
        "worst_index": worst,
        "all_within_10": bool(np.all(np.abs(errors) <= 10)),
    }


def layer_figures(comparisons: Sequence[Comparison]) -> dict[str, Any]:
    rows = pd.concat([c.layers for c in comparisons], ignore_index=True)
    rows = rows[(rows["status"] == "modelled") & (rows["measured_us"] > 0)]
    big = rows[rows["measured_us"] >= MIN_LAYER_US]
    by_kind = {
        str(kind): summarize(group["measured_us"], group["predicted_us"])
        for kind, group in rows.groupby("kind")
        if len(group) >= 2
    }
    return {
        "all": summarize(rows["measured_us"], rows["predicted_us"]),
        f"at_least_{int(MIN_LAYER_US)}us": summarize(big["measured_us"], big["predicted_us"]),
        "by_kind": by_kind,
    }


# -- speed -----------------------------------------------------------------------------------------


def cli_seconds(path: Path, target: str, workspace: Path, repeats: int) -> list[float]:
    """Wall time of ``prmodel estimate PATH --json`` in a fresh process, each repeat."""
    command = [
        sys.executable,
        "-c",
        "from prmodel.cli import main; main()",
        "estimate",
        str(path),
        "--target",
        target,
        "--workspace",
        str(workspace),
        "--json",
    ]
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - began)
    return seconds


def phase_seconds(path: Path, estimator: Estimator) -> dict[str, float]:
    """In-process time of each phase of one estimate (imports already done)."""
    began = time.perf_counter()
    network = load_network(path)
    loaded = time.perf_counter()
    found = estimator.kernels(network)
    mapped = time.perf_counter()
    estimator.predict(found)
    done = time.perf_counter()
    return {
        "load_and_check": loaded - began,
        "kernels_ort_optimizer": mapped - loaded,
        "predict": done - mapped,
        "total": done - began,
    }


# -- report ----------------------------------------------------------------------------------------


def report(args: argparse.Namespace, paths: Sequence[Path]) -> dict[str, Any]:
    workspace = Workspace.at(args.workspace)
    target = get_target(args.target)
    settings = NetworkMeasureSettings(rounds=args.rounds)
    info: dict[str, Any] = {
        "machine": machine(),
        "target_id": target.target_id,
        "mode": "oracle (lone-layer measurements)" if args.oracle else "trained models",
        "settings": {**settings.__dict__, "min_layer_us": MIN_LAYER_US},
    }
    plain = Estimator(target, {}, strict=False)
    kernels = [plain.kernels(path) for path in paths]
    if args.oracle:
        models, missing = oracle_models(kernels, target, workspace)
        info["oracle_missing_layers"] = missing
        estimator = Estimator(target, models, strict=False)
    else:
        estimator = Estimator.load(workspace, target, calibrated=False, strict=False)
        info["models"] = sorted(kind.value for kind in estimator.models)
    comparisons = measure_all(paths, estimator, kernels, settings)
    measured = [c.measurement.total_us for c in comparisons]
    sums = [c.estimate.sum_us for c in comparisons]
    cache = last_level_cache_bytes(target)
    left_out = left_out_totals(comparisons, kernels, estimator, cache) if len(paths) > 1 else sums
    samples = [
        CalibrationSample(c.estimate.network, c.measurement.total_us, c.layers) for c in comparisons
    ]
    in_sample = fit_calibration(samples, target_id=target.target_id, weight_cap_bytes=cache)
    info["networks"] = [
        {
            "name": c.estimate.network,
            "measured_us": c.measurement.total_us,
            "spread_pct": c.measurement.spread_pct,
            "sum_us": c.estimate.sum_us,
            "sum_error_pct": c.sum_error_pct,
            "left_out_calibrated_us": total,
            "left_out_error_pct": 100 * (total - c.measurement.total_us) / c.measurement.total_us,
            "unmodelled_share_pct": 100 * c.estimate.unmodelled_share,
            "layer_mape_pct": float(np.mean(np.abs(c.layer_errors())))
            if len(c.layer_errors())
            else None,
        }
        for c, total in zip(comparisons, left_out, strict=True)
    ]
    info["whole_network"] = {
        "plain_sum": network_figures(measured, sums),
        "left_out_calibration": network_figures(measured, left_out),
    }
    info["calibration_on_all"] = {
        "formula": in_sample.formula,
        "terms": list(in_sample.terms),
        "loo_mape": in_sample.loo_mape,
        "unmodelled": [
            {"op": f.op, "samples": f.samples, "fixed_us": f.fixed_us, "gbps": f.gbps}
            for f in in_sample.unmodelled
        ],
    }
    saved = load_calibration(workspace, target.target_id)
    if saved is not None and not args.oracle:
        calibrated = Estimator(target, estimator.models, calibration=saved, strict=False)
        totals = [calibrated.predict(found).total_us for found in kernels]
        overlap = sorted(
            {n.name for n in saved.networks} & {c.estimate.network for c in comparisons}
        )
        info["whole_network"]["saved_calibration"] = {
            **network_figures(measured, totals),
            "in_sample_networks": overlap,
        }
    info["per_layer"] = layer_figures(comparisons)
    info["speed"] = speed(args, paths, estimator)
    return info


def speed(args: argparse.Namespace, paths: Sequence[Path], estimator: Estimator) -> dict[str, Any]:
    timing = next((p for p in paths if p.stem == TIMING_NETWORK), None)
    if timing is None:
        return {"note": f"{TIMING_NETWORK}.onnx not among the networks"}
    result: dict[str, Any] = {"network": timing.name, "phases_s": phase_seconds(timing, estimator)}
    if not args.oracle and args.cli_repeats:
        seconds = cli_seconds(timing, args.target, Path(args.workspace), args.cli_repeats)
        result["cli_s"] = {
            "median": statistics.median(seconds),
            "min": min(seconds),
            "max": max(seconds),
            "repeats": len(seconds),
        }
    return result


def markdown(info: dict[str, Any]) -> str:
    whole = info["whole_network"]
    lines = [
        f"# bench_estimate ({info['mode']})",
        "",
        f"Machine: {info['machine']['cpu']}, {info['machine']['logical_cores']} logical "
        f"cores, load {info['machine']['load_average'][0]:.1f}; target {info['target_id']}; "
        f"{info['settings']['rounds']} rounds x {info['settings']['runs']} runs per network.",
        "",
        "| network | measured ms | spread % | sum ms | sum err % | left-out calibrated ms "
        "| err % | unmodelled % | layer MAPE % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in info["networks"]:
        layer = f"{n['layer_mape_pct']:.1f}" if n["layer_mape_pct"] is not None else "-"
        lines.append(
            f"| {n['name']} | {n['measured_us'] / 1e3:.2f} | {n['spread_pct']:.1f} "
            f"| {n['sum_us'] / 1e3:.2f} | {n['sum_error_pct']:+.1f} "
            f"| {n['left_out_calibrated_us'] / 1e3:.2f} | {n['left_out_error_pct']:+.1f} "
            f"| {n['unmodelled_share_pct']:.1f} | {layer} |"
        )
    lines += [
        "",
        "| whole network | MAPE % | RMSPE % | within 5 % | within 10 % | Spearman | worst % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in whole.items():
        lines.append(
            f"| {name} | {f['mape']:.2f} | {f['rmspe']:.2f} | {f['within_5']:.0f} "
            f"| {f['within_10']:.0f} | {f['spearman']:.3f} | {f['worst_error_pct']:+.1f} |"
        )
    layers = info["per_layer"]
    big = layers[f"at_least_{int(MIN_LAYER_US)}us"]
    lines += [
        "",
        f"Per-layer MAPE (modelled kernels vs profiled): {layers['all']['mape']:.1f} % over "
        f"{layers['all']['n']:.0f} kernels; {big['mape']:.1f} % for kernels of at least "
        f"{MIN_LAYER_US:.0f} µs.",
        "",
        f"Calibration fitted on all networks: total = {info['calibration_on_all']['formula']}.",
    ]
    speed = info["speed"]
    if "cli_s" in speed:
        lines.append(
            f"`prmodel estimate {speed['network']}`: median {speed['cli_s']['median']:.2f} s "
            f"end to end ({speed['cli_s']['repeats']} runs); in-process phases "
            + ", ".join(f"{k} {v:.2f} s" for k, v in speed["phases_s"].items())
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", type=Path, help="default: benchmarks/networks/*")
    parser.add_argument("--workspace", default=".", help="workspace with trained models")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="measurement rounds per network")
    parser.add_argument("--oracle", action="store_true", help="lone-layer measurements as models")
    parser.add_argument("--cli-repeats", type=int, default=3, help="timed `prmodel estimate` runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    paths = sorted(args.networks or NETWORKS.glob("*.onnx"))
    if not paths:
        sys.exit(f"no networks: export them first (benchmarks/export_zoo.py) into {NETWORKS}")
    info = report(args, paths)
    name = "bench_estimate_oracle" if args.oracle else "bench_estimate"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    text = markdown(info)
    (args.results / f"{name}.md").write_text(text)
    print(text)
    print(f"written to {args.results / name}.json and .md")


if __name__ == "__main__":
    main()
