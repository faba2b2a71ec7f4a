"""Writes the worked-example notebooks (``python notebooks/generate.py``; then execute them).

Each notebook starts with a parameters cell: ``TARGET`` (``cpu`` by default) and small budgets.
Under test, ``PRMODEL_NOTEBOOK_TARGET`` switches to a deterministic target with tiny budgets and
``PRMODEL_NOTEBOOK_WORKSPACE`` points the workspace at a temporary folder. Execute and save
outputs with ``python notebooks/generate.py --execute`` (about 10 minutes on the cpu target).
"""

# ruff: noqa: E501  (notebook cells are code in strings; their lines read as in Jupyter)
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = """\
# Parameters: scale these up for real results.
import os
import tempfile
from pathlib import Path

TARGET = os.environ.get("PRMODEL_NOTEBOOK_TARGET", "cpu")  # cpu, analytic, scalesim, ...
UNDER_TEST = "PRMODEL_NOTEBOOK_TARGET" in os.environ  # tiny budgets when CI runs the notebook
KINDS = ["conv", "dense"]
BUDGET = 16 if UNDER_TEST else 120  # PR-sampled training layers per kind
TEST_SIZE = 6 if UNDER_TEST else 30  # random held-out layers per kind
WORKSPACE = Path(
    os.environ.get("PRMODEL_NOTEBOOK_WORKSPACE", Path(tempfile.gettempdir()) / "prmodel-notebooks")
) / TARGET.split(":")[0]
"""

SETUP = """\
%matplotlib inline
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from prmodel.layers import LayerKind
from prmodel.workflows.quickstart import QUICK_MEASURE, QuickstartSettings
from prmodel.targets import get_target
from prmodel.workspace import Workspace

warnings.simplefilter("ignore")  # extrapolation notes etc.: the tables below say what matters
pd.set_option("display.precision", 3)
target = get_target(TARGET)
ws = Workspace.at(WORKSPACE).create()
settings = QuickstartSettings(
    kinds=tuple(KINDS), budget=BUDGET, test_size=TEST_SIZE, trials=0, track=True
)
print(f"target {target.target_id}, workspace {ws.root}")


def show(fig):
    # display() works whatever backend a library switched matplotlib to
    display(fig)
    plt.close(fig)
"""


def sweeps_notebook() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 1. Sweeps and the latency staircase\n\n"
            "A 1-D sweep varies one parameter of a layer and measures each point through the "
            "sweep runner (resumable: every point goes to the workspace's SQLite store). On "
            "ONNX Runtime's CPU provider a conv's latency is a staircase in its output "
            "channels: flat inside a block of the NCHWc layout, a jump at each block multiple."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(SETUP),
        new_markdown_cell("## Conv output channels 1..96"),
        new_code_cell(
            "from prmodel.workflows.quickstart import sweep_staircase\n\n"
            "stairs = sweep_staircase(ws, target, settings=QUICK_MEASURE, progress=False)\n"
            "points = pd.DataFrame([vars(p) for p in stairs.points])\n"
            "fig, ax = plt.subplots(figsize=(9, 4))\n"
            "ax.step(points['value'], points['latency_us'], where='mid', marker='.')\n"
            "for v in stairs.jumps:\n"
            "    ax.axvline(v - 0.5, color='tab:red', alpha=0.3)\n"
            "ax.set(xlabel='out_channels', ylabel='latency (µs)', title=target.target_id)\n"
            "ax.grid(alpha=0.3)\n"
            "show(fig)\n"
            "print('jumps at', stairs.jumps)"
        ),
        new_markdown_cell("The plateaus between sustained jumps:"),
        new_code_cell("pd.DataFrame([vars(p) for p in stairs.plateaus])"),
        new_markdown_cell(
            "## A dense layer's output width\n\n"
            "Any sweep can be written as a `SweepPlan` and run the same way."
        ),
        new_code_cell(
            "from prmodel.measure.plans import SweepPlan\n"
            "from prmodel.measure.store import MeasurementStore\n"
            "from prmodel.measure.runner import measure_layers\n\n"
            "plan = SweepPlan(\n"
            "    name='notebook-dense-out', kind=LayerKind.DENSE,\n"
            "    fixed={'channels': 512}, sweep={'out_channels': tuple(range(1, 129))},\n"
            ")\n"
            "with MeasurementStore(ws.store_path) as store:\n"
            "    rows = measure_layers(plan.layers(), target, store=store, settings=QUICK_MEASURE,\n"
            "                          progress=False, plan_name=plan.name)\n"
            "rows = rows.sort_values('out_channels')\n"
            "ax = rows.plot(x='out_channels', y='latency_us', drawstyle='steps-mid', marker='.',\n"
            "               figsize=(9, 4), legend=False, title=f'dense 512->n on {target.target_id}')\n"
            "ax.set_ylabel('latency (µs)')\n"
            "show(ax.figure)\n"
            "rows[['out_channels', 'latency_us', 'min_us', 'p90_us', 'rounds']].head(20)"
        ),
    ]


