"""Benchmark of issue 19, point 4: does PR sampling match random with >= 3x fewer samples?

Single-layer MAPE at equal budgets for the PR, random and network-prior samplers
(:func:`prmodel.workflows.evaluation.evaluate`), per target, kind, budget and seed, on two
test sets that no sampler saw:

- ``random``: random layers of the evaluation's space (the one test seed);
- ``networks``: every layer of the held-out networks (``held_out_networks()`` and
  ``second_held_out_networks()``, as the runtime maps them), i.e. test layers drawn like
  network layers. The network prior draws around the 15 reference networks only.

The claim figure: for each random budget ``b``, the budget at which PR's mean curve (over
seeds) first reaches random's mean MAPE at ``b``, interpolated on log budget; ``b`` over that
budget is the sample ratio (goal: >= 3). The same for the network prior. Diagnostics say where
each sampler's training layers sit relative to the test layers, and PR with plateau mapping
off (same samples, fits only) shows what the mapping does.

Targets (``--targets``, comma-separated names or full specs):

- ``cpu``: the local CPU (ONNX Runtime), default layer spaces;
- ``scalesim``: a SCALE-Sim 32x32 weight-stationary array in full mode with small SRAMs
  (32/32/16 KB) and 4 words/cycle of DRAM bandwidth, so memory stalls make latency more than
  the closed-form fold arithmetic (about 21 % of layers stall, the 90th percentile at 5.3x
  their compute cycles). Every space (samplers, random test set, network test layers, PR
  sweeps) is bounded by the caps of :data:`DEFAULT_CAPS` (``--max-macs``,
  ``--max-activation-bytes``, ``--max-weight-bytes``, ``--max-reduction``), with a sweep
  base layer inside them. Within them a layer simulates in 0.07 s on average (2-core AMD
  EPYC, 2026-12-06): budgets 30-3,000 with 3 seeds measure about 23,000 layers in 35 min.

Measurements go through the workspace's store, so an interrupted run resumes where it stopped
(grow the budgets run by run). Run by hand (not by pytest), under the shared CPU lock:

    .venv/bin/python benchmarks/bench_pr_claim.py --targets scalesim --name bench_pr_claim_scalesim
    .venv/bin/python benchmarks/bench_pr_claim.py --targets cpu --budgets 30,100,300,1000

Writes benchmarks/results/bench_pr_claim.json and .md (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.store import MeasurementStore
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.samplers import make_sampler
from prmodel.select.spaces import ParameterSpace, default_space
from prmodel.targets import get_target
from prmodel.targets.base import Target
from prmodel.targets.cpu import machine_info
from prmodel.train.features import FeatureSpec
from prmodel.workflows.datasets import draw_test_layers, network_layers_by_kind
from prmodel.workflows.evaluation import evaluate, prior_layers
from prmodel.workflows.evaluation_results import EvaluationResult, EvaluationSettings
from prmodel.workflows.selection import run_selection
from prmodel.workspace import Workspace
from prmodel.zoo.sets import (
    NetworkSpec,
    build_networks,
    held_out_networks,
    reference_networks,
    second_held_out_networks,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GOAL_RATIO = 3.0
TARGETS = {
    "cpu": "cpu",
    "scalesim": "scalesim:rows=32,cols=32,dataflow=ws,mode=full,"
    "ifmap_kb=32,filter_kb=32,ofmap_kb=16,bandwidth=4",
}
CAPS = ("max_macs", "max_activation_bytes", "max_weight_bytes", "max_reduction")
"""The per-layer caps of :class:`prmodel.select.dimensions.Limits` this bench can set."""
DEFAULT_CAPS = {
    "scalesim": {
        "max_macs": 1_000_000,
        "max_activation_bytes": 100_000,
        "max_weight_bytes": 400_000,
        "max_reduction": 2_304,
    }
}
"""SCALE-Sim full mode's cost follows the folds and cycles it simulates, stalls included
(2026-12-06 probes, 2-core AMD EPYC). A MAC cap leaves the pixels unbounded for large
feature maps with few channels (a depthwise conv on 112x112 pixels); a cap on input plus
output activation bytes bounds them. A 3x3 conv of 846 to 121 channels on one pixel still
simulated for more than 15 s, stalling on its 0.9 M weights: the weight cap (100,000
weights, three times the 32 KB filter SRAM) bounds those. A 7x7 conv of 735 channels to one
filter (36,015 terms a dot product, 1,126 folds of the 32 rows) ran longer than 30 s: the
reduction cap (256 channels at 3x3, 72 folds of the rows) bounds the folds."""
BOUNDED_BASE = {"channels": 64, "out_channels": 64, "height": 4}
"""Base layer of the 1-D sweeps in a bounded conv space (3x3, 589,824 MACs): inside every
cap, with room for the output-channel sweep to cross three folds of a 32-wide array (1-108);
the channel sweep runs at 1x1 on an array that folds the window (up to 128 channels).

