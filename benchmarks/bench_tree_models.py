"""Benchmark: predicting with the numpy tree evaluator against ONNX-converted models.

``prmodel estimate`` reads XGBoost models with :class:`prmodel.train.treeforest.TreeForest`
(numpy, its own UBJ parser), so it never imports xgboost. The alternative is a maintained
path: convert each trained model to ONNX (onnxmltools) and predict with ONNX Runtime, which
the estimator loads anyway. This script measures both on the same models and network:

1. a workspace with an XGBoost model for every layer kind, trained on the analytic target
   with the default hyper-parameters (600 trees of depth 6, like an untuned
   ``prmodel train``), on ``--rows`` random layers per kind (built once, then reused);
2. ResNet-50 (``prmodel.zoo.resnet(50)``, 224x224, batch 1) mapped to ONNX Runtime's CPU
   kernels, every kernel priced by the models of its kind (reorders by the relu proxy);
3. end to end in a fresh process, ``--repeats`` times each, median: import, load every
   model, map the network's kernels, predict; with the tree evaluator ("before") and with
   the ONNX models through ONNX Runtime sessions ("after", the ``model.onnx`` files written
   once beside each ``model.ubj``: conversion is a training-time cost, timed apart);
4. agreement: the largest relative difference between the two paths over every kernel of
   the network and ``--rows`` random layers per kind.

The ONNX path needs ``onnxmltools`` (not a prmodel dependency): install it into a folder and
put it on ``PYTHONPATH`` (``pip install --no-deps --target DIR onnxmltools``); without it
only the "before" figures are measured.

Run: ``.venv/bin/python benchmarks/bench_tree_models.py [--workspace DIR] [--repeats 5]``.
Writes ``benchmarks/results/bench_tree_models.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from prmodel.cli import main as prmodel_main
from prmodel.estimate.kernels import network_kernels
from prmodel.layers import LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.store import MeasurementStore
from prmodel.networks import load_network
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.cpu import cpu_model
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.train.artifacts import load_models
from prmodel.workspace import Workspace
from prmodel.zoo import resnet

RESULTS = Path(__file__).parent / "results"
TARGET_ID = AnalyticTarget().target_id

# Timed in a fresh interpreter, as `prmodel estimate` runs. argv: workspace, network, path.
_END_TO_END = r"""
import sys, time
started = time.perf_counter()
import json
from pathlib import Path
from prmodel.estimate.estimator import Estimator
from prmodel.estimate.kernels import network_kernels
from prmodel.networks import load_network
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.train import artifacts
from prmodel.workspace import Workspace
workspace, network, path = sys.argv[1], sys.argv[2], sys.argv[3]
if path == "onnx":
    import onnxruntime as ort

    class OnnxTrees:
        def __init__(self, file):
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            self.session = ort.InferenceSession(str(file), options, providers=providers)
            self.name = self.session.get_inputs()[0].name
        def predict(self, X, **_):
            import numpy as np
            out = self.session.run(None, {self.name: np.asarray(X, dtype=np.float32)})[0]
            return np.asarray(out, dtype=np.float64).ravel()

    artifacts._read_xgboost = lambda p: OnnxTrees(Path(p).with_suffix(".onnx"))
imported = time.perf_counter()
target = OnnxRuntimeTarget()
models = artifacts.load_models(Workspace.at(workspace), sys.argv[4])
loaded = time.perf_counter()
kernels = network_kernels(load_network(network), target, strict=False)
mapped = time.perf_counter()
estimate = Estimator(target, models, strict=False, partial=True).predict(kernels)
done = time.perf_counter()
print(json.dumps({
    "total_s": done - started, "import_s": imported - started, "load_s": loaded - imported,
    "kernels_s": mapped - loaded, "predict_s": done - mapped, "total_us": estimate.total_us,
}))
"""


def build_workspace(root: Path, rows: int) -> Workspace:
    """Every kind's XGBoost model on the analytic target (skipped where already trained)."""
    ws = Workspace.at(root)
    if len(load_models(ws, TARGET_ID)) == len(LayerKind):
        return ws
    ws.create()
    common = ["-t", "analytic", "-w", str(root)]
    for args in (
        ["plan", "--sampler", "random", "--budget", str(rows), "--kinds", "all", "--name", "pr"],
        ["sweep", str(root / "sweeps" / f"pr-{TARGET_ID}.yaml"), "--json"],
        ["train", "--trials", "0", "--folds", "2", "--test-size", "50", "--no-track", "--json"],
    ):
        run_prmodel([*args, *common])
    return ws