def select_notebook() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 2. Selecting Performance Representatives\n\n"
            "The hardware profile proposes step periods per parameter; the initial 1-D sweeps "
            "(dense around those periods) are measured, step detection finds the plateaus, and "
            "one representative per plateau is kept. This is `prmodel select`."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(SETUP),
        new_code_cell(
            "from prmodel.workflows.quickstart import select_representatives_for\n\n"
            "selection = select_representatives_for(ws, target, settings, progress=False)\n"
            "print(f'{selection.measured} points measured, {selection.skipped} reused; '\n"
            "      f'profile {selection.profile.name}')\n"
            "pd.DataFrame(selection.rows())"
        ),
        new_markdown_cell("Each swept parameter with its plateaus and the representatives (dots):"),
        new_code_cell(
            "from IPython.display import Image, display\n\n"
            "for path in selection.plots:\n"
            "    print(path.name)\n"
            "    display(Image(filename=str(path), width=720))"
        ),
        new_markdown_cell("The representative values per parameter, as saved in the PR file:"),
        new_code_cell(
            "pd.DataFrame(\n"
            "    [{'kind': s.kind.value, 'parameter': s.parameter, 'period': s.period,\n"
            "      'representatives': list(s.representatives)[:12]}\n"
            "     for s in selection.representatives.steps]\n"
            ")"
        ),
    ]


def training_notebook() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 3. Training and reviewing accuracy in MLflow\n\n"
            "PR-sampled layers are benchmarked (plans `pr-<kind>`), a random held-out test set "
            "is measured (plans `test-<kind>`), and one regressor per kind is fitted, saved "
            "with a model card under `trained_models/` and logged to MLflow."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(SETUP),
        new_code_cell(
            "from prmodel.workflows.quickstart import (\n"
            "    benchmark_representatives, measure_test_sets, select_representatives_for,\n"
            "    train_quickstart_models,\n"
            ")\n"
            "from prmodel.measure.store import MeasurementStore\n\n"
            "selection = select_representatives_for(ws, target, settings, progress=False)\n"
            "with MeasurementStore(ws.store_path) as store:\n"
            "    train, _ = benchmark_representatives(\n"
            "        store, target, selection.representatives, settings, progress=False)\n"
            "    test, _ = measure_test_sets(store, target, settings, progress=False)\n"
            "report = train_quickstart_models(ws, target, train, test, selection, settings,\n"
            "                                 progress=False)\n"
            "pd.DataFrame([{'kind': r.kind.value, 'train rows': r.train_rows,\n"
            "               'test rows': len(r.test_layers), **(r.test_metrics or {})}\n"
            "              for r in report.results])"
        ),
        new_markdown_cell("Predicted against measured latency of the held-out layers:"),
        new_code_cell(
            "fig, axes = plt.subplots(1, len(report.results), figsize=(5 * len(report.results), 4),\n"
            "                         squeeze=False)\n"
            "for ax, r in zip(axes[0], report.results):\n"
            "    ax.loglog(r.test_measured, r.test_predicted, 'o', alpha=0.7)\n"
            "    lo, hi = min(r.test_measured.min(), r.test_predicted.min()), r.test_measured.max()\n"
            "    ax.plot([lo, hi], [lo, hi], 'k--', linewidth=1)\n"
            "    ax.set(title=f'{r.kind.value}: MAPE {r.test_metrics[\"mape\"]:.1f} %',\n"
            "           xlabel='measured (µs)', ylabel='predicted (µs)')\n"
            "fig.tight_layout()\n"
            "show(fig)"
        ),
        new_markdown_cell(
            "## The runs in MLflow\n\n"
            "Every training run is in the workspace's MLflow store; browse them with "
            "`prmodel ui --workspace <workspace>`. The same figures, queried:"
        ),
        new_code_cell(
            "import mlflow\n\n"
            "from prmodel.train.tracking import experiment_name\n\n"
            "mlflow.set_tracking_uri(report.tracking_uri)\n"
            "runs = mlflow.search_runs(experiment_names=[experiment_name(target.target_id)])\n"
            "columns = ['tags.kind', 'params.regressor', 'metrics.test_mape',\n"
            "           'metrics.test_within_10', 'metrics.test_spearman', 'start_time']\n"
            "print(f'MLflow store: {report.tracking_uri}')\n"
            "print(f'open it with: prmodel ui --workspace {ws.root}')\n"
            "runs[[c for c in columns if c in runs.columns]].head(10)"
        ),
    ]