History (2026-12-06): until 10:35 UTC the base was 32 to 32 channels on 14x14 pixels, 1.8 M
MACs, over the 1e6 MAC cap: its sweeps stopped at 17 channels, found irregular steps, and
PR drew exactly random's layers (``bench_pr_claim_scalesim_base14.*``). From 10:35 to 11:05
it was this base at 1x1, with plateau mapping blind to the kernel, which moved a 3x3 conv's
channels to a multiple of 32 as if its taps were channels (``bench_pr_claim_scalesim_blind.*``)."""
TEST_SETS = ("random", "networks")
COMPARED = ("pr", "networks")


# -- spaces and networks ----------------------------------------------------------------------


def bounded_spaces(
    kinds: Sequence[LayerKind], caps: dict[str, int]
) -> dict[LayerKind, ParameterSpace] | None:
    """The default spaces with the given caps (:data:`CAPS`; a sweep base inside them), or
    None where no cap is given."""
    if not caps:
        return None
    spaces = {}
    for kind in kinds:
        space = default_space(kind)
        limits = dataclasses.replace(space.limits, **caps)
        base = dict(space.base)
        if kind is LayerKind.CONV:
            base.update(BOUNDED_BASE)
        spaces[kind] = dataclasses.replace(space, limits=limits, base=base)
        if not limits.allows(spaces[kind].build({})):
            raise SystemExit(f"bench_pr_claim: the {kind.value} sweep base is over the caps {caps}")
    return spaces


def network_inputs(specs: Sequence[NetworkSpec], target: Target, folder: Path) -> list[Any]:
    """Skeletons where the target only maps networks (simulators), built files elsewhere."""
    if not target.deterministic:
        return [str(p) for p in build_networks(list(specs), folder)]
    skeletons = []
    for spec in specs:
        model = spec.build(weights=False)
        model.graph.name = spec.name  # a graph is named by its architecture, a spec uniquely
        skeletons.append(model)
    return skeletons


# -- diagnostics ------------------------------------------------------------------------------


def _features(layers: Sequence[LayerConfig]) -> np.ndarray:
    names = ("channels", "out_channels", "height", "kernel_h", "stride_h", "groups")
    return np.log2(np.array([[float(getattr(x, n)) for n in names] for x in layers]))


def drawn_layers(
    target: Target,
    workspace: Workspace,
    settings: EvaluationSettings,
    prior: dict[str, tuple[LayerConfig, ...]],
    kind: LayerKind,
    sampler: str,
) -> list[LayerConfig]:
    """Every layer ``sampler`` drew over the run's budgets and seeds (drawn again, not measured)."""
    representatives = RepresentativeSet.load(workspace.representatives_path(target.target_id))
    chosen = make_sampler(
        sampler, representatives=representatives, space=settings.spaces, networks=prior
    )
    found: dict[str, LayerConfig] = {}
    for budget in settings.budgets:
        for seed in range(settings.seeds):
            found.update((x.key, x) for x in chosen.sample(kind, budget, seed=seed))
    return list(found.values())


