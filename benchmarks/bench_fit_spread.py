"""Where the run-to-run spread of ``prmodel learn`` comes from: the fit or the measurements?

No measuring. Two runs of ``bench_newhardware.py`` with the same defaults on the same
machine scored 2.93 % and 3.47 % on the same held-out networks. This script separates the
two things that differ between such runs:

- the measurements: the held-out truth of the two runs against each other, and the two
  runs' saved predictions against each other (each predictor learned from its own run's
  profiles of the 145 training networks);
- the fit: predictors learned from ONE run's profiles (the shipped data set) with seeds
  0 to ``--seeds - 1`` (folds and regressors), scored against that run's truth, and the
  spread of their predictions around their mean.

Only the development held-out sets that both runs measured are used (held-out to
held-out-e); the newest set is never looked at here. Held-out networks are rebuilt and
mapped torch-free (about a minute).

Run: ``.venv/bin/python benchmarks/bench_fit_spread.py [--seeds 5] [--name STEM]``. Writes
``benchmarks/results/bench_fit_spread.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from prmodel.estimate.estimator import Estimator
from prmodel.targets import get_target
from prmodel.targets.cpu import machine_info
from prmodel.workflows.network_profiles import read_profiles
from prmodel.workflows.predictor_fit import learn_from_profiles
from prmodel.zoo import HELD_OUT_SETS, build_networks

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PROFILES = HERE.parent / "sweeps" / "network-profiles" / "ort-cpu-avx512-a68b-t1-all.parquet"
RUNS = {  # the run whose profiles ship, and a repeat of the same defaults
    "shipped": RESULTS / "bench_newhardware.json",
    "repeat": RESULTS / "bench_newhardware_repeat.json",
}
DEVELOPMENT = ("held-out", "held-out-b", "held-out-c", "held-out-d", "held-out-e")


def run_rows(path: Path) -> dict[str, dict[str, Any]]:
    """A run's held-out rows by network (the predictor learn makes by default)."""
    result = json.loads(path.read_text())
    held = (result.get("without_stop") or {}).get("held_out") or result["held_out"]
    return {row["network"]: row for row in held["networks"]}


def mape(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(100 * np.mean(np.abs(predicted / truth - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="fits on the shipped profiles")
    parser.add_argument("--name", default="bench_fit_spread", help="results file stem")
    args = parser.parse_args()
    started = time.monotonic()
    runs = {name: run_rows(path) for name, path in RUNS.items()}
    specs = [spec for name in DEVELOPMENT for spec in HELD_OUT_SETS[name]()]
    specs = [s for s in specs if all(s.name in rows for rows in runs.values())]
    names = [s.name for s in specs]
    truth = {n: np.array([runs[n][x]["measured_ms"] * 1e3 for x in names]) for n in runs}
    saved = {n: np.array([runs[n][x]["predicted_ms"] * 1e3 for x in names]) for n in runs}

    target = get_target("cpu")
    mapper = Estimator(target, {}, strict=False)
    with tempfile.TemporaryDirectory(prefix="prmodel-spread-") as folder:
        paths = build_networks(specs, Path(folder))
        kernels = tuple(mapper.kernels(path) for path in paths)
    rows = read_profiles(PROFILES)
    fits = []
    for seed in range(args.seeds):
        learned = learn_from_profiles(rows, target, seed=seed)
        estimator = Estimator(target, learned.models, calibration=learned.calibration)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extrapolation warnings: the networks are new
            fits.append(np.array([estimator.predict(k).total_us for k in kernels]))
        print(f"seed {seed}: {mape(fits[-1], truth['shipped']):.2f} %")
    stacked = np.array(fits)
    mean = stacked.mean(axis=0)
    result = {
        "machine": machine_info(libraries=("onnxruntime", "xgboost")),
        "networks": len(names),
        "sets": list(DEVELOPMENT),
        "truth_between_runs_pct": mape(truth["repeat"], truth["shipped"]),
        "predictors_between_runs_pct": mape(saved["repeat"], saved["shipped"]),
        "saved_on_own_truth_pct": {n: mape(saved[n], truth[n]) for n in runs},
        "seed_mape_pct": [mape(f, truth["shipped"]) for f in fits],
        "seed_spread_pct": float(100 * np.mean(np.abs(stacked / mean - 1))),
        "seed_mean_mape_pct": mape(mean, truth["shipped"]),
        "wall_minutes": (time.monotonic() - started) / 60,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    seeds = ", ".join(f"{v:.2f}" for v in r["seed_mape_pct"])
    own = ", ".join(f"{k} {v:.2f} %" for k, v in r["saved_on_own_truth_pct"].items())
    return (
        "# Where the run-to-run spread of `prmodel learn` comes from\n\n"
        f"Machine: {r['machine']['cpu']}. {r['networks']} held-out networks of the development "
        f"sets ({', '.join(r['sets'])}); no measuring.\n\n"
        f"- the held-out truth of the two runs differs by {r['truth_between_runs_pct']:.2f} % "
        "(MAPE of one against the other)\n"
        f"- the two runs' predictors differ by {r['predictors_between_runs_pct']:.2f} %; "
        f"each on its own truth: {own}\n"
        f"- fits on the shipped profiles, seeds 0-{len(r['seed_mape_pct']) - 1}: {seeds} %; "
        f"their predictions spread by {r['seed_spread_pct']:.2f} % around their mean, which "
        f"scores {r['seed_mean_mape_pct']:.2f} %\n"
    )


if __name__ == "__main__":
    main()
