"""Benchmark of issue 6: PR vs random vs adaptive sampling on a real target (default: local CPU).

A thin wrapper around :func:`prmodel.workflows.evaluation.evaluate`:
learning curves per kind, sampler,
budget and seed on held-out random layers (and the reference networks' layers), the repeat-
measurement noise floor, whole-network errors at the largest budget and the benchmarking
cost. Measurements go through the workspace's store (default: the repository root), so an
interrupted or repeated run reuses them; start with small budgets on a loaded machine.

Run by hand (not by pytest):

    .venv/bin/python benchmarks/bench_evaluate.py --budgets 100,300 --seeds 1 --test-size 60
    .venv/bin/python benchmarks/bench_evaluate.py --budgets 100,300,1000,3000 --networks

Writes the full report to benchmarks/results/<target_id>/ and a copy of the headline figures
to benchmarks/results/bench_evaluate.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from prmodel.layers import parse_kind
from prmodel.targets import get_target
from prmodel.workflows.evaluation import evaluate
from prmodel.workflows.evaluation_results import EvaluationSettings
from prmodel.workflows.reports import markdown_report, write_report
from prmodel.workspace import Workspace

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--kinds", default="conv,dense")
    parser.add_argument("--budgets", default="100,300,1000")
    parser.add_argument("--samplers", default="pr,random,adaptive")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--noise-points", type=int, default=None)
    parser.add_argument("--networks", action="store_true", help="use benchmarks/networks/*.onnx")
    parser.add_argument("--workspace", type=Path, default=HERE.parent)
    args = parser.parse_args(argv)

    target = get_target(args.target)
    workspace = Workspace.at(args.workspace).create()
    networks = sorted(str(p) for p in (HERE / "networks").glob("*.onnx")) if args.networks else []
    settings = EvaluationSettings(
        kinds=tuple(parse_kind(k) for k in args.kinds.split(",")),
        budgets=tuple(int(b) for b in args.budgets.split(",")),
        samplers=tuple(args.samplers.split(",")),
        seeds=args.seeds,
        test_size=args.test_size,
        noise_points=args.noise_points,
    )
    result = evaluate(target, workspace=workspace, settings=settings, networks=networks)
    write_report(result, workspace.results_dir / target.target_id)
    report = {
        "benchmark": "bench_evaluate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in result.to_dict().items() if k != "curves"},
    }
    results = HERE / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench_evaluate.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown_report(result)
    (results / "bench_evaluate.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
