"""Benchmark of transfer: a new target started from another target's network profiles.

No measuring: everything comes from two network-profile data sets and the held-out truth
that ``bench_newhardware.py`` measured for each target in the same session. For each
direction (reference -> new target), at each learning-curve point (the first N networks the
new target measured, in the order ``prmodel learn`` measures them) it learns

- ``scratch``: from the N networks alone (``prmodel learn``);
- ``transfer``: from the N networks plus the reference's other networks, their kernel
  times translated to the new target by what the N networks show
  (``prmodel learn --reference``, :mod:`prmodel.workflows.transfer`);
- ``recalibrated``: the reference's own kind models, unchanged, with the calibration
  fitted on the N networks (what "start from the reference predictor" means without a
  translation);

and scores each on the new target's held-out networks (the five sets its runs measured,
never learned by either target); N = 0 is the reference predictor as it is. Held-out
networks are rebuilt and mapped (torch-free, about a minute); the truth is the mean of the
two measurements the results file holds.

The directions shipped: 1 intra-op thread <-> 2 intra-op threads of ONNX Runtime on the
AMD EPYC development machine (the only machine at hand; no AVX2 machine was lent). The two
targets share the graph and the kernels, but how much each kernel gains from a second thread
ranges from nothing (small kernels) to almost 2x (large convs), so their latencies differ by
kernel, not by a constant.

Run: ``.venv/bin/python benchmarks/bench_transfer.py [--points 3,6,10,15,30,60,145]
[--name STEM]``. Writes ``benchmarks/results/bench_transfer.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_newhardware import HeldOut, modelled_kernels, score

from prmodel.estimate.estimator import Estimator
from prmodel.targets import Target, get_target
from prmodel.targets.cpu import machine_info
from prmodel.train.in_network import InNetworkFit
from prmodel.workflows.network_profiles import kernel_layers, read_profiles
from prmodel.workflows.predictor_fit import (
    LearnedPredictor,
    calibrated_predictor,
    learn_from_profiles,
)
from prmodel.workflows.transfer import ReferenceProfiles, load_reference
from prmodel.zoo import all_held_out_networks, build_networks
from prmodel.zoo.learning import learning_networks

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PROFILES = ROOT / "sweeps" / "network-profiles"
POINTS = (3, 6, 10, 15, 30, 60, 145)


@dataclass(frozen=True)
class Side:
    """One target's data: its profiles, its target spec and its held-out truth."""

    label: str
    spec: str
    profiles: Path
    truth: Path


SIDES = {
    "t1": Side(
        "1 thread",
        "cpu",
        PROFILES / "ort-cpu-avx512-a68b-t1-all.parquet",
        RESULTS / "bench_newhardware.json",
    ),
    "t2": Side(
        "2 threads",
        "cpu:threads=2",
        PROFILES / "ort-cpu-avx512-a68b-t2-all.parquet",
        RESULTS / "bench_newhardware_t2.json",
    ),
}
DIRECTIONS = (("t1", "t2"), ("t2", "t1"))


def held_out(side: Side, kernels: dict[str, Any]) -> HeldOut:
    """The side's held-out truth (from its results file) with the mapped kernels."""
    rows = json.loads(side.truth.read_text())["held_out"]["networks"]
    by_name = {row["network"]: row for row in rows}
    names = [name for name in kernels if name in by_name]
    return HeldOut(
        names=tuple(names),
        sets=tuple(by_name[n]["set"] for n in names),
        kernels=tuple(kernels[n] for n in names),
        first_us=np.array([by_name[n]["first_ms"] * 1e3 for n in names]),
        second_us=np.array([by_name[n]["second_ms"] * 1e3 for n in names]),
        seconds=0.0,
    )


def measured_order(rows: pd.DataFrame) -> list[str]:
    """The networks of ``rows`` in the order ``prmodel learn`` measures them."""
    present = set(rows["network"])
    return [spec.name for spec in learning_networks() if spec.name in present]


def reference_models_predictor(
    reference: LearnedPredictor, rows: pd.DataFrame, target: Target
) -> LearnedPredictor:
    """The reference's kind models with a calibration fitted on ``rows`` of the new target."""
    predicted = modelled_kernels(rows, kernel_layers(rows), reference.models, target)
    fit = InNetworkFit(reference.models, predicted, (), 0)
    return calibrated_predictor(rows, target, fit, features="reference models")


STRATEGIES = ("scratch", "transfer", "recalibrated")


def learn_as(
    strategy: str,
    rows: pd.DataFrame,
    target: Target,
    *,
    reference: ReferenceProfiles,
    as_is: LearnedPredictor,
) -> LearnedPredictor:
    """The predictor ``strategy`` makes from the new target's ``rows``."""
    folds = min(5, rows["network"].nunique())
    if strategy == "scratch":
        return learn_from_profiles(rows, target, folds=folds)
    if strategy == "transfer":
        return learn_from_profiles(rows, target, folds=folds, reference=reference)
    return reference_models_predictor(as_is, rows, target)


