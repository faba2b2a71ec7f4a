"""Benchmark of training: time and held-out accuracy of every regressor on PR samples.

For each layer kind it draws ``--samples`` PR samples (random configurations of the kind's
default parameter space moved to their plateau's representative), trains each regressor
with the default settings (Optuna trials and folds of ``TrainSettings``) and tests it on
``--test`` random configurations that are not training points. Two extra XGBoost rows show
what the PR-aware features are worth (trained without them) and how PR samples compare
with as many random samples (trained on random configurations instead).

Data: the deterministic ``analytic`` target, whose step structure is known exactly (output
channels padded to ``block``, input channels to ``lanes``). With ``--workspace DIR`` it also
trains on the real measurements of that workspace's store (plans ``pr-<kind>``, tested on
``test-<kind>``) for every target that has them.

Run by hand (not by pytest):

    .venv/bin/python benchmarks/bench_train.py                       # all regressors
    .venv/bin/python benchmarks/bench_train.py --regressors xgboost --repeat 3

Writes benchmarks/results/bench_train.json and bench_train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_to_frame
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.select.spaces import default_space
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.cpu import machine_info
from prmodel.train.regressors import REGRESSORS
from prmodel.train.settings import TrainSettings
from prmodel.train.training import train_kind
from prmodel.workspace import Workspace

RESULTS = Path(__file__).parent / "results"
NO_PR = "xgboost (no PR features)"
RANDOM = "xgboost (random samples)"


def machine() -> dict[str, Any]:
    return machine_info(libraries=("xgboost-cpu", "scikit-learn", "optuna"))


def analytic_representatives(target: AnalyticTarget) -> RepresentativeSet:
    """The exact step structure of the analytic target (what PR selection should find)."""
    steps = []
    for kind in (LayerKind.CONV, LayerKind.DENSE):
        steps.append(ParameterSteps(kind, "out_channels", True, period=target.block))
        steps.append(ParameterSteps(kind, "channels", True, period=target.lanes))
    # As prmodel select records it: the profile gives the features the GEMM blocks.
    profile = target.hardware_profile()
    metadata = {"profile": {**profile.to_dict(), "source": profile.source}}
    return RepresentativeSet(target.target_id, tuple(steps), metadata)


def pr_samples(
    kind: LayerKind, n: int, representatives: RepresentativeSet, *, seed: int
) -> list[LayerConfig]:
    """``n`` distinct random configurations moved to their plateau's representative."""
    space = default_space(kind)
    rng = np.random.default_rng(seed)
    found: dict[str, LayerConfig] = {}
    for _ in range(100 * n):
        layer = representatives.plateau_of(space.random_layer(rng))
        if space.contains(layer):
            found.setdefault(layer.key, layer)
        if len(found) == n:
            break
    return list(found.values())


def random_samples(kind: LayerKind, n: int, *, seed: int, exclude: set[str]) -> list[LayerConfig]:
    """``n`` distinct random configurations of the kind's space, none of them in ``exclude``."""
    space = default_space(kind)
    rng = np.random.default_rng(seed)
    found: dict[str, LayerConfig] = {}
    while len(found) < n:
        layer = space.random_layer(rng)
        if layer.key not in exclude:
            found.setdefault(layer.key, layer)
    return list(found.values())


def measured(layers: Sequence[LayerConfig], target: AnalyticTarget) -> pd.DataFrame:
    frame = layers_to_frame(list(layers))
    frame["latency_us"] = [target.latency_us(layer) for layer in layers]
    frame["target_id"] = target.target_id
    frame["fingerprint_hash"] = "analytic"
    frame["status"] = "ok"
    return frame


def run_one(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    *,
    kind: LayerKind,
    settings: TrainSettings,
    representatives: RepresentativeSet | None,
    repeat: int,
) -> dict[str, Any]:
    seconds = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extrapolation notes on a few test layers
            result = train_kind(
                train, kind=kind, settings=settings, test=test, representatives=representatives
            )
        seconds.append(time.perf_counter() - started)
    assert result is not None
    return {
        "kind": kind.value,
        "model": name,
        "train_rows": result.train_rows,
        "test_rows": len(result.test_layers),
        "repetitions": repeat,
        "seconds_median": statistics.median(seconds),
        "seconds_min": min(seconds),
        "seconds_max": max(seconds),
        "cv_mape": result.cv_mape,
        "test": result.test_metrics,
        "params": result.params,
    }


def analytic_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    target = AnalyticTarget()
    representatives = analytic_representatives(target)
    rows = []
    for kind in args.kinds:
        train_layers = pr_samples(kind, args.samples, representatives, seed=args.seed)
        exclude = {layer.key for layer in train_layers}
        test_layers = random_samples(kind, args.test, seed=args.seed + 1, exclude=exclude)
        train, test = measured(train_layers, target), measured(test_layers, target)
        random_train = measured(
            random_samples(kind, args.samples, seed=args.seed + 2, exclude=set(test["layer_key"])),
            target,
        )
        variants = [*args.regressors, NO_PR, RANDOM] if "xgboost" in args.regressors else []
        for name in variants or args.regressors:
            regressor = "xgboost" if name in (NO_PR, RANDOM) else name
            settings = TrainSettings(regressor=regressor, trials=args.trials, seed=args.seed)
            row = run_one(
                name,
                random_train if name == RANDOM else train,
                test,
                kind=kind,
                settings=settings,
                representatives=None if name == NO_PR else representatives,
                repeat=args.repeat if name == "xgboost" else 1,
            )
            row["data"] = f"analytic ({target.target_id})"
            print_row(row)
            rows.append(row)
    return rows


