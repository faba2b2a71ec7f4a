"""Benchmark of PR selection: what `prmodel select` finds on real and simulated targets.

1. **Selection.** Runs the whole selection stage (initial sweeps designed from the hardware
   profile, measured through the sweep runner, step detection, PR choice) on the local CPU
   target for every layer kind, and on the deterministic ``analytic`` and ``scalesim``
   targets. For every swept parameter of every kind it reports the period found or "no
   steps", the offset and start, the confidence, the number of PRs and whether the profile's
   proposal was agreed with or overruled.
2. **Acceptance.** On the CPU, the conv output-channel period must be the NCHWc block of the
   profile and the dense output-width period one of the GEMM widths it proposes.
3. **Repeatability.** The conv output-channel and dense output-width sweeps are measured
   again ``--repeat`` times into fresh stores; the periods found each time and the median
   and spread of their confidence are reported.
4. **Cost.** Wall time of each selection and of step detection per sweep (median, min, max).

Run: ``.venv/bin/python benchmarks/bench_select.py [--target cpu] [--kinds all]
[--repeat 2] [--workspace DIR]``. Writes ``benchmarks/results/bench_select.json`` and
``benchmarks/results/bench_select.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prmodel.layers import LayerKind
from prmodel.measure.runner import MeasureSettings, measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.select.selection import ParameterSweep, initial_sweeps
from prmodel.select.steps import detect_steps
from prmodel.targets import Target, get_target
from prmodel.targets.cpu import machine_info
from prmodel.targets.profiles import profile_for
from prmodel.workflows.selection import SelectionResult, run_selection
from prmodel.workspace import Workspace

RESULTS = Path(__file__).parent / "results"
COLUMNS = SelectionResult.TABLE_COLUMNS
KEY_SWEEPS = ((LayerKind.CONV, "out_channels"), (LayerKind.DENSE, "out_channels"))


def machine() -> dict[str, Any]:
    return machine_info(libraries=("onnxruntime",))


def select_on(spec: str, kinds: list[LayerKind], root: Path) -> tuple[Target, SelectionResult]:
    target = get_target(spec)
    workspace = Workspace.at(root / target.target_id).create()
    result = run_selection(target, workspace=workspace, kinds=kinds, progress=True)
    return target, result


def detection_seconds(result: SelectionResult) -> dict[str, float]:
    """Wall time of detect_steps on each of the selection's sweeps (hint as in selection)."""
    times = []
    for sweep in result.sweeps:
        hint = result.profile.hint(sweep.kind, sweep.parameter)
        started = time.perf_counter()
        detect_steps(
            sweep.values,
            sweep.latencies_us,
            candidate_periods=hint.periods,
            candidate_starts=hint.starts,
        )
        times.append(time.perf_counter() - started)
    return _spread(times)


def repeat_key_sweeps(target: Target, repeats: int) -> list[dict[str, Any]]:
    """Measure the key sweeps again into fresh stores and detect their steps each time."""
    profile = profile_for(target)
    designs = {
        (d.kind, d.parameter): d
        for d in initial_sweeps([k for k, _ in KEY_SWEEPS], profile=profile)
        if (d.kind, d.parameter) in KEY_SWEEPS
    }
    runs = []
    for kind, parameter in KEY_SWEEPS:
        design = designs[(kind, parameter)]
        hint = profile.hint(kind, parameter)
        found = []
        for repeat in range(repeats):
            order = np.random.default_rng(repeat + 1).permutation(len(design.layers))
            with (
                tempfile.TemporaryDirectory() as folder,
                MeasurementStore(Path(folder) / "m.sqlite") as store,
            ):
                frame = measure_layers(
                    [design.layers[i] for i in order],  # random order, as run_selection does
                    target,
                    store=store,
                    settings=MeasureSettings(seed=repeat + 1),
                    progress=True,
                )
            sweep = ParameterSweep.from_frame(frame, kind=kind, parameter=parameter)
            detection = detect_steps(
                sweep.values,
                sweep.latencies_us,
                candidate_periods=hint.periods,
                candidate_starts=hint.starts,
            )
            found.append(detection)
        confidences = [d.confidence for d in found]
        runs.append(
            {
                "kind": kind.value,
                "parameter": parameter,
                "repeats": repeats,
                "periods": [d.period for d in found],
                "labels": [d.label for d in found],
                "confidence": _spread(confidences),
            }
        )
    return runs


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(float(np.median(values)), 4),
        "min": round(float(np.min(values)), 4),
        "max": round(float(np.max(values)), 4),
        "n": len(values),
    }