def estimate_notebook() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 4. Estimating a network before deployment\n\n"
            "The estimator maps an ONNX network to the kernels the target runs (fusion-aware "
            "on ONNX Runtime), predicts each with the trained model of its kind and sums them. "
            "Run notebook 3 first (or `prmodel quickstart`) so the workspace has models; this "
            "notebook trains them if they are missing."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(SETUP),
        new_code_cell(
            "from prmodel.train.artifacts import load_models\n"
            "from prmodel.train.model import ModelError\n"
            "from prmodel.workflows.quickstart import (\n"
            "    benchmark_representatives, measure_test_sets, select_representatives_for,\n"
            "    train_quickstart_models,\n"
            ")\n"
            "from prmodel.measure.store import MeasurementStore\n\n"
            "try:\n"
            "    trained = set(load_models(ws, target.target_id))\n"
            "except ModelError:  # saved by another prmodel version: train again\n"
            "    trained = set()\n"
            "if trained < {LayerKind(k) for k in KINDS}:\n"
            "    selection = select_representatives_for(ws, target, settings, progress=False)\n"
            "    with MeasurementStore(ws.store_path) as store:\n"
            "        train, _ = benchmark_representatives(\n"
            "            store, target, selection.representatives, settings, progress=False)\n"
            "        test, _ = measure_test_sets(store, target, settings, progress=False)\n"
            "    train_quickstart_models(ws, target, train, test, selection, settings,\n"
            "                            progress=False)\n"
            "sorted(k.value for k in load_models(ws, target.target_id))"
        ),
        new_markdown_cell("## The kernels of a tiny ResNet and their predicted latency"),
        new_code_cell(
            "import onnx\n\n"
            "from prmodel import zoo\n"
            "from prmodel.estimate.estimator import Estimator\n\n"
            "path = ws.root / 'networks' / 'tiny_resnet.onnx'\n"
            "path.parent.mkdir(exist_ok=True)\n"
            "onnx.save(zoo.tiny_resnet(), str(path))\n"
            "# partial=True: only conv and dense are trained here, so kernels of other kinds are\n"
            "# unpriced and the total is a lower bound (without it the estimate is refused)\n"
            "estimator = Estimator.load(ws, target, strict=False, partial=True)\n"
            "estimate = estimator.predict(path)\n"
            "bound = 'at least ' if estimate.partial else ''\n"
            "print(f'{estimate.network}: {bound}{estimate.total_us:.1f} µs estimated '\n"
            "      f'({100 * estimate.unmodelled_share:.0f} % from fallbacks); {estimate.runtime}')\n"
            "print(estimate.partial_note)\n"
            "estimate.layers[['node', 'op', 'status', 'source', 'output_shape', 'predicted_us',\n"
            "                 'share_pct']]"
        ),
        new_code_cell(
            "table = estimate.layers[estimate.layers['predicted_us'] > 0]\n"
            "ax = table.plot.barh(x='node', y='predicted_us', figsize=(8, 0.3 * len(table) + 1),\n"
            "                     legend=False, title='predicted latency per kernel (µs)')\n"
            "ax.invert_yaxis()\n"
            "show(ax.figure)"
        ),
        new_markdown_cell(
            "## Estimate vs measurement\n\n"
            "On ONNX Runtime targets the network is run and each kernel profiled; on "
            "simulated targets the truth is the target's own latency of the modelled layers."
        ),
        new_code_cell(
            "from prmodel.workflows.quickstart import estimate_networks\n\n"
            "networks = [path]\n"
            "for name in ('tiny_mobilenet', 'tiny_vgg'):\n"
            "    networks.append(ws.root / 'networks' / f'{name}.onnx')\n"
            "    onnx.save(getattr(zoo, name)(), str(networks[-1]))\n"
            "rows, _ = estimate_networks(ws, target, networks, settings, progress=False)\n"
            "compared = pd.DataFrame([r.as_dict() for r in rows]).drop(columns=['path'])\n"
            "compared"
        ),
        new_code_cell(
            "ax = compared.plot.bar(x='network', y=['modelled_estimated_us', 'modelled_measured_us'],\n"
            "                       figsize=(7, 4), rot=0,\n"
            "                       title='modelled kernels: estimated vs measured (µs)')\n"
            "show(ax.figure)"
        ),
    ]