def run_prmodel(args: list[str]) -> None:
    argv = sys.argv
    sys.argv = ["prmodel", *args]
    try:
        prmodel_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"prmodel {' '.join(args)} failed ({exc.code})") from None
    finally:
        sys.argv = argv


def convert_to_onnx(ws: Workspace) -> float:
    """Write ``model.onnx`` beside every ``model.ubj``; returns the seconds it took."""
    # Training-time libraries, and onnxmltools is optional: converting is not an estimate.
    import xgboost
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    started = time.perf_counter()
    for folder in sorted((ws.models_dir / TARGET_ID).iterdir()):
        model = xgboost.XGBRegressor()
        model.load_model(str(folder / "model.ubj"))
        width = model.get_booster().num_features()
        converted = convert_xgboost(
            model, initial_types=[("features", FloatTensorType([None, width]))], target_opset=15
        )
        onnx.save(converted, str(folder / "model.onnx"))
    return time.perf_counter() - started


def end_to_end(ws: Workspace, network: Path, path: str, repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", _END_TO_END, str(ws.root), str(network), path, TARGET_ID],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    spread = [r["total_s"] for r in runs]
    return {"median": medians, "total_s_min": min(spread), "total_s_max": max(spread)}


def agreement(ws: Workspace, network: Path) -> dict[str, float]:
    """Largest relative difference of the predictions (µs) between the tree evaluator and
    the ONNX models, per kind: over the network's kernels and every stored layer."""
    kernels = network_kernels(load_network(network), OnnxRuntimeTarget(), strict=False)
    worst: dict[str, float] = {}
    with MeasurementStore(ws.store_path, readonly=True) as store:
        for kind, model in load_models(ws, TARGET_ID).items():
            layers = [k.layer for k in kernels.kernels if k.layer and k.layer.kind == kind]
            layers += layers_from_frame(store.frame(target_id=TARGET_ID, kind=kind))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # extrapolation notes: the same for both
                before = model.predict(layers)
                folder = ws.model_dir(TARGET_ID, kind.value)
                model.estimator_ = _OnnxTrees(ort, folder / "model.onnx")
                after = model.predict(layers)
            worst[kind.value] = float(np.max(np.abs(after - before) / before))
    return worst


class _OnnxTrees:
    """An ONNX tree ensemble behind the ``predict(X)`` that LatencyModel calls."""

    def __init__(self, ort: Any, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def predict(self, X: Any) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        return np.asarray(self.session.run(None, {self.name: x})[0], dtype=np.float64).ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/prmodel-bench-trees"))
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ws = build_workspace(args.workspace, args.rows)
    network = args.workspace / "resnet50.onnx"
    if not network.exists():
        onnx.save(resnet(50), str(network))
    result: dict[str, Any] = {
        "machine": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "load_average": os.getloadavg(),
        "models": len(load_models(ws, TARGET_ID)),
        "repeats": args.repeats,
        "before_treeforest": end_to_end(ws, network, "treeforest", args.repeats),
    }
    if importlib.util.find_spec("onnxmltools") is not None:
        result["conversion_s"] = convert_to_onnx(ws)
        result["after_onnx"] = end_to_end(ws, network, "onnx", args.repeats)
        result["max_relative_difference"] = agreement(ws, network)
    result["load_average_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_tree_models.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "bench_tree_models.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The figures as a Markdown table (medians of the end-to-end runs, in seconds)."""
    lines = [
        f"ResNet-50 estimated with {result['models']} XGBoost models (600 trees, depth 6), "
        f"end to end in a fresh process, median of {result['repeats']} runs "
        f"(load average {result['load_average'][0]:.1f}):",
        "",
        "| path | total s | min-max s | import s | load models s | map kernels s | predict s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("before_treeforest", "tree evaluator (numpy)"), ("after_onnx", "ONNX")):
        if key in result:
            run, m = result[key], result[key]["median"]
            lines.append(
                f"| {label} | {m['total_s']:.2f} | {run['total_s_min']:.2f}-"
                f"{run['total_s_max']:.2f} | {m['import_s']:.2f} | {m['load_s']:.2f} | "
                f"{m['kernels_s']:.2f} | {m['predict_s']:.3f} |"
            )
    if "max_relative_difference" in result:
        worst = max(result["max_relative_difference"].values())
        lines += [
            "",
            f"Conversion to ONNX: {result['conversion_s']:.1f} s for all models. Largest "
            f"relative difference of the predictions: {worst:.2e}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
