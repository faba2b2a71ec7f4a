"""Benchmark of the SCALE-Sim target (issue 7): PR vs random sampling, single layers and networks.

On a SCALE-Sim systolic array (fast mode: closed-form compute cycles) it runs
:func:`prmodel.workflows.evaluation.evaluate` for conv and dense with the PR and random samplers at
budgets up to 1000 per kind, over several seeds, and reports:

- single-layer MAPE on held-out random layers of each kind (depthwise convs, which the conv
  space draws as groups == channels, also reported apart as ``random-depthwise``);
- whole-network MAPE on the reference networks' conv and dense layers, where the truth is the
  simulator's latency summed over every mapped layer of the network and the estimate the
  model's (``benchmarks/networks/*.onnx`` if present, else the same 15 built torch-free).

Goals: single-layer MAPE <= 0.1 % with at most 1000 PR samples per kind, whole-network MAPE
<= 0.5 % (the paper: 0.02 % and 0.68 %).

Run by hand (not by pytest):

    .venv/bin/python benchmarks/bench_scalesim.py                       # 32x32 ws, 3 seeds
    .venv/bin/python benchmarks/bench_scalesim.py --budgets 100,300 --seeds 1 --no-networks

Writes benchmarks/results/bench_scalesim.json and .md, and the full evaluation report
(CSVs, plots) in benchmarks/results/bench_scalesim/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from prmodel.layers import LayerKind
from prmodel.targets import get_target
from prmodel.targets.cpu import machine_info
from prmodel.workflows.evaluation import evaluate
from prmodel.workflows.evaluation_results import EvaluationResult, EvaluationSettings
from prmodel.workflows.reports import markdown_report, write_report
from prmodel.workspace import Workspace

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SINGLE_LAYER_GOAL = 0.1
NETWORK_GOAL = 0.5


def reference_networks(use: bool) -> tuple[list[Any], str]:
    """The exported torchvision networks if present, else the same 15 built torch-free."""
    if not use:
        return [], "none"
    files = sorted((HERE / "networks").glob("*.onnx"))
    if files:
        return [str(f) for f in files], "benchmarks/networks/*.onnx (torchvision, random weights)"
    from prmodel.zoo import reference_networks as zoo_reference

    models = []
    for spec in zoo_reference():
        model = spec.build(weights=False)  # the simulator maps shapes; no weights needed
        model.graph.name = spec.name
        models.append(model)
    return models, "prmodel.zoo reference networks (torch-free builders, no weights)"


def headline(result: EvaluationResult) -> dict[str, Any]:
    """The figures the issue asks for, per kind and sampler at each budget."""
    summary = result.summary()
    single = summary[summary["test_set"].isin(["random", "random-depthwise", "networks"])]
    columns = [
        "kind",
        "test_set",
        "sampler",
        "budget",
        "mape",
        "mape_std",
        "mape_min",
        "mape_max",
        "rmspe",
        "within_10",
        "spearman",
        "train_rows",
        "seeds",
    ]
    networks = result.network_summary()
    per_network = (
        result.networks.groupby(["network", "sampler"])["error_pct"].median().unstack()
        if not result.networks.empty
        else pd.DataFrame()
    )
    best = single[(single["sampler"] == "pr") & (single["test_set"] == "random")]
    return {
        "single_layer": single[columns].to_dict("records"),
        "whole_network": networks.to_dict("records"),
        "whole_network_per_network_median_error_pct": per_network.reset_index().to_dict("records"),
        "pr_best_single_layer_mape": {
            str(k): float(v) for k, v in best.groupby("kind")["mape"].min().items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="scalesim:rows=32,cols=32,dataflow=ws,mode=fast")
    parser.add_argument("--budgets", default="100,300,1000")
    parser.add_argument("--samplers", default="pr,random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--no-networks", action="store_true")
    args = parser.parse_args(argv)

    target = get_target(args.target)
    networks, network_source = reference_networks(not args.no_networks)
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV, LayerKind.DENSE),
        budgets=tuple(int(b) for b in args.budgets.split(",")),
        samplers=tuple(args.samplers.split(",")),
        seeds=args.seeds,
        test_size=args.test_size,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scalesim-") as folder:
        workspace = Workspace.at(folder).create()
        result = evaluate(
            target, workspace=workspace, settings=settings, networks=networks, progress=True
        )
        pr_file = workspace.representatives_path(target.target_id).read_text()
    seconds = time.perf_counter() - started
    write_report(result, RESULTS / "bench_scalesim")
    figures = headline(result)
    report = {
        "benchmark": "bench_scalesim",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(libraries=("scalesim", "xgboost-cpu")),
        "target": target.target_id,
        "target_fingerprint": target.fingerprint(),
        "settings": settings.as_dict(),
        "seeds": list(range(args.seeds)),
        "networks": network_source,
        "network_names": list(result.network_names),
        "test_sizes": {k: dict(v) for k, v in result.test_sizes.items()},
        "goals": {"single_layer_mape_pct": SINGLE_LAYER_GOAL, "network_mape_pct": NETWORK_GOAL},
        "statistic": "mean over seeds (std, min, max alongside); network MAPE = mean |error| "
        "over networks and seeds",
        "seconds": seconds,
        **figures,
        "issue_goals": result.goals(),
        "representatives_yaml": pr_file,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_scalesim.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = (
        f"# bench_scalesim\n\nTarget {target.target_id}; networks: {network_source}; "
        f"seeds {list(range(args.seeds))}; total {seconds:.0f} s.\n"
        f"Goals: single-layer MAPE <= {SINGLE_LAYER_GOAL} % at <= 1000 PR samples per kind, "
        f"whole-network MAPE <= {NETWORK_GOAL} %.\n\n" + markdown_report(result)
    )
    (RESULTS / "bench_scalesim.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
