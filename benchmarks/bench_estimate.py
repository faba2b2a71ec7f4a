"""Benchmark of the estimator: network and per-layer accuracy on reference networks, and speed.

For every network in ``benchmarks/networks/*.onnx`` (H4's torchvision exports) the script

1. estimates it with the workspace's trained models (the plain kernel sum);
2. measures it on the target (``measure_networks``: warm-up, rounds interleaved across the
   networks, the median of round medians) with per-kernel profiles;
3. fits the whole-network calibration on all *other* networks and applies it to this one
   (leave-one-network-out), so no network is predicted by a calibration that saw it.

The networks' rounds are interleaved (round *r* of every network before round *r + 1* of
any): the development VM's speed drifts by 10-20 % over minutes, so each network's rounds
are spread over the whole measurement and the drift moves every network alike (the
calibration's scale absorbs what is common). Measured instead in 2 passes of 5 consecutive
rounds per network, keeping the fastest round median, the networks' latencies against
each other moved about four times as much from one measurement to the next.

Before and after the networks, ``--speed-layers`` stored lone layers are measured again
and the ratio now / stored is reported, so a drift between training and testing shows.

It reports whole-network MAPE, RMSPE, the share within ±5 % / ±10 %, Spearman's rank
correlation and the worst network's error, for the plain sum and the left-out calibration
(goal: MAPE <= 5 %, every network within ±10 %); the per-layer MAPE of modelled kernels
against their profiled times (all kernels and those of at least 20 µs, since the profiler
adds a floor of a few µs); and the end-to-end time of ``prmodel estimate`` on a
ResNet-50-sized graph (goal <= 2 s), with an in-process breakdown.

``--oracle`` replaces the trained models by the layers' own lone measurements (measured
through the sweep runner into the workspace's store, plan ``oracle-networks``): the
error left is that of the kernel mapping and the calibration alone, not of the regressor.

``--leave-one-out`` trains the models itself on a network-prior training set
(:class:`prmodel.select.network_prior.NetworkSampler` over all the networks: their layers,
neighbours of them and random layers, measured into the workspace's store, plans
``networks-<kind>``) and predicts every network with models that never saw it: for network
``n`` the layers drawn only from ``n`` (its own layers and their neighbours) are left out of
training, so ``n`` is estimated as a new architecture would be. The calibration is left out
the same way. It also reports the in-sample figures (models trained on every network's
samples) for reference.

``--measurements RUN_kernels.csv`` measures nothing: it scores the models against the network
measurements of an earlier run (its ``*_kernels.csv``: each network's total and every kernel's
profiled time), so that two versions of the models or the calibration can be compared on the
same measurements although the machine's speed drifts between runs.

Run: ``.venv/bin/python benchmarks/bench_estimate.py [--workspace .] [--target cpu]
[--rounds 10] [--oracle | --leave-one-out] [--measurements CSV] [NETWORK.onnx ...]``. Writes
``benchmarks/results/bench_estimate.json`` and ``.md`` (``bench_estimate_oracle.*`` with
``--oracle``, ``bench_estimate_loo.*`` with ``--leave-one-out``), and ``*_kernels.csv``: every
kernel of every network with its prediction (with ``--leave-one-out``: by the models that
never saw that network) and its profiled time, for analysis.
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

from prmodel.estimate.calibration import (
    CalibrationSample,
    core_cache_bytes,
    fit_calibration,
    last_level_cache_bytes,
    load_calibration,
)
from prmodel.estimate.compare import Comparison, compare
from prmodel.estimate.estimator import Estimator, LayerModel
from prmodel.estimate.kernels import NetworkKernels
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.recheck import measure_again
from prmodel.measure.runner import MeasureSettings, measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.metrics import summarize
from prmodel.networks import (
    KERNEL_TIME_COLUMNS,
    NetworkMeasurement,
    NetworkMeasureSettings,
    load_network,
)
from prmodel.select.network_prior import NetworkSampler, SampledLayer
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.samplers import RandomSampler
from prmodel.select.spaces import grouped_conv_space
from prmodel.targets import Target, get_target
from prmodel.targets.base import fingerprint_hash
from prmodel.targets.cpu import machine_info
from prmodel.train.model import LatencyModel
from prmodel.workflows.calibrate import measure_networks
from prmodel.workspace import Workspace

HERE = Path(__file__).parent
PRIOR_BUDGETS = {LayerKind.CONV: 2500}
"""Network-prior training layers per kind for --leave-one-out (others: PRIOR_DEFAULT_BUDGET)."""
PRIOR_DEFAULT_BUDGET = 400
PRIOR_RANDOM_SHARE = 0.2
PRIOR_GROUPED = 400
"""Grouped convs drawn from prmodel.select.spaces.grouped_conv_space into the network prior,
shared by every fold: the default conv space has none, and without them a network never seen
(RegNet) gets its grouped convs about 15 % low."""
LONE_SETTINGS = MeasureSettings(max_rounds=7, max_seconds_per_point=10.0)
"""How lone layers are measured here (3-7 interleaved rounds, as the oracle)."""
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
    layers = [k.layer for found in kernels for k in found.kernels if k.layer is not None]
    unique = list({layer.key: layer for layer in layers}.values())
    print(f"oracle: {len(unique)} distinct layers to measure alone (stored ones are reused)")
    with MeasurementStore(workspace.store_path) as store:
        frame = measure_layers(
            unique, target, store=store, settings=LONE_SETTINGS, plan_name="oracle-networks"
        )
    latency = dict(zip(frame["layer_key"], frame["latency_us"], strict=True))
    model = MeasuredModel(latency)
    return {kind: model for kind in LayerKind}, len(unique) - len(latency)


# -- network-prior models, one network left out ----------------------------------------------------


def prior_samples(
    kernels: Sequence[NetworkKernels], target: Target, workspace: Workspace, seed: int
) -> pd.DataFrame:
    """The network-prior training set, measured (stored layers reused), with its sources."""
    layers = {
        found.network.name: [k.layer for k in found.kernels if k.layer is not None]
        for found in kernels
    }
    sampler = NetworkSampler(layers, random_share=PRIOR_RANDOM_SHARE)
    kinds = [kind for kind in LayerKind if sampler.originals(kind)]
    frames = []
    for kind in kinds:
        budget = PRIOR_BUDGETS.get(kind, PRIOR_DEFAULT_BUDGET)
        drawn: list[SampledLayer] = sampler.sample_sources(kind, budget, seed=seed)
        print(f"network prior: {len(drawn)} {kind.value} layers (stored ones are reused)")
        with MeasurementStore(workspace.store_path) as store:
            frame = measure_layers(
                [d.layer for d in drawn],
                target,
                store=store,
                settings=LONE_SETTINGS,
                plan_name=f"networks-{kind.value}",
            )
        sources = {d.layer.key: d.sources for d in drawn}
        frame["sources"] = frame["layer_key"].map(sources)
        frame["part"] = "networks"
        frames.append(frame)
    if sampler.originals(LayerKind.CONV) and PRIOR_GROUPED:
        space = grouped_conv_space()
        grouped = RandomSampler({LayerKind.CONV: space}).sample(
            LayerKind.CONV, PRIOR_GROUPED, seed=seed
        )
        print(f"network prior: {len(grouped)} grouped conv layers (stored ones are reused)")
        with MeasurementStore(workspace.store_path) as store:
            frame = measure_layers(
                grouped, target, store=store, settings=LONE_SETTINGS, plan_name="grouped-conv"
            )
        frame["sources"] = [frozenset()] * len(frame)  # drawn from no network: every fold
        frame["part"] = "grouped"
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates("layer_key", ignore_index=True)


def prior_models(
    rows: pd.DataFrame, representatives: RepresentativeSet | None, seed: int, regressor: str
) -> dict[LayerKind, LayerModel]:
    """One model per kind (the regressor's default hyper-parameters) on ``rows``."""
    models: dict[LayerKind, LayerModel] = {}
    for kind_name, group in rows.groupby("kind"):
        kind = LayerKind(str(kind_name))
        model = LatencyModel(
            kind,
            regressor=regressor,
            representatives=representatives,
            plateau_mapping=False,
            seed=seed,
        )
        models[kind] = model.fit(
            layers_from_frame(group), group["latency_us"].to_numpy(dtype=np.float64)
        )
    return models


def leave_one_out_estimators(
    kernels: Sequence[NetworkKernels],
    target: Target,
    rows: pd.DataFrame,
    representatives: RepresentativeSet | None,
    seed: int,
    regressor: str,
) -> tuple[list[Estimator], dict[str, int]]:
    """For each network, an estimator whose models were trained without it; rows left out."""
    estimators, left_out = [], {}
    for found in kernels:
        name = found.network.name
        only_this = rows["sources"].map(lambda sources, n=name: sources == frozenset({n}))
        left_out[name] = int(only_this.sum())
        models = prior_models(rows[~only_this], representatives, seed, regressor)
        estimators.append(Estimator(target, models, strict=False))
    return estimators, left_out


# -- one network -----------------------------------------------------------------------------------


def measure_all(
    paths: Sequence[Path],
    estimators: Sequence[Estimator],
    kernels: Sequence[NetworkKernels],
    settings: NetworkMeasureSettings,
) -> list[Comparison]:
    """Measure every network, their rounds interleaved (``measure_networks``), and compare.

    A shared machine's speed drifts over seconds to minutes (10-20 % on the development VM);
    interleaving spreads every network's rounds over the whole measurement, so the drift
    moves all networks alike and the calibration's scale absorbs what is common.
    """
    began = time.perf_counter()

    def progress(number: int) -> None:
        print(
            f"round {number}/{settings.rounds} of {len(paths)} networks "
            f"[{time.perf_counter() - began:.0f} s]",
            flush=True,
        )

    target = estimators[0].target
    measured = measure_networks(
        [found.network for found in kernels], target, settings=settings, on_round=progress
    )
    comparisons = []
    for path, found, estimator, measurement in zip(
        paths, kernels, estimators, measured, strict=True
    ):
        print(
            f"{path.stem:22s} measured {measurement.total_us / 1e3:8.2f} ms "
            f"(spread {measurement.spread_pct:4.1f} %)",
            flush=True,
        )
        comparisons.append(compare(estimator.predict(found), measurement))
    return comparisons


def recorded_measurements(
    path: Path, kernels: Sequence[NetworkKernels], target: Target
) -> tuple[list[NetworkMeasurement], dict[str, Any]]:
    """The network measurements of an earlier run, read from its ``*_kernels.csv``.

    Each network's kernels' profiled times come from the CSV; the spread, the machine-speed
    check and the round medians from the run's JSON beside it (``<name>.json``) where it is
    there. A network's total is the median of its recorded round medians (the statistic
    ``measure_networks`` uses), or, for runs that did not keep them, the CSV's total (then
    the minimum of round medians). The CSV holds only the profiled kernels that run matched
    to its estimate; it may be gzipped (``*_kernels.csv.gz``, as the archived runs in
    ``results/runs/`` are).

    Raises:
        SystemExit: the file is unreadable or lacks a network (named).
    """
    try:
        rows = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: not a bench_estimate kernels CSV ({exc})") from None
    needed = {"network", "network_measured_us", *KERNEL_TIME_COLUMNS} - {"provider"}
    if missing := needed - set(rows.columns):
        raise SystemExit(f"{path}: not a bench_estimate kernels CSV (no {sorted(missing)[0]})")
    sibling = path.with_name(path.name.removesuffix(".gz").replace("_kernels.csv", ".json"))
    recorded = json.loads(sibling.read_text()) if sibling.is_file() else {}
    spreads = {n["name"]: n["spread_pct"] for n in recorded.get("networks", [])}
    rounds = {
        n["name"]: tuple(float(m) for m in n["round_medians_us"])
        for n in recorded.get("networks", [])
        if n.get("round_medians_us")
    }
    measurements = []
    for found in kernels:
        name = found.network.name
        group = rows[rows["network"] == name]
        if group.empty:
            raise SystemExit(f"{path}: no measurement of network {name}")
        timed = group[group["measured_us"].notna()]
        # Runs that kept their round medians are scored with today's statistic (their median).
        medians = rounds.get(name) or (float(group["network_measured_us"].iloc[0]),)
        total = float(statistics.median(medians))
        # p10 / p90 are only kept to report the recorded spread (p90 - p10) / median.
        spread = float(spreads.get(name, 0.0))
        measurements.append(
            NetworkMeasurement(
                network=name,
                target_id=target.target_id,
                total_us=total,
                median_us=total,
                p10_us=total,
                p90_us=total * (1 + spread / 100),
                round_medians_us=medians,
                runs=0,
                kernels=pd.DataFrame(
                    {
                        "node": timed["node"].astype(str),
                        "op": timed["op"].astype(str).str.rpartition(".")[2],
                        "measured_us": timed["measured_us"].astype(float),
                        "provider": "recorded",
                        "output_shape": timed["output_shape"].astype(str),
                    }
                ).reset_index(drop=True),
                settings=NetworkMeasureSettings(),
            )
        )
    source = {
        "file": str(path),
        "spread_recorded": bool(spreads),
        "total": "median of the recorded round medians"
        if rounds
        else "the recorded total (runs before round medians were kept: minimum of round medians)",
    }
    if "machine_speed" in recorded:
        source["machine_speed"] = recorded["machine_speed"]
    return measurements, source


def speed_check(
    workspace: Workspace, target: Target, layers: Sequence[LayerConfig]
) -> dict[str, float]:
    """Re-measure stored layers now: the machine's speed relative to when they were stored.

    The layers are measured into a temporary store (the workspace's is not touched); the
    ratio now / stored of each layer's latency is summarised (median, p10, p90).
    """
    with MeasurementStore(workspace.store_path) as store:
        stored = store.frame(
            target_id=target.target_id,
            fingerprint_hash=fingerprint_hash(target.fingerprint()),
            layer_keys=[x.key for x in layers],
        )
    ratio = measure_again(stored, target, settings=LONE_SETTINGS, progress=False)["ratio"]
    return {
        "layers": len(ratio),
        "median": float(ratio.median()),
        "p10": float(ratio.quantile(0.1)),
        "p90": float(ratio.quantile(0.9)),
    }


def speed_layers(workspace: Workspace, target: Target, count: int) -> list[LayerConfig]:
    """``count`` stored layers of 50 µs to 3 ms (seeded), for :func:`speed_check`."""
    with MeasurementStore(workspace.store_path) as store:
        frame = store.frame(
            target_id=target.target_id, fingerprint_hash=fingerprint_hash(target.fingerprint())
        )
    frame = frame[(frame["latency_us"] >= 50) & (frame["latency_us"] <= 3000)]
    if frame.empty:
        return []
    picked = frame.sample(min(count, len(frame)), random_state=0)
    return layers_from_frame(picked)


def left_out_totals(
    comparisons: Sequence[Comparison],
    kernels: Sequence[NetworkKernels],
    estimators: Sequence[Estimator],
    cache_bytes: int,
) -> list[float]:
    """Each network's total under a calibration fitted on all the other networks."""
    samples = [
        CalibrationSample(c.estimate.network, c.measurement.total_us, c.layers) for c in comparisons
    ]
    totals = []
    for i, (found, estimator) in enumerate(zip(kernels, estimators, strict=True)):
        others = samples[:i] + samples[i + 1 :]
        calibration = fit_calibration(
            others,
            target_id=estimator.target.target_id,
            weight_cap_bytes=cache_bytes,
            core_cache_bytes=core_cache_bytes(estimator.target),
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


def report(args: argparse.Namespace, paths: Sequence[Path]) -> tuple[dict[str, Any], pd.DataFrame]:
    workspace = Workspace.at(args.workspace)
    target = get_target(args.target)
    settings = NetworkMeasureSettings(rounds=args.rounds)
    info: dict[str, Any] = {
        "machine": machine(),
        "target_id": target.target_id,
        "mode": mode_name(args),
        "settings": {**settings.__dict__, "min_layer_us": MIN_LAYER_US},
    }
    plain = Estimator(target, {}, strict=False)
    kernels = [plain.kernels(path) for path in paths]
    in_sample_estimator: Estimator | None = None
    if args.oracle:
        models, missing = oracle_models(kernels, target, workspace)
        info["oracle_missing_layers"] = missing
        estimators = [Estimator(target, models, strict=False)] * len(paths)
    elif args.leave_one_out:
        estimators, in_sample_estimator = prior_estimators(args, kernels, target, workspace, info)
    else:
        loaded = Estimator.load(workspace, target, calibrated=False, strict=False)
        info["models"] = sorted(kind.value for kind in loaded.models)
        estimators = [loaded] * len(paths)
    if args.measurements is not None:
        recorded, info["measurements_from"] = recorded_measurements(
            args.measurements, kernels, target
        )
        if "machine_speed" in info["measurements_from"]:
            info["machine_speed"] = info["measurements_from"].pop("machine_speed")
        comparisons = [
            compare(estimator.predict(found), measurement)
            for found, estimator, measurement in zip(kernels, estimators, recorded, strict=True)
        ]
        reference: list[LayerConfig] = []
        speed_before = None
    else:
        reference = speed_layers(workspace, target, args.speed_layers) if args.speed_layers else []
        speed_before = speed_check(workspace, target, reference) if reference else None
        comparisons = measure_all(paths, estimators, kernels, settings)
    if reference:
        info["machine_speed"] = {
            "before_networks": speed_before,
            "after_networks": speed_check(workspace, target, reference),
            "note": "latency now / latency stored of the same lone layers; above 1: the "
            "machine is slower than when the training layers were measured",
        }
    cache = last_level_cache_bytes(target)
    info.update(accuracy(comparisons, kernels, estimators, cache))
    if in_sample_estimator is not None:
        in_sample_comparisons = [
            compare(in_sample_estimator.predict(found), c.measurement)
            for found, c in zip(kernels, comparisons, strict=True)
        ]
        figures = accuracy(
            in_sample_comparisons, kernels, [in_sample_estimator] * len(paths), cache
        )
        info["in_sample"] = {k: figures[k] for k in ("whole_network", "per_layer")}
    saved = load_calibration(workspace, target.target_id)
    if saved is not None and not args.oracle and not args.leave_one_out:
        calibrated = Estimator(target, estimators[0].models, calibration=saved, strict=False)
        totals = [calibrated.predict(found).total_us for found in kernels]
        overlap = sorted(
            {n.name for n in saved.networks} & {c.estimate.network for c in comparisons}
        )
        info["whole_network"]["saved_calibration"] = {
            **network_figures([c.measurement.total_us for c in comparisons], totals),
            "in_sample_networks": overlap,
        }
    info["speed"] = speed(args, paths, estimators[0])
    kernel_rows = pd.concat(
        [
            c.layers.assign(network=c.estimate.network, network_measured_us=c.measurement.total_us)
            for c in comparisons
        ],
        ignore_index=True,
    )
    return info, kernel_rows


def mode_name(args: argparse.Namespace) -> str:
    if args.oracle:
        return "oracle (lone-layer measurements)"
    if args.leave_one_out:
        return "network-prior models, each network left out"
    return "trained models"


def prior_estimators(
    args: argparse.Namespace,
    kernels: Sequence[NetworkKernels],
    target: Target,
    workspace: Workspace,
    info: dict[str, Any],
) -> tuple[list[Estimator], Estimator]:
    """Leave-one-network-out estimators and the in-sample one (fills ``info['prior']``)."""
    pr_path = args.representatives or workspace.representatives_path(target.target_id)
    representatives = RepresentativeSet.load(pr_path) if pr_path.exists() else None
    began = time.perf_counter()
    rows = prior_samples(kernels, target, workspace, args.seed)
    measured_s = time.perf_counter() - began
    began = time.perf_counter()
    estimators, left_out = leave_one_out_estimators(
        kernels, target, rows, representatives, args.seed, args.regressor
    )
    in_sample_models = prior_models(rows, representatives, args.seed, args.regressor)
    in_sample = Estimator(target, in_sample_models, strict=False)
    info["prior"] = {
        "layers_by_kind": {str(k): int(n) for k, n in rows["kind"].value_counts().items()},
        "layers": len(rows),
        "measure_seconds_this_run": measured_s,
        "train_seconds_all_folds": time.perf_counter() - began,
        "left_out_layers": left_out,
        "budgets": {
            **{k.value: v for k, v in PRIOR_BUDGETS.items()},
            "other kinds": PRIOR_DEFAULT_BUDGET,
        },
        "random_share": PRIOR_RANDOM_SHARE,
        "grouped_conv": int((rows["part"] == "grouped").sum()),
        "representatives": str(pr_path) if representatives is not None else None,
        "regressor": f"{args.regressor} (default hyper-parameters), log-relative target",
    }
    return estimators, in_sample


def accuracy(
    comparisons: Sequence[Comparison],
    kernels: Sequence[NetworkKernels],
    estimators: Sequence[Estimator],
    cache: int,
) -> dict[str, Any]:
    """Per-network rows, whole-network and per-layer figures, and the in-sample calibration."""
    measured = [c.measurement.total_us for c in comparisons]
    sums = [c.estimate.sum_us for c in comparisons]
    many = len(comparisons) > 1
    left_out = left_out_totals(comparisons, kernels, estimators, cache) if many else sums
    samples = [
        CalibrationSample(c.estimate.network, c.measurement.total_us, c.layers) for c in comparisons
    ]
    target_id = estimators[0].target.target_id
    in_sample = fit_calibration(
        samples,
        target_id=target_id,
        weight_cap_bytes=cache,
        core_cache_bytes=core_cache_bytes(estimators[0].target),
    )
    networks = [
        {
            "name": c.estimate.network,
            "measured_us": c.measurement.total_us,
            "spread_pct": c.measurement.spread_pct,
            "round_medians_us": list(c.measurement.round_medians_us),
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
    return {
        "networks": networks,
        "whole_network": {
            "plain_sum": network_figures(measured, sums),
            "left_out_calibration": network_figures(measured, left_out),
        },
        "calibration_on_all": {
            "formula": in_sample.formula,
            "terms": list(in_sample.terms),
            "loo_mape": in_sample.loo_mape,
            "unmodelled": [
                {"op": f.op, "samples": f.samples, "fixed_us": f.fixed_us, "gbps": f.gbps}
                for f in in_sample.unmodelled
            ],
        },
        "per_layer": layer_figures(comparisons),
    }


def speed(args: argparse.Namespace, paths: Sequence[Path], estimator: Estimator) -> dict[str, Any]:
    timing = next((p for p in paths if p.stem == TIMING_NETWORK), None)
    if timing is None:
        return {"note": f"{TIMING_NETWORK}.onnx not among the networks"}
    result: dict[str, Any] = {"network": timing.name, "phases_s": phase_seconds(timing, estimator)}
    if not args.oracle and not args.leave_one_out and args.cli_repeats:
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
        f"{info['settings']['rounds']} rounds x {info['settings']['runs']} runs per network, "
        "the networks' rounds interleaved.",
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
    if "measurements_from" in info:
        source = info["measurements_from"]
        spread = "" if source["spread_recorded"] else " (spread not recorded: shown as 0)"
        check = "; the machine-speed check below is that run's" if "machine_speed" in info else ""
        lines += [
            "",
            "Nothing measured in this run: the networks' measurements are those recorded in "
            f"`{source['file']}`{spread}{check}. Each network's total: {source['total']}.",
        ]
    if "machine_speed" in info:
        speed_info = info["machine_speed"]
        before, after = speed_info["before_networks"], speed_info["after_networks"]
        lines += [
            "",
            f"Machine speed check ({before['layers']} stored lone layers re-measured, latency now "
            f"/ stored, median [p10, p90]): before the networks {before['median']:.3f} "
            f"[{before['p10']:.3f}, {before['p90']:.3f}], after {after['median']:.3f} "
            f"[{after['p10']:.3f}, {after['p90']:.3f}].",
        ]
    if "prior" in info:
        prior = info["prior"]
        kinds = ", ".join(f"{k} {n}" for k, n in prior["layers_by_kind"].items())
        lines += [
            "",
            f"Network-prior training set: {prior['layers']} lone layers ({kinds}; of the "
            f"convs, {prior.get('grouped_conv', 0)} grouped ones drawn from "
            f"`grouped_conv_space()`, used by every fold); {prior['regressor']}; each network "
            "predicted by models trained without the layers drawn only from it (its own "
            "layers and their neighbours).",
        ]
    if "in_sample" in info:
        ref = info["in_sample"]["whole_network"]
        lines += [
            "",
            "In-sample reference (models trained on every network's samples, calibration "
            f"still left out): plain sum MAPE {ref['plain_sum']['mape']:.2f} %, calibrated "
            f"{ref['left_out_calibration']['mape']:.2f} % (worst "
            f"{ref['left_out_calibration']['worst_error_pct']:+.1f} %); per-layer MAPE "
            f"{info['in_sample']['per_layer']['all']['mape']:.1f} %.",
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
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="measurement rounds per network (interleaved across the networks)",
    )
    parser.add_argument(
        "--speed-layers",
        type=int,
        default=40,
        help="stored layers re-measured before and after the networks (0: no speed check)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--oracle", action="store_true", help="lone-layer measurements as models")
    mode.add_argument(
        "--leave-one-out",
        action="store_true",
        help="train network-prior models here, each network predicted without its own layers",
    )
    parser.add_argument(
        "--representatives", type=Path, help="PR file for --leave-one-out's features"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the network-prior sampler")
    parser.add_argument(
        "--regressor", default="xgboost", help="regressor of the --leave-one-out models"
    )
    parser.add_argument(
        "--measurements",
        type=Path,
        help="score against an earlier run's *_kernels.csv instead of measuring the networks",
    )
    parser.add_argument("--cli-repeats", type=int, default=3, help="timed `prmodel estimate` runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    paths = sorted(args.networks or NETWORKS.glob("*.onnx"))
    if not paths:
        sys.exit(
            f"no networks in {NETWORKS}: build them first, without torch: "
            f"prmodel networks build reference --out {NETWORKS}"
        )
    info, kernel_rows = report(args, paths)
    info["command"] = " ".join(["benchmarks/bench_estimate.py", *sys.argv[1:]])
    name = "bench_estimate"
    if args.oracle or args.leave_one_out:
        name += "_oracle" if args.oracle else "_loo"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    kernel_rows.to_csv(args.results / f"{name}_kernels.csv", index=False)
    text = markdown(info)
    (args.results / f"{name}.md").write_text(text)
    print(text)
    print(f"written to {args.results / name}.json, .md and _kernels.csv (per-kernel rows)")


if __name__ == "__main__":
    main()
