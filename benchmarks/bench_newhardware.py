"""Benchmark of ``prmodel learn``: a predictor for a machine prmodel never saw, in minutes.

From an empty workspace on this machine the script

1. runs :func:`prmodel.workflows.learn.learn_target` with the time budget (``--minutes``):
   it builds the training networks torch-free, profiles them (interleaved rounds) until the
   budget is spent, trains per-kind models on the in-network kernel times and fits the
   calibration, and saves them where ``prmodel estimate`` loads them;
2. builds the networks of every held-out set (:data:`prmodel.zoo.HELD_OUT_SETS`:
   architectures, widths, resolutions and batch sizes outside the training networks),
   reported apart: the newest set (the last of ``HELD_OUT_SETS``) was chosen before any
   predictor was scored on it and judges the choices made since the one before it; the
   older sets have informed choices (the training set's tiers, the calibration's rule for
   small networks, the rounds rule) and are development sets. It measures them twice, each
   time with their rounds interleaved: the truth is the mean of the two, the noise floor
   the MAPE between them;
3. estimates every held-out network with the saved predictor (``Estimator.load``, the
   ``prmodel estimate`` path) and reports the held-out MAPE, the share within ±10 %, the
   worst network and a per-network table;
4. draws a learning curve: held-out MAPE of predictors learned (``learn_from_profiles``)
   from the first 3, 6 and 10 networks measured and up to the end of every tier, against the
   minutes and kernels those networks took (no extra measuring);
5. for comparison, a lone-layer strategy (``--lone-layers N``, 0 skips it): N layers drawn
   by the network-prior sampler around the reference networks' layers, measured alone with
   the sweep runner, one model per kind, calibrated on the profiled reference networks (the
   README's recipe at a small budget), at N/3, 2N/3 and N layers; its minutes count the
   lone layers and the reference networks' profiles.

``--quick`` is a smoke run of about two minutes (1 minute of learning, 2 rounds, a short
curve, no lone layers); its figures say only that the path works.

Step 1 runs with learn's stop rule (``--stop-at``, 3 % here; ``prmodel learn`` has none by
default): where it stops early, the script then goes on with the tiers it skipped, within
the budget left, and scores that predictor too (the one ``prmodel learn`` makes by
default), so the results show what the stop saved and what it cost; the learning curve has
a point at the end of every tier.

Run: ``.venv/bin/python benchmarks/bench_newhardware.py [--minutes 10] [--rounds 5]
[--lone-layers 300] [--stop-at 3] [--workspace DIR] [--quick] [--name STEM]``. Writes
``benchmarks/results/bench_newhardware.json`` and ``.md`` (``bench_newhardware_quick.*``
with ``--quick``, ``STEM.*`` with ``--name``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.estimate.calibration import (
    Calibration,
    core_cache_bytes,
    fit_calibration,
    last_level_cache_bytes,
)
from prmodel.estimate.estimator import Estimator, LayerModel
from prmodel.estimate.kernels import NetworkKernels
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.runner import MeasureSettings, measure_and_read
from prmodel.measure.store import MeasurementStore
from prmodel.metrics import summarize
from prmodel.networks import NetworkMeasureSettings
from prmodel.select.network_prior import NetworkSampler, layers_by_kind
from prmodel.targets import Target, get_target
from prmodel.targets.cpu import machine_info
from prmodel.train.model import LatencyModel
from prmodel.workflows.calibrate import measure_networks
from prmodel.workflows.learn import LEARN_MAX_ROUNDS, LearnReport, learn_target
from prmodel.workflows.network_profiles import (
    kernel_layers,
    matching_rows,
    read_profiles,
)
from prmodel.workflows.predictor_fit import calibration_samples, learn_from_profiles
from prmodel.workspace import Workspace
from prmodel.zoo import (
    HELD_OUT_SETS,
    build_networks,
    reference_networks,
)
from prmodel.zoo.learning import learning_tiers

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CURVE_POINTS = (3, 6, 10)
"""Learning-curve points: predictors learned from the first N networks measured, and from
the networks up to the end of each tier (:func:`tier_ends`), and from all."""
BENCH_STOP_PCT = 3.0
"""The stop threshold step 1 tries (learn's default is none): the script then measures what
the stop skipped, so one run gives both predictors and what the stop saved and cost."""
LONE_SETTINGS = MeasureSettings(max_rounds=7, max_seconds_per_point=10.0)
"""How the lone-layer comparison measures its layers (3-7 interleaved rounds)."""
LONE_RANDOM_SHARE = 0.2
LONE_MIN_PER_KIND = 5


@dataclass(frozen=True)
class HeldOut:
    """The held-out networks: their kernels, and two measurements of their latency."""

    names: tuple[str, ...]
    sets: tuple[str, ...]
    kernels: tuple[NetworkKernels, ...]
    first_us: np.ndarray
    second_us: np.ndarray
    seconds: float
    rounds: tuple[int, ...] = ()
    """Rounds each network took in the two measurements together."""

    @property
    def truth_us(self) -> np.ndarray:
        return (self.first_us + self.second_us) / 2

    @property
    def noise_mape(self) -> float:
        """MAPE between the two measurements (relative to their mean): the noise floor."""
        return float(100 * np.mean(np.abs(self.first_us - self.second_us) / self.truth_us))


# -- held-out networks -----------------------------------------------------------------------------


def measure_held_out(
    target: Target, folder: Path, settings: NetworkMeasureSettings, *, seed: int = 0
) -> HeldOut:
    """Build, map and measure the held-out networks twice (interleaved rounds each time)."""
    started = time.monotonic()
    named = [(name, spec) for name, make in HELD_OUT_SETS.items() for spec in make()]
    specs = [spec for _, spec in named]
    paths = build_networks(specs, folder)
    mapper = Estimator(target, {}, strict=False)
    kernels = tuple(mapper.kernels(path) for path in paths)
    print(f"held-out: {len(paths)} networks built and mapped; measuring them twice")
    first = measure_networks(paths, target, settings=settings)
    second = measure_networks(paths, target, settings=settings)
    return HeldOut(
        names=tuple(spec.name for spec in specs),
        sets=tuple(name for name, _ in named),
        kernels=kernels,
        first_us=np.array([m.total_us for m in first]),
        second_us=np.array([m.total_us for m in second]),
        seconds=time.monotonic() - started,
        rounds=tuple(
            len(a.round_medians_us) + len(b.round_medians_us)
            for a, b in zip(first, second, strict=True)
        ),
    )


def score(estimator: Estimator, held_out: HeldOut) -> dict[str, Any]:
    """The estimator's held-out figures: summary metrics, worst network, per-network rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation warnings: the held-out set is new
        predicted = np.array([estimator.predict(k).total_us for k in held_out.kernels])
    truth = held_out.truth_us
    errors = 100 * (predicted - truth) / truth
    worst = int(np.argmax(np.abs(errors)))
    sets = np.array(held_out.sets)
    by_set = {}
    for name in dict.fromkeys(held_out.sets):
        chosen = sets == name
        at = int(np.argmax(np.where(chosen, np.abs(errors), -1.0)))
        by_set[name] = {
            **summarize(truth[chosen], predicted[chosen]),
            "worst": {"network": held_out.names[at], "error_pct": float(errors[at])},
        }
    return {
        **summarize(truth, predicted),
        "by_set": by_set,
        "worst": {"network": held_out.names[worst], "error_pct": float(errors[worst])},
        "networks": [
            {
                "network": name,
                "set": held_out.sets[i],
                "measured_ms": float(truth[i] / 1e3),
                "first_ms": float(held_out.first_us[i] / 1e3),
                "second_ms": float(held_out.second_us[i] / 1e3),
                "predicted_ms": float(predicted[i] / 1e3),
                "error_pct": float(errors[i]),
            }
            for i, name in enumerate(held_out.names)
        ],
    }


# -- the learning curve of network profiles -------------------------------------------------------


def learning_curve(
    rows: pd.DataFrame,
    order: Sequence[str],
    target: Target,
    held_out: HeldOut,
    points: Sequence[int],
) -> list[dict[str, Any]]:
    """Held-out figures of predictors learned from the first N networks of ``order``."""
    seconds = rows.groupby("network")["seconds"].first()
    curve = []
    sizes = sorted({n for n in points if n < len(order)} | {len(order)})
    for size in sizes:
        chosen = list(order[:size])
        subset = rows[rows["network"].isin(chosen)]
        started = time.monotonic()
        learned = learn_from_profiles(subset, target, folds=min(5, size))
        figures = score(learned.estimator(target), held_out)
        curve.append(
            {
                "networks": size,
                "kernels": int((subset["status"] != "free").sum()),
                "minutes": float(seconds[chosen].sum() / 60),
                "train_seconds": time.monotonic() - started,
                "mape": figures["mape"],
                "within_10": figures["within_10"],
                "worst": figures["worst"],
                "mape_by_set": {k: v["mape"] for k, v in figures["by_set"].items()},
            }
        )
        print(
            f"curve: {size} networks, {curve[-1]['minutes']:.1f} min -> held-out MAPE "
            f"{figures['mape']:.2f} %, within ±10 % {figures['within_10']:.0f} %"
        )
    return curve


def tier_ends(order: Sequence[str]) -> list[int]:
    """How many networks of ``order`` come up to the end of each learning tier."""
    tier_of = {spec.name: i for i, tier in enumerate(learning_tiers()) for spec in tier.networks}
    return [
        position + 1
        for position, name in enumerate(order)
        if position + 1 == len(order) or tier_of.get(order[position + 1]) != tier_of.get(name)
    ]


# -- the lone-layer comparison --------------------------------------------------------------------


def lone_layer_curve(
    rows: pd.DataFrame,
    target: Target,
    workspace: Workspace,
    held_out: HeldOut,
    budget: int,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Network-prior lone layers around the reference networks, measured alone, calibrated
    on the profiled reference networks; held-out figures at a third, two thirds and all."""
    reference = [spec.name for spec in reference_networks()]
    ref_rows = rows[rows["network"].isin(reference)].reset_index(drop=True)
    if ref_rows.empty:
        return {"skipped": "no reference network was profiled"}
    layers = kernel_layers(ref_rows)
    by_network: dict[str, list[LayerConfig]] = {}
    for name, layer in zip(ref_rows["network"], layers, strict=True):
        if layer is not None:
            by_network.setdefault(str(name), []).append(layer)
    sampler = NetworkSampler(by_network, random_share=LONE_RANDOM_SHARE)
    counts = layers_by_kind(by_network)
    total = sum(counts.values())
    drawn: list[LayerConfig] = []
    for kind, count in counts.items():
        share = max(LONE_MIN_PER_KIND, round(budget * count / total))
        drawn += sampler.sample(kind, share, seed=seed)
    started = time.monotonic()
    with MeasurementStore(workspace.store_path) as store:
        measured = measure_and_read(
            drawn, target, store=store, settings=LONE_SETTINGS, plan_name="lone-layers"
        )
    sweep_seconds = time.monotonic() - started
    profile_seconds = float(ref_rows.groupby("network")["seconds"].first().sum())
    frame = measured.frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    curve = []
    for size in sorted({max(1, len(frame) // 3), max(1, 2 * len(frame) // 3), len(frame)}):
        subset = frame.iloc[:size]
        models = _lone_models(subset, target, seed)
        calibration = _calibration(ref_rows, layers, models, target)
        estimator = Estimator(target, models, calibration=calibration, strict=False, partial=True)
        figures = score(estimator, held_out)
        minutes = (sweep_seconds * size / len(frame) + profile_seconds) / 60
        curve.append(
            {
                "layers": size,
                "minutes": minutes,
                "mape": figures["mape"],
                "within_10": figures["within_10"],
                "worst": figures["worst"],
                "mape_by_set": {k: v["mape"] for k, v in figures["by_set"].items()},
            }
        )
        print(
            f"lone layers: {size} layers + reference profiles, {minutes:.1f} min -> held-out "
            f"MAPE {figures['mape']:.2f} %"
        )
    return {
        "budget": budget,
        "measured": int(measured.report.measured),
        "reused": int(measured.report.skipped),
        "sweep_seconds": sweep_seconds,
        "calibration_networks": sorted(set(ref_rows["network"])),
        "curve": curve,
    }


def _lone_models(frame: pd.DataFrame, target: Target, seed: int) -> dict[LayerKind, LayerModel]:
    models: dict[LayerKind, LayerModel] = {}
    profile = target.hardware_profile()
    for kind_name, group in frame.groupby("kind"):
        if len(group) < 3:
            continue
        kind = LayerKind(str(kind_name))
        model = LatencyModel(kind, profile=profile, plateau_mapping=False, seed=seed)
        models[kind] = model.fit(
            layers_from_frame(group), group["latency_us"].to_numpy(dtype=np.float64)
        )
    return models


def modelled_kernels(
    rows: pd.DataFrame,
    layers: Sequence[LayerConfig | None],
    models: Mapping[LayerKind, LayerModel],
    target: Target | None = None,
) -> np.ndarray:
    """Each timed kernel's time by the model of its kind (NaN: free, no model, or a layer
    ``target`` cannot run alone, which learn leaves to the calibration's op fits)."""
    predicted = np.full(len(rows), np.nan)
    timed = (rows["status"] != "free").to_numpy()
    for kind, model in models.items():
        picked = [i for i, x in enumerate(layers) if x is not None and x.kind is kind]
        picked = [i for i in picked if timed[i]]
        if target is not None:
            picked = [i for i in picked if target.unsupported_reason(layers[i]) is None]  # type: ignore[arg-type]
        if picked:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # extrapolation: judged by the figures
                predicted[picked] = model.predict([layers[i] for i in picked])  # type: ignore[misc]
    return predicted


def _calibration(
    rows: pd.DataFrame,
    layers: Sequence[LayerConfig | None],
    models: Mapping[LayerKind, LayerModel],
    target: Target,
) -> Calibration:
    """The standard calibration of lone-layer models, fitted on profiled networks' rows."""
    predicted = modelled_kernels(rows, layers, models)
    status = np.where(rows["status"] == "free", "free", "unmodelled").astype(object)
    status[np.isfinite(predicted)] = "modelled"
    return fit_calibration(
        calibration_samples(rows.reset_index(drop=True), status, np.nan_to_num(predicted)),
        target_id=target.target_id,
        weight_cap_bytes=last_level_cache_bytes(target),
        core_cache_bytes=core_cache_bytes(target),
    )


# -- report ----------------------------------------------------------------------------------------


def learned_summary(report: LearnReport) -> dict[str, Any]:
    return {
        "networks": len(report.networks),
        "measured_now": len(report.measured),
        "reused": len(report.reused),
        "skipped": len(report.skipped),
        "kernels": report.kernels,
        "measure_minutes": report.measure_seconds / 60,
        "data_minutes": report.data_seconds / 60,
        "train_seconds": report.train_seconds,
        "calibration": report.calibration.formula,
        "training_check_mape": report.mape,
        "training_check_within_10": report.within_10,
        "kinds": report.to_dict()["kinds"],
        "order": list(report.networks),
        "stop_pct": report.stop_pct,
        "stopped_after": report.stopped_after,
        "tier_checks": [check.to_dict() for check in report.tier_checks],
    }


def markdown(result: Mapping[str, Any]) -> str:
    held = result["held_out"]
    learned = result["learned"]
    lines = [
        "# New hardware: a predictor from profiled networks",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['usable_cores']} usable cores, "
        f"load {result['machine']['load_average']} at the start, "
        f"{result['load_after']} at the end. Target `{result['target_id']}`. "
        f"Settings: {result['settings']}.",
        "",
        f"- measured: {learned['networks']} networks, {learned['kernels']:,} kernels in "
        f"{learned['data_minutes']:.1f} min of building, profiling and mapping "
        f"(budget {result['settings']['minutes']:g} min); trained in "
        f"{learned['train_seconds']:.0f} s",
        *_stop_lines(result),
        f"- held-out ({len(held['networks'])} networks): MAPE **{held['mape']:.2f} %**, "
        f"within ±10 %: {held['within_10']:.0f} %, worst {held['worst']['network']} "
        f"{held['worst']['error_pct']:+.1f} %",
        *(
            f"- {name} ({sum(r['set'] == name for r in held['networks'])} networks): MAPE "
            f"**{figures['mape']:.2f} %**, within ±10 %: {figures['within_10']:.0f} %, worst "
            f"{figures['worst']['network']} {figures['worst']['error_pct']:+.1f} %"
            for name, figures in held["by_set"].items()
        ),
        f"- noise floor (MAPE between two measurements of the held-out networks): "
        f"{result['noise_mape']:.2f} %",
        *_round_lines(result),
        f"- calibration: {learned['calibration']}; training networks predicted without them: "
        f"MAPE {learned['training_check_mape']:.2f} %",
        "",
        "| held-out network | set | measured ms | predicted ms | error % |",
        "|---|---|---:|---:|---:|",
    ]
    for row in held["networks"]:
        lines.append(
            f"| {row['network']} | {row['set']} | {row['measured_ms']:.3g} | "
            f"{row['predicted_ms']:.3g} | "
            f"{row['error_pct']:+.1f} |"
        )
    lines += [
        "",
        "## Learning curve (network profiles)",
        "",
        "MAPE % on all held-out networks and on each set; the worst network of all.",
        "",
        f"| networks | kernels | minutes | all | {' | '.join(held['by_set'])} | within ±10 % "
        "| worst |",
        f"|---:|---:|---:|---:|{'---:|' * len(held['by_set'])}---:|---|",
    ]
    for point in result["curve"]:
        by_set = point.get("mape_by_set", {})
        lines.append(
            f"| {point['networks']} | {point['kernels']:,} | {point['minutes']:.1f} | "
            f"{point['mape']:.2f} | "
            + "".join(
                f"{by_set[name]:.2f} | " if name in by_set else "- | " for name in held["by_set"]
            )
            + f"{point['within_10']:.0f} | {point['worst']['network']} "
            f"{point['worst']['error_pct']:+.1f} % |"
        )
    lines += _tier_check_lines(result)
    lone = result["lone_layers"]
    lines += ["", "## Lone layers (network prior, calibrated on the reference profiles)", ""]
    if "curve" in lone:
        lines += [
            f"| layers | minutes | all | {' | '.join(held['by_set'])} | within ±10 % | worst |",
            f"|---:|---:|---:|{'---:|' * len(held['by_set'])}---:|---|",
        ]
        for point in lone["curve"]:
            by_set = point.get("mape_by_set", {})
            lines.append(
                f"| {point['layers']} | {point['minutes']:.1f} | {point['mape']:.2f} | "
                + "".join(
                    f"{by_set[name]:.2f} | " if name in by_set else "- | "
                    for name in held["by_set"]
                )
                + f"{point['within_10']:.0f} | {point['worst']['network']} "
                f"{point['worst']['error_pct']:+.1f} % |"
            )
    else:
        lines.append(f"Skipped: {lone['skipped']}.")
    return "\n".join(lines) + "\n"


def _round_lines(result: Mapping[str, Any]) -> list[str]:
    rounds = result.get("rounds")
    if not rounds or rounds["training_mean"] is None:
        return []
    return [
        f"- rounds (up to {result['settings']['max_rounds']} where a network's rounds "
        f"disagree): training networks {rounds['training_mean']:.1f} on average, "
        f"{rounds['training_more']} took more than {result['settings']['rounds']}; held-out "
        f"{rounds['held_out_mean']:.1f} per measurement, {rounds['held_out_more']} took more"
    ]


def _stop_lines(result: Mapping[str, Any]) -> list[str]:
    learned = result["learned"]
    checks = learned["tier_checks"]
    seconds = sum(check["seconds"] for check in checks)
    lines = []
    if learned["stopped_after"] is not None:
        lines.append(
            f"- stopped after tier '{learned['stopped_after']}': predicted within "
            f"{learned['stop_pct']:g} % before it was learned ({len(checks)} checks, "
            f"{seconds:.0f} s of the budget)"
        )
    elif checks:
        lines.append(
            f"- no stop: no tier came within {learned['stop_pct']:g} % ({len(checks)} checks, "
            f"{seconds:.0f} s of the budget)"
        )
    full = result.get("without_stop")
    if full is not None:
        held, more = full["held_out"], full["learned"]
        by_set = ", ".join(f"{k} {v['mape']:.2f} %" for k, v in held["by_set"].items())
        lines.append(
            f"- without the stop (the skipped tiers measured after): {more['networks']} "
            f"networks, {more['data_minutes']:.1f} min; held-out MAPE {held['mape']:.2f} % "
            f"({by_set}), worst {held['worst']['network']} {held['worst']['error_pct']:+.1f} %"
        )
    return lines


def _tier_check_lines(result: Mapping[str, Any]) -> list[str]:
    checks = result["learned"]["tier_checks"]
    if not checks:
        return []
    lines = [
        "",
        "## Tiers predicted before they were learned (learn's stop rule)",
        "",
        "| tier | networks | trained on | MAPE % | worst | seconds |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for check in checks:
        lines.append(
            f"| {check['tier']} | {check['networks']} | {check['trained_on']} | "
            f"{check['mape']:.2f} | {check['worst']} {check['worst_error_pct']:+.1f} % | "
            f"{check['seconds']:.0f} |"
        )
    return lines


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--minutes", type=float, default=10.0, help="learning time budget")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per training network")
    parser.add_argument("--held-out-rounds", type=int, default=5)
    parser.add_argument(
        "--max-rounds", type=int, default=LEARN_MAX_ROUNDS, help="0: fixed rounds everywhere"
    )
    parser.add_argument("--lone-layers", type=int, default=300, help="0 skips the comparison")
    parser.add_argument(
        "--stop-at", type=float, default=BENCH_STOP_PCT, help="learn's --stop-at for step 1"
    )
    parser.add_argument("--workspace", type=Path, help="default: a new empty folder")
    parser.add_argument("--quick", action="store_true", help="a two-minute smoke run")
    parser.add_argument("--name", help="results file stem (default: bench_newhardware[_quick])")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.rounds, args.held_out_rounds, args.lone_layers = 1.0, 2, 2, 0
        args.max_rounds = 0
    root = args.workspace or Path(tempfile.mkdtemp(prefix="prmodel-newhardware-"))
    workspace = Workspace.at(root).create()
    print(f"workspace: {workspace.root}")
    target = get_target(args.target)
    machine = machine_info(libraries=("onnxruntime", "xgboost"))
    started = time.monotonic()
    settings = NetworkMeasureSettings(rounds=args.rounds, max_rounds=args.max_rounds)
    report = learn_target(
        target,
        workspace=workspace,
        minutes=args.minutes,
        stop_pct=args.stop_at,
        settings=settings,
        on_note=print,
    )
    print(
        f"learned from {len(report.networks)} networks ({report.kernels} kernels) in "
        f"{report.data_seconds / 60:.1f} min of measuring; trained in {report.train_seconds:.0f} s"
        + (f"; stopped after tier {report.stopped_after!r}" if report.stopped_after else "")
    )
    held_settings = NetworkMeasureSettings(
        rounds=args.held_out_rounds,
        max_rounds=args.max_rounds and max(args.max_rounds, args.held_out_rounds),
        profiled_runs=0,
        warmup=2 if args.quick else 5,
        runs=5 if args.quick else 10,
    )
    held_out = measure_held_out(target, workspace.root / "networks" / "held-out", held_settings)
    saved = score(Estimator.load(workspace, target), held_out)  # as `prmodel estimate` does
    print(
        f"held-out: MAPE {saved['mape']:.2f} %, within ±10 % {saved['within_10']:.0f} %, "
        f"worst {saved['worst']['network']} {saved['worst']['error_pct']:+.1f} %; noise floor "
        f"{held_out.noise_mape:.2f} %"
    )
    unstopped: dict[str, Any] | None = None
    if report.stopped_after is not None:
        # What the stop saved: go on with the tiers it skipped, within the budget left.
        left = args.minutes - (report.measure_seconds / 60)
        print(f"going on without the stop rule ({left:.1f} min of the budget left)")
        full = learn_target(
            target,
            workspace=workspace,
            minutes=max(left, 0.0),
            stop_pct=0,
            settings=settings,
            on_note=print,
        )
        figures = score(Estimator.load(workspace, target), held_out)
        unstopped = {"learned": learned_summary(full), "held_out": figures}
        print(
            f"without the stop: {len(full.networks)} networks, held-out MAPE "
            f"{figures['mape']:.2f} %"
        )
        report_for_curve = full
    else:
        report_for_curve = report
    whole = read_profiles(report.data_set)
    fingerprint = str(whole["fingerprint_hash"].iloc[0]) if len(whole) else ""
    rows = matching_rows(
        whole,
        target_id=target.target_id,
        fingerprint_hash=fingerprint,
        protocol_hash=str(whole["protocol_hash"].iloc[0]) if len(whole) else "",
    )
    order = report_for_curve.networks
    rows = rows[rows["network"].isin(order)].reset_index(drop=True)
    training_rounds = (
        rows.groupby("network")["round_medians_us"].first().map(lambda v: len(json.loads(v)))
    )
    points = (3, 6) if args.quick else (*CURVE_POINTS, *tier_ends(order))
    curve = learning_curve(rows, order, target, held_out, points)
    lone: dict[str, Any] = {"skipped": "--lone-layers 0" + (" (--quick)" if args.quick else "")}
    if args.lone_layers > 0:
        lone = lone_layer_curve(rows, target, workspace, held_out, args.lone_layers)
    result = {
        "machine": machine,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "target_id": target.target_id,
        "workspace": str(workspace.root),
        "settings": {
            "minutes": args.minutes,
            "rounds": args.rounds,
            "held_out_rounds": args.held_out_rounds,
            "lone_layers": args.lone_layers,
            "stop_at": args.stop_at,
            "max_rounds": args.max_rounds,
            "quick": args.quick,
        },
        "wall_minutes": (time.monotonic() - started) / 60,
        "learned": learned_summary(report),
        "held_out": saved,
        "without_stop": unstopped,
        "noise_mape": held_out.noise_mape,
        "held_out_seconds": held_out.seconds,
        "rounds": {
            "held_out_mean": float(np.mean(held_out.rounds)) / 2 if held_out.rounds else None,
            "held_out_more": sum(r > 2 * args.held_out_rounds for r in held_out.rounds),
            "training_mean": float(np.mean(training_rounds)) if len(training_rounds) else None,
            "training_more": int((training_rounds > args.rounds).sum()),
        },
        "curve": curve,
        "lone_layers": lone,
    }
    stem = args.name or ("bench_newhardware_quick" if args.quick else "bench_newhardware")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    print(f"wrote {RESULTS / stem}.json and .md ({result['wall_minutes']:.1f} min in all)")


if __name__ == "__main__":
    main()