def acceptance(result: SelectionResult) -> dict[str, Any]:
    steps = {(s.kind, s.parameter): s for s in result.representatives.steps}
    block = result.profile.architecture.get("nchwc_block")
    conv = steps.get((LayerKind.CONV, "out_channels"))
    dense = steps.get((LayerKind.DENSE, "out_channels"))
    widths = result.profile.candidate_periods("dense", "out_channels")
    return {
        "conv_out_channels_period": conv.period if conv else None,
        "nchwc_block": block,
        "conv_period_is_block": bool(conv and conv.period == block),
        "dense_out_channels_period": dense.period if dense else None,
        "gemm_widths_proposed": list(widths),
        "dense_period_is_a_gemm_width": bool(dense and dense.period in widths),
    }


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append(
            "| " + " | ".join("-" if row[c] is None else str(row[c]) for c in COLUMNS) + " |"
        )
    return lines


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for row in rows:
        print("  ".join(("-" if row[c] is None else str(row[c])).ljust(widths[c]) for c in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="cpu", help="the real target (default cpu)")
    parser.add_argument("--kinds", default="all", help="kinds to sweep on it (default all)")
    parser.add_argument("--simulators", default="analytic,scalesim", help="'' for none")
    parser.add_argument("--repeat", type=int, default=2, help="re-measurements of key sweeps")
    parser.add_argument("--workspace", type=Path, help="keep (and reuse) measurements here")
    args = parser.parse_args()
    kinds = (
        list(LayerKind) if args.kinds == "all" else [LayerKind(k) for k in args.kinds.split(",")]
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workspace or Path(scratch)
        report = run_all(args, kinds, root)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_select.json").write_text(json.dumps(report, indent=2, default=str))
    (RESULTS / "bench_select.md").write_text(markdown(report))
    print(f"\nwrote {RESULTS / 'bench_select.json'} and bench_select.md")


def run_all(args: argparse.Namespace, kinds: list[LayerKind], root: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "target": args.target,
            "kinds": [k.value for k in kinds],
            "repeat": args.repeat,
            "measure_settings": "prmodel.measure.runner.MeasureSettings() defaults",
            "min_confidence": 0.25,
        },
        "targets": [],
    }
    specs = [args.target, *filter(None, args.simulators.split(","))]
    for spec in specs:
        started = time.perf_counter()
        simulated = [LayerKind.CONV, LayerKind.DENSE]  # what every simulator models
        target, result = select_on(spec, kinds if spec == args.target else simulated, root)
        rows = result.rows()
        print_rows(f"{target.target_id} (profile {result.profile.name})", rows)
        entry: dict[str, Any] = {
            "target_id": target.target_id,
            "profile": {"name": result.profile.name, "source": result.profile.source},
            "seconds": round(time.perf_counter() - started, 1),
            "points_measured": result.measured,
            "points_reused": result.skipped,
            "points_failed": result.failed,
            "detection_seconds_per_sweep": detection_seconds(result),
            "parameters": rows,
        }
        if spec == args.target:
            entry["acceptance"] = acceptance(result)
            print("acceptance:", json.dumps(entry["acceptance"]))
            if args.repeat > 0:
                entry["repeatability"] = repeat_key_sweeps(target, args.repeat)
                print("repeatability:", json.dumps(entry["repeatability"]))
        report["targets"].append(entry)
    return report


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# bench_select: Performance Representatives found by `prmodel select`",
        "",
        f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, "
        f"load average {m['load_average']} (shared machine).",
        f"Settings: {json.dumps(report['settings'])}",
    ]
    for entry in report["targets"]:
        lines += [
            "",
            f"## {entry['target_id']} (profile {entry['profile']['name']})",
            "",
            f"{entry['points_measured']} points measured, {entry['points_reused']} reused, "
            f"{entry['points_failed']} failed, {entry['seconds']} s in all; step detection "
            f"per sweep: {json.dumps(entry['detection_seconds_per_sweep'])} s.",
            "",
            *table_lines(entry["parameters"]),
        ]
        if "acceptance" in entry:
            lines += ["", f"Acceptance: `{json.dumps(entry['acceptance'])}`"]
        for run in entry.get("repeatability", []):
            lines.append(
                f"- re-measured {run['kind']} {run['parameter']} {run['repeats']}x: "
                f"{', '.join(run['labels'])}; confidence {json.dumps(run['confidence'])}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