def placement(
    kind: LayerKind,
    train: dict[str, list[LayerConfig]],
    tests: dict[str, list[LayerConfig]],
) -> list[dict[str, Any]]:
    """Where each sampler's training layers sit relative to each test set.

    Per (sampler, test set): quartiles of log10 MACs of both, the share of test layers
    outside the training set's MAC range, and the mean distance from a test layer to its
    nearest training layer in log2 parameter space (channels, out channels, size, kernel,
    stride, groups).
    """
    found = []
    for sampler, layers in train.items():
        held_out = {x.key for test in tests.values() for x in test}
        layers = [x for x in layers if x.key not in held_out]
        if not layers:
            continue
        train_macs = np.log10([float(x.macs) for x in layers])
        train_x = _features(layers)
        for name, test in tests.items():
            if not test:
                continue
            macs = np.log10([float(x.macs) for x in test])
            test_x = _features(test)
            nearest = np.sqrt(((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)).min(1)
            found.append(
                {
                    "kind": kind.value,
                    "sampler": sampler,
                    "test_set": name,
                    "train_layers": len(layers),
                    "train_log10_macs_q": _quartiles(train_macs),
                    "test_log10_macs_q": _quartiles(macs),
                    "test_outside_train_macs_pct": float(
                        100 * ((macs < train_macs.min()) | (macs > train_macs.max())).mean()
                    ),
                    "mean_nearest_distance": float(nearest.mean()),
                }
            )
    return found


def _quartiles(values: np.ndarray) -> list[float]:
    return [round(float(q), 2) for q in np.quantile(values, [0.25, 0.5, 0.75])]


def stall_share(
    store: MeasurementStore, target_id: str, digest: str, kind: LayerKind
) -> dict[str, Any] | None:
    """Share of measured layers with stall cycles > 0 and the stall/compute spread."""
    frame = store.frame(target_id=target_id, fingerprint_hash=digest, kind=kind)
    extra = [json.loads(e) if isinstance(e, str) else dict(e or {}) for e in frame["extra"]]
    stalls = np.array([e.get("stall_cycles", math.nan) for e in extra], dtype=float)
    compute = np.array([e.get("compute_cycles", math.nan) for e in extra], dtype=float)
    known = np.isfinite(stalls) & np.isfinite(compute) & (compute > 0)
    if not known.any():
        return None
    ratio = stalls[known] / compute[known]
    return {
        "kind": kind.value,
        "layers": int(known.sum()),
        "with_stalls_pct": float(100 * (stalls[known] > 0).mean()),
        "stall_over_compute_q10_50_90": [
            round(float(q), 3) for q in np.quantile(ratio, [0.1, 0.5, 0.9])
        ],
        "stall_share_of_latency_median_pct": float(100 * np.median(ratio / (1 + ratio))),
    }


def staircase_share(
    store: MeasurementStore, target: Target, digest: str, kind: LayerKind, plans: Sequence[str]
) -> list[dict[str, Any]]:
    """How much of log latency plain MACs and the profile's block-padded MACs explain.

    Per plan (a test set or a sampler's draws): the share of the variance of log latency a
    straight line in log MACs explains (R^2), and the same for log padded MACs (every
    dimension the hardware profile blocks rounded up to its block: where the staircases PR
    is built on are). Where padding explains no more than MACs do, the steps carry little of
    what a model must learn, and samples placed on plateau ends buy little.
    """
    spec = FeatureSpec.for_kind(kind, None, profile=target.hardware_profile())
    if "padded_macs" not in spec.names:
        return []
    found = []
    for plan in plans:
        frame = store.frame(target_id=target.target_id, fingerprint_hash=digest, plan=plan)
        frame = frame[(frame["status"] == "ok") & (frame["latency_us"] > 0)]
        if len(frame) < 10:
            continue
        raw = spec.transform(layers_from_frame(frame))
        latency = np.log(frame["latency_us"].to_numpy(dtype=float))
        shares = {}
        for name in ("macs", "padded_macs"):
            column = np.log(np.maximum(raw[:, spec.names.index(name)], 1.0))
            design = np.column_stack([np.ones(len(column)), column])
            solution, *_ = np.linalg.lstsq(design, latency, rcond=None)
            shares[name] = float(1 - np.var(latency - design @ solution) / np.var(latency))
        found.append(
            {
                "kind": kind.value,
                "plan": plan,
                "layers": len(frame),
                "r2_log_macs": shares["macs"],
                "r2_log_padded_macs": shares["padded_macs"],
            }
        )
    return found


# -- one target -------------------------------------------------------------------------------


def run_target(name: str, args: argparse.Namespace) -> dict[str, Any]:
    target = get_target(TARGETS.get(name, name))
    kinds = tuple(parse_kind(k) for k in args.kinds.split(","))
    caps = dict(DEFAULT_CAPS.get(name, {}))
    for key in CAPS:
        if (value := getattr(args, key)) is not None:
            caps[key] = int(value)
    caps = {key: value for key, value in caps.items() if value > 0}
    spaces = bounded_spaces(kinds, caps)
    samplers = tuple(args.samplers.split(","))
    workspace = Workspace.at(args.workspace).create()
    folder = workspace.root / "networks" / "zoo"
    load = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    test_specs = [*held_out_networks(), *second_held_out_networks()]
    test_nets = network_inputs(test_specs, target, folder / "held-out")
    prior_nets = network_inputs(reference_networks(), target, folder / "reference")
    if not workspace.representatives_path(target.target_id).is_file():
        run_selection(target, workspace=workspace, kinds=kinds, spaces=spaces, progress=True)
    settings = EvaluationSettings(
        kinds=kinds,
        budgets=tuple(int(b) for b in args.budgets.split(",")),
        samplers=samplers,
        seeds=args.seeds,
        test_size=args.test_size,
        spaces=spaces,
        whole_networks=False,
    )

    def run(chosen: EvaluationSettings) -> EvaluationResult:
        return evaluate(
            target,
            workspace=workspace,
            settings=chosen,
            networks=test_nets,
            prior_networks=prior_nets,
            progress=True,
        )

    result = run(settings)
    ablation = None
    if "pr" in samplers and not args.no_ablation:
        # Same samples (reused from the store), only the fits differ.
        ablation = run(dataclasses.replace(settings, samplers=("pr",), plateau_mapping=False))
    seconds = time.perf_counter() - started

    report = figures(result, ablation)
    # Diagnostics: the test layers and every sampler's draws, drawn again (no measuring).
    prior = prior_layers(target, settings, prior_nets)  # as evaluate() draws around them
    held_out = network_layers_by_kind(test_nets, target, kinds)
    coverage, rows, stalls, explained = [], [], [], []
    with MeasurementStore(workspace.store_path) as store:
        for kind in kinds:
            limits = (spaces or {}).get(kind, default_space(kind)).limits
            distinct = {x.key: x for by in held_out.values() for x in by[kind]}
            inside = [x for x in distinct.values() if limits.allows(x)]
            coverage.append({"kind": kind.value, "distinct": len(distinct), "within": len(inside)})
            tests = {
                "random": draw_test_layers(kind, args.test_size, space=spaces),
                "networks": inside,
            }
            train = {
                sm: drawn_layers(target, workspace, settings, prior, kind, sm) for sm in samplers
            }
            rows += placement(kind, train, tests)
            if (
                found := stall_share(store, target.target_id, result.fingerprint_hash, kind)
            ) is not None:
                stalls.append(found)
            plans = [f"test-{kind.value}", f"testnet-{kind.value}"]
            plans += [f"{sm}-{kind.value}" for sm in samplers]
            explained += staircase_share(store, target, result.fingerprint_hash, kind, plans)
    return {
        **report,
        "name": name,
        "caps": caps,
        "network_layer_coverage": coverage,
        "stalls": stalls,
        "staircase_share": explained,
        "placement": rows,
        "seconds": seconds,
        "load_average_start": load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "test_networks": [s.name for s in test_specs],
        "prior_networks": [s.name for s in reference_networks()],
    }


def figures(result: EvaluationResult, ablation: EvaluationResult | None) -> dict[str, Any]:
    """MAPE per (kind, test set, sampler, budget) and the sample ratios of PR and the prior."""
    columns = ["kind", "test_set", "sampler", "budget", "mape", "mape_std", "train_rows", "seeds"]
    summary = result.summary()
    mape = summary[summary["test_set"].isin(TEST_SETS)][columns]
    if ablation is not None:
        extra = ablation.summary()
        extra = extra[extra["test_set"].isin(TEST_SETS)].assign(sampler="pr-nomap")
        mape = pd.concat([mape, extra[columns]], ignore_index=True)
    ratios = [
        row
        for kind in result.settings.kinds
        for test_set in TEST_SETS
        for sampler in COMPARED
        for row in result.sample_ratios(kind, test_set, sampler)
    ]
    if ablation is not None:
        both = EvaluationResult(
            **{
                **{f.name: getattr(result, f.name) for f in dataclasses.fields(result)},
                "curves": pd.concat(
                    [result.curves, ablation.curves.assign(sampler="pr-nomap")], ignore_index=True
                ),
            }
        )
        ratios += [
            row
            for kind in result.settings.kinds
            for test_set in TEST_SETS
            for row in both.sample_ratios(kind, test_set, "pr-nomap")
        ]
    return {
        "target": result.target_id,
        "fingerprint_hash": result.fingerprint_hash,
        "settings": result.settings.as_dict(),
        "test_sizes": {k: dict(v) for k, v in result.test_sizes.items()},
        "mape": mape.to_dict("records"),
        "ratios": ratios,
        "costs": result.costs.to_dict("records"),
        "representatives": str(result.representatives_path or ""),
    }


# -- report -----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# bench_pr_claim: PR vs random vs network prior at equal budgets",
        "",
        f"Run {report['when']} on {report['machine']['cpu']} "
        f"({report['machine']['usable_cores']} usable cores). Goal: PR reaches random's "
        f"MAPE with >= {GOAL_RATIO:g}x fewer samples.",
        "",
    ]
    for t in report["targets"]:
        s = t["settings"]
        lines += [
            f"## {t['target']}",
            "",
            f"Budgets {s['budgets']}, seeds 0-{s['seeds'] - 1}, kinds {s['kinds']}, regressor "
            f"{s['regressor']} ({s['trials']} trials), PR features for every sampler, plateau "
            f"mapping for PR. Test sets: {t['test_sizes']}. Took {t['seconds']:.0f} s; load "
            f"average {t['load_average_start']} at the start, {t['load_average_end']} at the end.",
            "",
        ]
        caps = t.get("caps") or {
            key: t[key] for key in ("max_macs", "max_activation_bytes") if t.get(key)
        }
        if caps:
            cover = "; ".join(
                f"{c['kind']}: {c['within']} of {c['distinct']} distinct held-out network "
                f"layers ({100 * c['within'] / c['distinct']:.0f} %)"
                for c in t["network_layer_coverage"]
            )
            bound = ", ".join(
                f"{value:,} {key.removeprefix('max_').replace('_', ' ')}"
                for key, value in caps.items()
            )
            lines += [
                f"Layer space bound: at most {bound} per layer for every sampler, the random "
                f"test set, the network test layers and the PR sweeps ({cover} lie within it).",
                "",
            ]
        for st in t.get("stalls", []):
            lines += [
                f"Stalls ({st['kind']}, all {st['layers']} measured layers): "
                f"{st['with_stalls_pct']:.1f} % have stall cycles > 0; stall/compute cycles "
                f"10/50/90 % quantiles {st['stall_over_compute_q10_50_90']}; median stall "
                f"share of latency {st['stall_share_of_latency_median_pct']:.0f} %.",
                "",
            ]
        frame = pd.DataFrame(t["mape"])
        for (kind, test_set), part in frame.groupby(["kind", "test_set"]):
            table = part.pivot(index="budget", columns="sampler", values=["mape", "mape_std"])
            samplers = list(dict.fromkeys(part["sampler"]))
            lines += [
                f"### {kind}, test set `{test_set}`: MAPE % (mean ± std over seeds)",
                "",
                "| budget | " + " | ".join(samplers) + " |",
                "|---" * (len(samplers) + 1) + "|",
            ]
            for budget in table.index:
                cells = [
                    f"{_fmt(table['mape'][sm][budget])} ± {_fmt(table['mape_std'][sm][budget], 2)}"
                    for sm in samplers
                ]
                lines.append(f"| {budget} | " + " | ".join(cells) + " |")
            lines.append("")
            ratios = [r for r in t["ratios"] if r["kind"] == kind and r["test_set"] == test_set]
            if ratios:
                lines += [
                    "Budget to reach random's MAPE at b (log-budget interpolation) and the "
                    "sample ratio b / budget:",
                    "",
                    "| random b | random MAPE | sampler | budget | ratio | >= 3x |",
                    "|---|---|---|---|---|---|",
                ]
                for r in ratios:
                    budget = (
                        "not reached"
                        if r["budget"] is None
                        else f"{'<= ' if r['bound'] == '<=' else ''}{r['budget']:.0f}"
                    )
                    ratio = (
                        "-"
                        if r["ratio"] is None
                        else f"{'>= ' if r['bound'] == '<=' else ''}{r['ratio']:.2f}"
                    )
                    meets = r["ratio"] is not None and r["ratio"] >= GOAL_RATIO
                    lines.append(
                        f"| {r['baseline_budget']} | {_fmt(r['baseline_mape'])} | {r['sampler']} "
                        f"| {budget} | {ratio} | {'yes' if meets else 'no'} |"
                    )
                lines.append("")
        if t.get("placement"):
            lines += [
                "Where the training layers sit (all layers each sampler drew, every budget and "
                "seed): log10 MACs quartiles, share of test layers outside the training MAC "
                "range, mean distance to the nearest training layer in log2 parameter space.",
                "",
                "| kind | sampler | test set | train layers | train q25/50/75 | test q25/50/75 "
                "| test outside % | nearest distance |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for p in t["placement"]:
                lines.append(
                    f"| {p['kind']} | {p['sampler']} | {p['test_set']} | {p['train_layers']} | "
                    f"{p['train_log10_macs_q']} | {p['test_log10_macs_q']} | "
                    f"{p['test_outside_train_macs_pct']:.1f} | {p['mean_nearest_distance']:.2f} |"
                )
            lines.append("")
        if t.get("staircase_share"):
            lines += [
                "What the staircases explain: share of the variance of log latency explained by "
                "a line in log MACs, and in log MACs with every dimension the hardware profile "
                "blocks padded to its block (where PR's steps are).",
                "",
                "| kind | plan | layers | R² log MACs | R² log padded MACs |",
                "|---|---|---:|---:|---:|",
            ]
            for e in t["staircase_share"]:
                lines.append(
                    f"| {e['kind']} | {e['plan']} | {e['layers']} | {e['r2_log_macs']:.3f} | "
                    f"{e['r2_log_padded_macs']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="scalesim", help="names (cpu, scalesim) or specs")
    parser.add_argument("--kinds", default="conv")
    parser.add_argument("--budgets", default="30,100,300,1000,3000")
    parser.add_argument("--samplers", default="pr,random,networks")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--max-macs", type=float, default=None, help="cap on MACs per layer")
    parser.add_argument(
        "--max-activation-bytes",
        type=float,
        default=None,
        help="cap on a layer's input plus output activation bytes",
    )
    parser.add_argument(
        "--max-weight-bytes", type=float, default=None, help="cap on a layer's weight bytes"
    )
    parser.add_argument(
        "--max-reduction",
        type=float,
        default=None,
        help="cap on the terms one output sums (input channels per group x kernel area)",
    )
    parser.add_argument("--no-ablation", action="store_true", help="skip PR without mapping")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path(tempfile.gettempdir()) / "prmodel-pr-claim",
        help="kept between runs, so a rerun resumes (the built test networks take ~1.4 GB)",
    )
    parser.add_argument("--name", default="bench_pr_claim", help="stem of the results files")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "bench_pr_claim",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(libraries=("onnxruntime", "scalesim", "xgboost-cpu")),
        "goal_ratio": GOAL_RATIO,
        "targets": [],
    }
    for name in args.targets.split(","):
        report["targets"].append(run_target(name, args))
    report["seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