def store_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows for the real measurements of a workspace store, if it has PR training sets."""
    from prmodel.measure.store import MeasurementStore

    ws = Workspace.at(args.workspace)
    if not ws.store_path.exists():
        print(f"no store at {ws.store_path}: no real measurements benchmarked")
        return []
    rows = []
    with MeasurementStore(ws.store_path) as store:
        for target_id in sorted(set(store.targets()["target_id"])):
            pr_path = ws.representatives_path(target_id)
            pr = RepresentativeSet.load(pr_path) if pr_path.exists() else None
            for kind in args.kinds:
                train = store.frame(target_id=target_id, kind=kind, plan=f"pr-{kind.value}")
                test = store.frame(target_id=target_id, kind=kind, plan=f"test-{kind.value}")
                if len(train) < 10 or train["fingerprint_hash"].nunique() != 1:
                    continue
                settings = TrainSettings(trials=args.trials, seed=args.seed)
                row = run_one(
                    "xgboost",
                    train,
                    test if len(test) else None,
                    kind=kind,
                    settings=settings,
                    representatives=pr,
                    repeat=1,
                )
                row["data"] = f"store {ws.store_path} ({target_id})"
                print_row(row)
                rows.append(row)
    if not rows:
        print(f"store {ws.store_path} has no pr-<kind> training sets: none benchmarked")
    return rows


def print_row(row: dict[str, Any]) -> None:
    test = row["test"] or {}
    cv = "-" if row["cv_mape"] is None else f"{row['cv_mape']:.2f}"
    print(
        f"{row['kind']:6} {row['model']:26} rows {row['train_rows']:5}  "
        f"time {row['seconds_median']:7.1f} s  CV MAPE {cv:>6} %  "
        f"test MAPE {test.get('mape', float('nan')):6.2f} %  "
        f"RMSPE {test.get('rmspe', float('nan')):6.2f} %  "
        f"±10 % {test.get('within_10', float('nan')):5.1f} %  "
        f"Spearman {test.get('spearman', float('nan')):.4f}",
        flush=True,
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# bench_train: regressors on PR samples",
        "",
        f"Run {report['created']} on {report['machine']['cpu']}, "
        f"{report['machine']['logical_cores']} cores (shared; load average at start "
        f"{report['machine']['load_average'][0]:.1f}).",
        "",
        f"Settings: {json.dumps(report['settings'])}.",
        "",
        "| data | kind | model | train rows | test rows | time s (median, min-max, reps) "
        "| CV MAPE % | test MAPE % | RMSPE % | ±5 % | ±10 % | Spearman |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        test = row["test"] or {}
        cv = "-" if row["cv_mape"] is None else f"{row['cv_mape']:.2f}"
        lines.append(
            f"| {row['data']} | {row['kind']} | {row['model']} | {row['train_rows']} | "
            f"{row['test_rows']} | {row['seconds_median']:.1f} "
            f"({row['seconds_min']:.1f}-{row['seconds_max']:.1f}, {row['repetitions']}) | "
            f"{cv} | {test.get('mape', float('nan')):.2f} | "
            f"{test.get('rmspe', float('nan')):.2f} | {test.get('within_5', float('nan')):.1f} | "
            f"{test.get('within_10', float('nan')):.1f} | "
            f"{test.get('spearman', float('nan')):.4f} |"
        )
    lines += ["", f"Default (xgboost) training time, all kinds: {report['default_total_s']:.1f} s."]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="PR samples per kind")
    parser.add_argument("--test", type=int, default=300, help="random test layers per kind")
    parser.add_argument("--kinds", default="conv,dense")
    parser.add_argument("--regressors", default=",".join(REGRESSORS))
    parser.add_argument("--trials", type=int, default=TrainSettings().trials)
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of the xgboost run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, default=None, help="also use its store")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.kinds = [LayerKind(k) for k in args.kinds.split(",")]
    args.regressors = args.regressors.split(",")
    return args


def main() -> None:
    args = parse_args()
    info = machine()
    print(f"machine: {info['cpu']}, {info['logical_cores']} cores, load {info['load_average']}")
    started = time.perf_counter()
    rows = analytic_rows(args)
    if args.workspace is not None:
        rows += store_rows(args)
    defaults = [r for r in rows if r["model"] == "xgboost" and r["data"].startswith("analytic")]
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            **{k: str(v) for k, v in vars(args).items() if k not in ("kinds", "regressors")},
            "kinds": [k.value for k in args.kinds],
            "regressors": args.regressors,
            "train_settings": asdict(TrainSettings(trials=args.trials, seed=args.seed)),
            "training_data": "PR samples: random configurations of default_space(kind) "
            "moved to their plateau's representative",
            "test_data": "random configurations of default_space(kind), none a training point",
        },
        "rows": rows,
        "default_total_s": sum(r["seconds_median"] for r in defaults),
        "wall_s": time.perf_counter() - started,
        "load_average_end": list(os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "bench_train.md").write_text(markdown(report))
    print(f"default (xgboost) training, all kinds: {report['default_total_s']:.1f} s")
    print(f"wrote {args.out / 'bench_train.json'} and bench_train.md")


if __name__ == "__main__":
    main()