def direction(
    source: Side, new: Side, points: Sequence[int], kernels: dict[str, Any]
) -> dict[str, Any]:
    """Every strategy's held-out figures along the new target's learning curve."""
    target = get_target(new.spec)
    reference = load_reference(source.profiles)
    rows = read_profiles(new.profiles)
    order = measured_order(rows)
    seconds = rows.groupby("network")["seconds"].first()
    truth = held_out(new, kernels)
    print(f"{source.label} -> {new.label}: {len(order)} networks on the new target")
    as_is = learn_from_profiles(reference.rows, get_target(source.spec))
    start = score(Estimator(target, as_is.models, calibration=as_is.calibration), truth)
    curve: list[dict[str, Any]] = [
        {"networks": 0, "minutes": 0.0, "kernels": 0, "reference": _figures(start)}
    ]
    print(f"  0 networks: reference predictor as is {start['mape']:.2f} %")
    for size in sorted({n for n in points if 0 < n < len(order)} | {len(order)}):
        chosen = order[:size]
        subset = rows[rows["network"].isin(chosen)].reset_index(drop=True)
        point: dict[str, Any] = {
            "networks": size,
            "minutes": float(seconds[chosen].sum() / 60),
            "kernels": int((subset["status"] != "free").sum()),
        }
        for name in STRATEGIES:
            started = time.monotonic()
            learned = learn_as(name, subset, target, reference=reference, as_is=as_is)
            figures = _figures(score(learned.estimator(target), truth))
            figures["train_seconds"] = time.monotonic() - started
            if name == "transfer" and learned.translated is not None:
                moved = learned.translated.translation.to_dict()
                figures["translation"] = {**moved, "file": _relative(source.profiles)}
            point[name] = figures
        curve.append(point)
        print(
            f"  {size} networks, {point['minutes']:.1f} min: scratch "
            f"{point['scratch']['mape']:.2f} %, transfer {point['transfer']['mape']:.2f} %, "
            f"recalibrated {point['recalibrated']['mape']:.2f} %"
        )
    return {
        "reference": {
            "label": source.label,
            "target_id": reference.target_id,
            "networks": len(reference.networks),
            "file": _relative(source.profiles),
        },
        "new": {
            "label": new.label,
            "target_id": str(rows["target_id"].iloc[0]),
            "file": _relative(new.profiles),
            "truth": _relative(new.truth),
            "noise_mape": truth.noise_mape,
            "held_out": len(truth.names),
        },
        "curve": curve,
    }


def _figures(scored: dict[str, Any]) -> dict[str, Any]:
    return {
        "mape": scored["mape"],
        "within_10": scored["within_10"],
        "worst": scored["worst"],
        "mape_by_set": {k: v["mape"] for k, v in scored["by_set"].items()},
    }


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "# bench_transfer",
        "",
        f"CPU: {results['machine'].get('cpu', '?')}; no measuring (data sets and held-out "
        "truth from bench_newhardware runs). Held-out MAPE of the new target's 74 held-out "
        "networks; minutes: measuring the first N networks on the new target.",
        "",
    ]
    for run in results["directions"]:
        lines += [
            f"## {run['reference']['label']} -> {run['new']['label']}",
            "",
            f"Reference {run['reference']['target_id']} ({run['reference']['networks']} "
            f"networks); new {run['new']['target_id']}; noise floor "
            f"{run['new']['noise_mape']:.2f} %.",
            "",
            "| networks | minutes | scratch | transfer | recalibrated | transfer within ±10 % "
            "| transfer worst |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        for point in run["curve"]:
            if point["networks"] == 0:
                lines.append(
                    f"| 0 | 0 | | reference as is: {point['reference']['mape']:.2f} % | | | |"
                )
                continue
            moved = point["transfer"]
            lines.append(
                f"| {point['networks']} | {point['minutes']:.1f} | "
                f"{point['scratch']['mape']:.2f} % | {moved['mape']:.2f} % | "
                f"{point['recalibrated']['mape']:.2f} % | {moved['within_10']:.0f} % | "
                f"{moved['worst']['network']} {moved['worst']['error_pct']:+.1f} % |"
            )
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--points", default=",".join(map(str, POINTS)), help="networks at each curve point"
    )
    parser.add_argument("--name", default="bench_transfer", help="results file stem")
    args = parser.parse_args()
    points = [int(p) for p in args.points.split(",")]
    started = time.monotonic()
    specs = all_held_out_networks()
    mapper = Estimator(get_target("cpu"), {}, strict=False)  # the graph is the same for both
    with tempfile.TemporaryDirectory(prefix="prmodel-transfer-") as folder:
        paths = build_networks(specs, Path(folder))
        kernels = {spec.name: mapper.kernels(path) for spec, path in zip(specs, paths, strict=True)}
    print(f"{len(kernels)} held-out networks built and mapped")
    runs = [direction(SIDES[a], SIDES[b], points, kernels) for a, b in DIRECTIONS]
    results = {
        "machine": machine_info(libraries=("onnxruntime", "xgboost")),
        "points": points,
        "wall_minutes": (time.monotonic() - started) / 60,
        "directions": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / f"{args.name}.md").write_text("\n".join(markdown(results)) + "\n")
    print(f"wrote {RESULTS / args.name}.json and .md")


if __name__ == "__main__":
    main()