def sampling_notebook() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell(
            "# 5. PR vs random sampling\n\n"
            "At equal numbers of benchmarked layers, models trained on Performance "
            "Representatives should beat models trained on random layers. "
            "`prmodel.workflows.evaluation.evaluate` draws both samples per budget, fits the same "
            "regressor on each and scores them on the same held-out layers."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(SETUP),
        new_code_cell(
            "from prmodel.workflows.evaluation import EvaluationSettings, evaluate\n\n"
            "budgets = (8, 16) if UNDER_TEST else (20, 60, 120)\n"
            "evaluation = evaluate(\n"
            "    target, workspace=ws, progress=False,\n"
            "    settings=EvaluationSettings(\n"
            "        kinds=tuple(KINDS), budgets=budgets, samplers=('pr', 'random'), seeds=1,\n"
            "        test_size=TEST_SIZE, measure=QUICK_MEASURE,\n"
            "    ),\n"
            ")\n"
            "summary = evaluation.summary()\n"
            "summary = summary[summary['test_set'] == 'random']\n"
            "summary[['kind', 'sampler', 'budget', 'mape', 'within_10', 'spearman', 'train_rows']]"
        ),
        new_code_cell(
            "fig, axes = plt.subplots(1, len(KINDS), figsize=(5 * len(KINDS), 4), squeeze=False)\n"
            "for ax, kind in zip(axes[0], KINDS):\n"
            "    for sampler, rows in summary[summary['kind'] == kind].groupby('sampler'):\n"
            "        ax.plot(rows['budget'], rows['mape'], 'o-', label=sampler)\n"
            "    ax.set(xscale='log', yscale='log', title=kind, xlabel='benchmarked layers',\n"
            "           ylabel='test MAPE (%)')\n"
            "    ax.legend()\n"
            "    ax.grid(alpha=0.3, which='both')\n"
            "fig.tight_layout()\n"
            "show(fig)"
        ),
        new_markdown_cell(
            "The noise floor: the error of measuring the test layers again (0 on deterministic "
            "targets); no model can be more accurate than that."
        ),
        new_code_cell("evaluation.noise"),
    ]


NOTEBOOKS = {
    "01_sweeps_and_staircases.ipynb": sweeps_notebook,
    "02_selecting_representatives.ipynb": select_notebook,
    "03_training_and_mlflow.ipynb": training_notebook,
    "04_estimating_a_network.ipynb": estimate_notebook,
    "05_pr_vs_random_sampling.ipynb": sampling_notebook,
}


def write(folder: Path = HERE) -> list[Path]:
    """Write every notebook (without outputs) into ``folder``."""
    paths = []
    for name, build in NOTEBOOKS.items():
        notebook = new_notebook(cells=build())
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        path = folder / name
        nbformat.write(notebook, path)
        paths.append(path)
    return paths


def execute(path: Path, *, timeout: int = 1200) -> None:
    """Run a notebook top to bottom and save it with its outputs."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3").execute(cwd=str(path.parent))
    nbformat.write(notebook, path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execute", action="store_true", help="Run them and save the outputs.")
    args = parser.parse_args(argv)
    for path in write():
        if args.execute:
            print(f"executing {path.name}", flush=True)
            execute(path)
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
