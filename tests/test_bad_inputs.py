"""Bad input never ends in a traceback: one table of faulty plans, ONNX files, shapes,
targets, stores, model folders and workspaces, each run through the real command line.

Every case runs ``prmodel.cli.main`` in-process (``sys.argv`` patched, output captured) and
asserts exit code 2, no traceback and the words that name the fault. The fault tests below
the table need real processes: a sweep killed mid-way (tests/test_cli_sweep.py), two sweeps
on one store at once, Ctrl-C during training, and a workspace on a read-only mount.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from estimate_fixtures import analytic_models, small_model
from onnx import helper

from prmodel.cli import main
from prmodel.estimate.estimator import Estimator, PartialEstimateError
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.claims import owner_alive
from prmodel.measure.runner import measure_layers
from prmodel.measure.store import MeasurementStore
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.workspace import Workspace
from prmodel.zoo import densenet, efficientnet, tiny_resnet, tiny_vgg

TESTS = Path(__file__).parent
ROOT = TESTS.parent
TARGET = AnalyticTarget()
MODELS = f"trained_models/{TARGET.target_id}"

PLAN = """\
name: small
kind: conv
fixed: {channels: 4, height: 6, width: 6, kernel: 3, padding: 1}
sweep: {out_channels: {start: 1, stop: 12}}
"""


# -- the inputs ---------------------------------------------------------------------------------
def _conv_layers(n: int, seed: int) -> list[LayerConfig]:
    rng = np.random.default_rng(seed)
    return [
        LayerConfig.create(
            "conv",
            channels=int(rng.integers(1, 33)),
            height=int(rng.integers(4, 17)),
            width=int(rng.integers(4, 17)),
            out_channels=int(rng.integers(1, 33)),
            kernel=int(rng.choice([1, 3])),
            padding=1,
        )
        for _ in range(n)
    ]


def _dense_layers(n: int, seed: int) -> list[LayerConfig]:
    rng = np.random.default_rng(seed)
    return [
        LayerConfig.create(
            "dense", channels=int(rng.integers(4, 129)), out_channels=int(rng.integers(4, 129))
        )
        for _ in range(n)
    ]


def _conv_transpose() -> onnx.ModelProto:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    weights = {"w": np.ones((4, 4, 2, 2))}
    return small_model([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, 16, 16]}, weights)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with conv and dense models of the analytic target, and networks."""
    root = tmp_path_factory.mktemp("bad_inputs")
    ws = Workspace.at(root / "ws").create()
    with MeasurementStore(ws.store_path) as store:
        for plan, layers in {
            "pr-conv": _conv_layers(40, 0),
            "test-conv": _conv_layers(12, 1),
            "pr-dense": _dense_layers(40, 0),
            "test-dense": _dense_layers(12, 1),
        }.items():
            measure_layers(layers, TARGET, store=store, plan_name=plan, progress=False)
    train = ["train", "-t", "analytic", "--kinds", "conv,dense", "--trials", "0", "--folds", "2"]
    code, output = run_cli([*train, "--no-track", "-w", str(ws.root)])
    assert code == 0, output
    nets = root / "nets"
    nets.mkdir()
    onnx.save(tiny_resnet(), str(nets / "resnet.onnx"))
    onnx.save(tiny_vgg(), str(nets / "vgg.onnx"))
    onnx.save(tiny_resnet(dynamic_batch=True), str(nets / "dynamic.onnx"))
    onnx.save(_conv_transpose(), str(nets / "convtranspose.onnx"))
    return root


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run the console script's ``main`` in-process; returns its exit code and all output."""
    out = StringIO()
    argv = sys.argv
    sys.argv = ["prmodel", *args]
    try:
        with redirect_stdout(out), redirect_stderr(out):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue()


# -- the table ----------------------------------------------------------------------------------
Make = Callable[[Path], None]
"""Prepares a case's inputs in its folder (which holds a copy of the workspace as ``ws``)."""


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{d}``: the case's folder, ``{n}``: the networks),
    the words the error must contain, and what to prepare first."""

    args: tuple[str, ...]
    words: tuple[str, ...]
    make: Make | None = None


def write(name: str, content: str | bytes) -> Make:
    """Write ``content`` to ``name`` in the case's folder (folders made as needed)."""

    def make(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))

    return make


def both(*makers: Make) -> Make:
    def make(folder: Path) -> None:
        for maker in makers:
            maker(folder)

    return make


def plan(text: str | bytes, *words: str, args: tuple[str, ...] = ()) -> Case:
    """A sweep of the plan ``text`` on the analytic target."""
    command = ("sweep", "{d}/p.yaml", "-t", "analytic", "-w", "{d}/ws", *args)
    return Case(command, words, write("p.yaml", text))


def estimate(
    network: str, *words: str, args: tuple[str, ...] = (), make: Make | None = None
) -> Case:
    """An estimate of ``network`` (a path) with the workspace's conv and dense models."""
    return Case(("estimate", network, "-t", "analytic", "-w", "{d}/ws", *args), words, make)


def edit_card(kind: str, **fields: object) -> Make:
    def make(folder: Path) -> None:
        path = folder / "ws" / MODELS / kind / "model_card.json"
        card = json.loads(path.read_text())
        card.update(fields)
        path.write_text(json.dumps(card))

    return make


def store_bytes(content: bytes) -> Make:
    return write("ws/sweeps/measurements.sqlite", content)


def damage_store(folder: Path) -> None:
    """Overwrite a page in the middle of the store (a b-tree page of measurements)."""
    path = folder / "ws" / "sweeps" / "measurements.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(path.read_bytes())
    middle = (pages // 2) * page
    data[middle : middle + page] = b"\xa5" * page
    path.write_bytes(bytes(data))


def old_schema(folder: Path) -> None:
    with sqlite3.connect(folder / "ws" / "sweeps" / "measurements.sqlite") as conn:
        conn.execute("UPDATE schema_version SET version = 99")


def remove(name: str) -> Make:
    def make(folder: Path) -> None:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return make


def copy(source: str, destination: str) -> Make:
    def make(folder: Path) -> None:
        shutil.copytree(folder / source, folder / destination)

    return make


def onnx_file(name: str, model: Callable[[], onnx.ModelProto]) -> Make:
    def make(folder: Path) -> None:
        onnx.save(model(), str(folder / name))

    return make


def _no_nodes() -> onnx.ModelProto:
    model = small_model([], {"x": [1, 4]}, {"x": [1, 4]})
    return model


def _old_opset() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    return small_model([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, 8, 8]}, opset=9)


def _custom_op() -> onnx.ModelProto:
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    model = small_model([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, 8, 8]})
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


TEN_MILLION = """\
name: huge
kind: conv
fixed: {channels: 4, height: 6, width: 6}
sweep: {out_channels: {start: 1, stop: 10000000}}
"""
GRID = """\
name: grid
kind: conv
fixed: {channels: 4, height: 6, width: 6}
grid: {out_channels: {start: 1, stop: 1000}, channels: {start: 1, stop: 1000}}
"""
RESNET = "{n}/resnet.onnx"

CASES: dict[str, Case] = {
    # -- plans ------------------------------------------------------------------------------
    "plan-not-utf8": plan(b"\xff\xfe name", "p.yaml", "not a UTF-8 text file"),
    "plan-bad-yaml": plan("name: p\nkind: conv\nsweep: {channels: [1]\n", "not valid YAML at line"),
    "plan-empty-file": plan("", "must hold one plan"),
    "plan-a-list": plan("- 1\n- 2\n", "must hold one plan"),
    "plan-unsafe-tag": plan("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "plan-unknown-kind": plan(
        "name: p\nkind: softmax\nsweep: {channels: [1]}", "unknown layer kind 'softmax'"
    ),
    "plan-no-name": plan("kind: conv\nsweep: {channels: [1]}", "field 'name' is missing"),
    "plan-no-kind": plan("name: p\nsweep: {channels: [1]}", "field 'kind' is missing"),
    "plan-two-modes": plan(
        "name: p\nkind: conv\nsweep: {channels: [1]}\ngrid: {channels: [1]}", "needs exactly one of"
    ),
    "plan-no-mode": plan("name: p\nkind: conv\nfixed: {channels: 4}", "needs exactly one of"),
    "plan-sweep-two-axes": plan(
        "name: p\nkind: conv\nsweep: {channels: [1], height: [4]}",
        "must name exactly one parameter",
    ),
    "plan-not-integer": plan(
        "name: p\nkind: conv\nsweep: {channels: [one]}", "must be an integer, got 'one'"
    ),
    "plan-bool-value": plan(
        "name: p\nkind: conv\nsweep: {channels: [true]}", "must be an integer, got True"
    ),
    "plan-step-zero": plan(
        "name: p\nkind: conv\nsweep: {channels: {start: 1, stop: 4, step: 0}}",
        "must be positive, got 0",
    ),
    "plan-geom-shape": plan(
        "name: p\nkind: conv\nsweep: {channels: {geom: [1, 8]}}", "geom must be [lo, hi, n]"
    ),
    "plan-geom-order": plan(
        "name: p\nkind: conv\nsweep: {channels: {geom: [8, 1, 3]}}", "geom needs 0 < lo <= hi"
    ),
    "plan-invalid-point": plan(
        "name: p\nkind: conv\nfixed: {height: 4, width: 4}\nsweep: {kernel: [3, 7]}",
        "point kernel=7 is not a valid layer",
    ),
    "plan-unknown-field": plan(
        "name: p\nkind: conv\ncolour: red\nsweep: {channels: [1]}", "'colour' is not a plan field"
    ),
    "plan-foreign-parameter": plan(
        "name: p\nkind: dense\nsweep: {kernel: [1, 3]}", "which a dense layer does not take"
    ),
    "plan-random-count": plan(
        "name: p\nkind: dense\nrandom: {count: 0, space: {channels: [1, 8]}}",
        "must be positive, got 0",
    ),
    "plan-random-range": plan(
        "name: p\nkind: dense\nrandom: {count: 3, space: {channels: [9, 2]}}", "has lo > hi"
    ),
    "plan-random-too-few": plan(
        "name: p\nkind: dense\nfixed: {out_channels: 4}\n"
        "random: {count: 5, space: {channels: [1, 2]}}",
        "yields only 2 distinct valid layers",
    ),
    "plan-activation-kind": plan(
        "name: p\nkind: maxpool\nactivation: relu\nsweep: {channels: [1]}",
        "does not apply to a maxpool layer",
    ),
    "plan-activation-name": plan(
        "name: p\nkind: conv\nactivation: swish\nsweep: {channels: [1]}", "must be one of"
    ),
    "plan-name-twice": plan(
        "plans:\n- {name: p, kind: dense, sweep: {channels: [1]}}\n"
        "- {name: p, kind: dense, sweep: {channels: [2]}}",
        "plan name 'p' is used twice",
    ),
    "plan-empty-plans": plan("plans: []\n", "must be a non-empty list of plans"),
    "plan-top-level-field": plan(
        "plans: [{name: p, kind: dense, sweep: {channels: [1]}}]\nextra: 1\n",
        "unknown top-level field 'extra'",
    ),
    "plan-fixed-not-mapping": plan(
        "name: p\nkind: conv\nfixed: [4]\nsweep: {channels: [1]}", "must be a mapping"
    ),
    "plan-points-empty": plan("name: p\nkind: conv\npoints: []", "must be a non-empty list"),
    "plan-skip-invalid-text": plan(
        "name: p\nkind: conv\nskip_invalid: yes please\nsweep: {channels: [1]}",
        "must be true or false",
    ),
    "plan-ten-million": plan(TEN_MILLION, "plan 'huge' has 10,000,000 points", "--max-points"),
    "plan-grid-million": plan(GRID, "plan 'grid' has 1,000,000 points", "--yes"),
    "plan-over-max-points": plan(PLAN, "has 12 points", "limit of 5", args=("--max-points", "5")),
    "plan-max-points-zero": plan(PLAN, "--max-points", args=("--max-points", "0")),
    "plan-max-rounds": plan(
        PLAN, "--max-rounds must be between 3 and 15", args=("--max-rounds", "99")
    ),
    "plan-missing-file": Case(
        ("sweep", "{d}/missing.yaml", "-t", "analytic", "-w", "{d}/ws"),
        ("missing.yaml", "cannot read the plan file"),
    ),
    "plan-empty-folder": Case(
        ("sweep", "{d}/plans", "-t", "analytic", "-w", "{d}/ws"),
        ("holds no plan files",),
        write("plans/notes.txt", "x"),
    ),
    "plan-same-name-two-files": Case(
        ("sweep", "{d}/a.yaml", "{d}/b.yaml", "-t", "analytic", "-w", "{d}/ws"),
        ("plan name 'small' appears in more than one plan file",),
        both(write("a.yaml", PLAN), write("b.yaml", PLAN)),
    ),
    # -- ONNX files -------------------------------------------------------------------------
    "onnx-missing": estimate("{d}/none.onnx", "none.onnx does not exist"),
    "onnx-a-folder": estimate("{d}/ws", "is a folder, not an ONNX model file"),
    "onnx-truncated": estimate(
        "{d}/cut.onnx",
        "not a readable ONNX model",
        make=lambda d: (d / "cut.onnx").write_bytes(tiny_resnet().SerializeToString()[:700]),
    ),
    "onnx-random-bytes": estimate(
        "{d}/noise.onnx",
        "not a readable ONNX model",
        make=write("noise.onnx", bytes(range(256)) * 8),
    ),
    "onnx-empty-file": estimate(
        "{d}/empty.onnx", "is not an ONNX model", make=write("empty.onnx", b"")
    ),
    "onnx-text-file": estimate(
        "{d}/text.onnx", "text.onnx", make=write("text.onnx", "hello, I am not a network\n")
    ),
    "onnx-no-nodes": estimate(
        "{d}/nodes.onnx", "no graph nodes", make=onnx_file("nodes.onnx", _no_nodes)
    ),
    "onnx-old-opset": estimate("{d}/old.onnx", "opset 9", make=onnx_file("old.onnx", _old_opset)),
    "onnx-custom-op": estimate(
        "{d}/custom.onnx", "Frobnicate", make=onnx_file("custom.onnx", _custom_op)
    ),
    "onnx-convtranspose-strict": estimate(
        "{n}/convtranspose.onnx", "ConvTranspose", "--allow-unmapped"
    ),
    "onnx-convtranspose-unmapped": estimate(
        "{n}/convtranspose.onnx",
        "no model for op ConvTranspose",
        "--partial",
        args=("--allow-unmapped",),
    ),
    "onnx-dynamic-shape": estimate("{n}/dynamic.onnx", "has a dynamic shape", "--input-shape"),
    # -- shapes -----------------------------------------------------------------------------
    "shape-zero": estimate(RESNET, "positive sizes", args=("-s", "1x3x0x32")),
    "shape-negative": estimate(RESNET, "positive sizes", args=("-s", "1x3x-1x32")),
    "shape-words": estimate(RESNET, "is not of the form name=1x3x224x224", args=("-s", "big")),
    "shape-twice-named": estimate(
        "{n}/dynamic.onnx",
        "given twice for input 'input'",
        args=("-s", "input=1x3x32x32", "-s", "input=2x3x32x32"),
    ),
    "shape-twice-bare": estimate(
        "{n}/dynamic.onnx",
        "given twice for the only input",
        args=("-s", "1x3x32x32", "-s", "2x3x32x32"),
    ),
    "shape-bare-and-named": estimate(
        "{n}/dynamic.onnx",
        "once bare, once by name",
        args=("-s", "1x3x32x32", "-s", "input=2x3x32x32"),
    ),
    "shape-unknown-input": estimate(
        "{n}/dynamic.onnx", "has no input named 'pixels'", args=("-s", "pixels=1x3x32x32")
    ),
    "shape-wrong-rank": estimate("{n}/dynamic.onnx", "input", args=("-s", "1x3x32")),
    # -- targets ----------------------------------------------------------------------------
    "target-unknown": Case(
        ("estimate", RESNET, "-t", "tpu9000", "-w", "{d}/ws"), ("unknown target 'tpu9000'",)
    ),
    "target-bad-option": plan(
        PLAN, "analytic target has no option 'colour'", args=("-t", "analytic:colour=red")
    ),
    "target-bad-plugin": plan(
        PLAN, "cannot load target plugin", args=("-t", "no_such_module.Target")
    ),
    "target-cpu-threads": Case(
        ("estimate", RESNET, "-t", "cpu:threads=zero", "-w", "{d}/ws"), ("threads",)
    ),
    "target-cpu-opt": Case(("estimate", RESNET, "-t", "cpu:opt=fastest", "-w", "{d}/ws"), ("opt",)),
    "target-no-models": Case(
        ("estimate", RESNET, "-t", "analytic:block=8", "-w", "{d}/ws"),
        ("no trained models for target",),
    ),
    "target-cannot-run-networks": Case(
        ("calibrate", RESNET, "-t", "analytic", "-w", "{d}/ws"), ("cannot run whole networks",)
    ),
    "target-scalesim-rows": plan(PLAN, "rows", args=("-t", "scalesim:rows=many")),
    # -- stores -----------------------------------------------------------------------------
    "store-zero-bytes-show": Case(
        ("show", "-w", "{d}/ws"), ("empty file (0 bytes)",), store_bytes(b"")
    ),
    "store-zero-bytes-sweep": Case(
        ("sweep", "{d}/p.yaml", "-t", "analytic", "-w", "{d}/ws"),
        ("empty file (0 bytes)", "restore it from a backup"),
        both(write("p.yaml", PLAN), store_bytes(b"")),
    ),
    "store-not-sqlite": Case(
        ("show", "-w", "{d}/ws"), ("not an SQLite file",), store_bytes(b"not a database " * 300)
    ),
    "store-a-folder": Case(
        ("show", "-w", "{d}/ws"),
        ("is a folder, not an SQLite file",),
        both(
            remove("ws/sweeps/measurements.sqlite"),
            lambda d: (d / "ws/sweeps/measurements.sqlite").mkdir(),
        ),
    ),
    "store-damaged-check": Case(
        ("show", "--check", "-w", "{d}/ws"), ("is damaged", ".recover"), damage_store
    ),
    "store-damaged-sweep": Case(
        ("sweep", "{d}/p.yaml", "-t", "analytic", "-w", "{d}/ws"),
        ("is damaged", ".recover"),
        both(write("p.yaml", PLAN), damage_store),
    ),
    "store-newer-schema": Case(("show", "-w", "{d}/ws"), ("has schema version 99",), old_schema),
    "store-none": Case(("show", "-w", "{d}/empty"), ("no measurement store at",)),
    "export-bad-suffix": Case(
        ("export", "{d}/out.xlsx", "-w", "{d}/ws"), ("must end in .parquet or .csv",)
    ),
    "export-to-folder": Case(("export", "{d}/ws", "-w", "{d}/ws"), ("is a folder",)),
    "export-unknown-plan": Case(
        ("export", "{d}/o.csv", "--plan", "nope", "-w", "{d}/ws"),
        ("no plan named 'nope'", "pr-conv"),
    ),
    "export-unknown-kind": Case(
        ("export", "{d}/o.csv", "--kind", "lstm", "-w", "{d}/ws"), ("unknown layer kind 'lstm'",)
    ),
    "export-no-store": Case(
        ("export", "{d}/o.csv", "-w", "{d}/empty"), ("no measurement store at",)
    ),
    # -- model folders ----------------------------------------------------------------------
    "models-only-some-kinds": estimate(
        RESNET, "no model for", "maxpool", "globalavgpool", "--partial"
    ),
    "models-card-missing": estimate(
        RESNET, "no model card", "/conv/", make=remove(f"ws/{MODELS}/conv/model_card.json")
    ),
    "models-kind-missing": estimate(
        RESNET, "no model for conv in 6 kernels", "at least", make=remove(f"ws/{MODELS}/conv")
    ),
    "models-stray-and-missing": estimate(
        RESNET,
        "no model for conv in 6 kernels",
        "conv.bak",
        make=both(copy(f"ws/{MODELS}/conv", f"ws/{MODELS}/conv.bak"), remove(f"ws/{MODELS}/conv")),
    ),
    "models-metrics-oops": Case(
        ("models", "-w", "{d}/ws"),
        ("field 'metrics' must be an object",),
        edit_card("conv", metrics="oops"),
    ),
    "models-metric-text": Case(
        ("models", "-w", "{d}/ws"),
        ("metric 'test_mape' must be a number",),
        edit_card("conv", metrics={"test_mape": "low"}),
    ),
    "models-card-not-json": estimate(
        RESNET, "is not readable JSON", make=write(f"ws/{MODELS}/conv/model_card.json", "{oops")
    ),
    "models-card-not-utf8": estimate(
        RESNET,
        "is not readable JSON",
        make=write(f"ws/{MODELS}/conv/model_card.json", b"\xff\xfe{}"),
    ),
    "models-card-version": estimate(
        RESNET, "format version 7", make=edit_card("conv", format_version=7)
    ),
    "models-card-rows-text": estimate(
        RESNET,
        "field 'training_rows' must be an integer",
        make=edit_card("conv", training_rows="many"),
    ),
    "models-card-incomplete": estimate(
        RESNET, "incomplete or malformed", make=edit_card("conv", feature_schema=None)
    ),
    "models-regressor": estimate(
        RESNET, "unknown regressor 'magic'", make=edit_card("conv", regressor="magic")
    ),
    "models-tampered": estimate(
        RESNET,
        "model.ubj",
        make=lambda d: (d / "ws" / MODELS / "conv" / "model.ubj").write_bytes(b"{}"),
    ),
    "models-file-missing": estimate(
        RESNET, "model.ubj", make=remove(f"ws/{MODELS}/conv/model.ubj")
    ),
    "models-kind-swapped": estimate(
        RESNET,
        "dense",
        make=both(remove(f"ws/{MODELS}/conv"), copy(f"ws/{MODELS}/dense", f"ws/{MODELS}/conv")),
    ),
    "models-calibration-garbage": estimate(
        RESNET, "calibration", make=write(f"ws/{MODELS}/calibration.json", "[1, 2]")
    ),
    # -- workspaces -------------------------------------------------------------------------
    "ws-init-on-file": Case(("init", "{d}/file"), ("is a file, not a folder",), write("file", "x")),
    "ws-init-under-file": Case(("init", "{d}/file/sub"), ("file",), write("file", "x")),
    "ws-option-is-file": Case(
        ("show", "-w", "{d}/file"), ("is a file, not a folder",), write("file", "x")
    ),
    "ws-estimate-csv-under-file": estimate(
        RESNET,
        "/file: a file is in the way",
        args=("--partial", "--csv", "{d}/file/out.csv"),
        make=write("file", "x"),
    ),
    "ws-estimate-csv-folder": estimate(RESNET, "csv", args=("--partial", "--csv", "{d}/ws")),
    "ws-plan-without-prs": Case(
        ("plan", "--sampler", "pr", "--budget", "5", "-t", "analytic", "-w", "{d}/ws"),
        ("no Performance Representatives",),
    ),
    "ws-train-empty": Case(
        ("train", "-t", "analytic", "--no-track", "-w", "{d}/empty"), ("no measurement store",)
    ),
    "ws-select-unknown-kind": Case(
        ("select", "-t", "analytic", "--kinds", "lstm", "-w", "{d}/ws"), ("lstm",)
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_error(name: str, base: Path, tmp_path: Path) -> None:
    case = CASES[name]
    shutil.copytree(base / "ws", tmp_path / "ws")
    if case.make is not None:
        case.make(tmp_path)
    args = [a.format(d=tmp_path, n=base / "nets") for a in case.args]
    code, output = run_cli(args)
    flat = " ".join(output.split())  # rich wraps long lines at word boundaries
    assert code == 2, output
    assert "Traceback" not in output
    for words in case.words:
        assert words in flat, output


# -- no silent zeros ----------------------------------------------------------------------------
@pytest.mark.parametrize("network", ["resnet", "vgg", "convtranspose"])
def test_no_kernel_is_priced_zero_in_silence(network: str, base: Path) -> None:
    command = ["estimate", str(base / "nets" / f"{network}.onnx"), "-t", "analytic"]
    command += ["--allow-unmapped", "-w", str(base / "ws")]
    code, refused = run_cli(command)
    assert code == 2 and "have no model and count 0 µs" in refused
    code, output = run_cli([*command, "--partial", "--json"])
    assert code == 0, output
    data = json.loads(output)
    timed = [k for k in data["kernels"] if k["status"] != "free"]
    unpriced = [k for k in timed if k["source"] == "unpriced"]
    assert unpriced and data["partial"] and data["total_is_lower_bound"]
    assert data["unpriced_kernels"] == len(unpriced)
    assert data["unpriced_count_share"] == pytest.approx(len(unpriced) / len(timed))
    assert all(k["predicted_us"] is None for k in unpriced)  # no number for what has no price
    assert all(k["predicted_us"] > 0 for k in timed if k["source"] != "unpriced")
    assert data["warnings"][0].startswith("partial estimate: ")
    assert sum(data["missing_models"].values()) == len(unpriced)


def test_real_networks_on_a_conv_and_dense_workspace_name_what_is_missing() -> None:
    # The quickstart's models (conv and dense) on ONNX Runtime's kernels of real networks:
    # EfficientNet-B0's fused SiLU, pools and reorders, DenseNet-121's Concat.
    models = analytic_models([LayerKind.CONV, LayerKind.DENSE])
    estimator = Estimator(OnnxRuntimeTarget(), models, strict=False)
    with pytest.raises(PartialEstimateError, match="op Concat"):
        estimator.predict(densenet(121))
    with pytest.raises(PartialEstimateError) as refused:
        estimator.predict(efficientnet("b0"))
    missing = refused.value.estimate.missing_models
    assert {"globalavgpool", "sigmoid (op QuickGelu)", "op ReorderOutput"} <= set(missing)
    partial = Estimator(OnnxRuntimeTarget(), models, strict=False, partial=True)
    estimate = partial.predict(efficientnet("b0"))
    assert estimate.partial and estimate.missing_models == missing
    assert "at least" in estimate.total_note


def test_a_stray_model_folder_is_named_and_skipped(base: Path, tmp_path: Path) -> None:
    shutil.copytree(base / "ws", tmp_path / "ws")
    models = tmp_path / "ws" / MODELS
    shutil.copytree(models / "conv", models / "conv.bak")
    net = str(base / "nets" / "resnet.onnx")
    ws = str(tmp_path / "ws")
    code, output = run_cli(["estimate", net, "-t", "analytic", "--partial", "--json", "-w", ws])
    assert code == 0, output
    assert any("conv.bak" in w for w in json.loads(output)["warnings"])


# -- plans: size and membership -----------------------------------------------------------------
def test_a_large_plan_is_counted_not_built(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_text(TEN_MILLION)
    started = time.perf_counter()
    code, output = run_cli(["sweep", str(tmp_path / "huge.yaml"), "-t", "cpu", "-w", str(tmp_path)])
    assert code == 2 and time.perf_counter() - started < 5
    assert "10,000,000 points (about" in " ".join(output.split())  # the time on the CPU


def test_an_edited_plan_keeps_only_its_new_members(tmp_path: Path) -> None:
    plan_file, ws = tmp_path / "p.yaml", str(tmp_path / "ws")
    plan_file.write_text(PLAN)
    assert run_cli(["sweep", str(plan_file), "-t", "analytic", "-w", ws])[0] == 0
    plan_file.write_text(PLAN.replace("start: 1, stop: 12", "start: 5, stop: 16"))
    assert run_cli(["sweep", str(plan_file), "-t", "analytic", "-w", ws])[0] == 0
    out = tmp_path / "small.csv"
    assert run_cli(["export", str(out), "--plan", "small", "-w", ws])[0] == 0
    exported = pd.read_csv(out)
    assert sorted(exported["out_channels"]) == list(range(5, 17))
    assert run_cli(["export", str(out), "-w", ws])[0] == 0
    assert len(pd.read_csv(out)) == 16  # the measurements themselves are all kept


# -- concurrent sweeps --------------------------------------------------------------------------
_WAIT_THEN_RUN = """
import os, pathlib, sys, time
from prmodel.cli import main
go = pathlib.Path(sys.argv[1])
pathlib.Path(f"{go}.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)
sys.argv = ["prmodel", *sys.argv[2:]]
main()
"""


def test_two_sweeps_on_one_store_measure_each_point_once(tmp_path: Path) -> None:
    plan_file, ws = tmp_path / "p.yaml", tmp_path / "ws"
    plan_file.write_text(PLAN.replace("stop: 12", "stop: 60"))
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    args = ["sweep", str(plan_file), "-t", "fake_targets.SlowTarget:delay_ms=25", "-w", str(ws)]
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", _WAIT_THEN_RUN, str(go), *args, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both start measuring now
    outputs = [process.communicate(timeout=120) for process in sweeps]
    assert all(process.returncode == 0 for process in sweeps), outputs
    reports = [json.loads(out)["plans"][0] for out, _ in outputs]
    measured = [report["measured"] for report in reports]
    assert sum(measured) == 60 and min(measured) > 0, reports  # shared, none twice
    assert all(r["measured"] + r["skipped"] == 60 for r in reports)
    with sqlite3.connect(ws / "sweeps" / "measurements.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 60
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_a_lapsed_or_orphaned_claim_is_taken_over(tmp_path: Path) -> None:
    layers = [layer.key for layer in _dense_layers(3, 0)]
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = f"{socket.gethostname()}:{gone.stdout.strip()}:x"
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        fp = "f" * 16
        claim = functools.partial(store.claim, "t", fp, alive=owner_alive)
        assert claim(layers[:1], owner="elsewhere:1:a", lease_s=60) == layers[:1]
        assert claim(layers[1:2], owner="elsewhere:2:b", lease_s=-1) == layers[1:2]
        assert claim(layers[2:], owner=dead, lease_s=60) == layers[2:]
        # live on another host: kept; lapsed: taken; a dead process of this host: taken
        assert claim(layers, owner="me:3:c", lease_s=60) == layers[1:]
        store.release_claims("elsewhere:1:a")
        assert claim(layers, owner="me:3:c", lease_s=60) == layers


# -- Ctrl-C during training ---------------------------------------------------------------------
def test_ctrl_c_during_training_is_one_line_and_exit_130(base: Path, tmp_path: Path) -> None:
    shutil.copytree(base / "ws", tmp_path / "ws")
    shutil.rmtree(tmp_path / "ws" / MODELS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-c", "from prmodel.cli import main; main()", "train"]
    command += ["-t", "analytic", "--kinds", "dense", "--trials", "5000", "--folds", "2"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*command, "--no-track", "-w", str(tmp_path / "ws")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        deadline = time.monotonic() + 60
        # The note on the missing PR file comes just before Optuna starts.
        while "no PR file" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()  # it ended before training
            time.sleep(0.05)
        time.sleep(1.0)  # well into the trials
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    output = log.read_text()
    assert process.returncode == 130, output
    assert "Traceback" not in output and "Trial" not in output
    assert output.strip().splitlines()[-1].startswith("interrupted")


# -- a read-only workspace ----------------------------------------------------------------------
_RUN_ALL = """
import json, sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from prmodel.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, sys.argv = StringIO(), ["prmodel", *args]
    with redirect_stdout(out), redirect_stderr(out):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results.append([code, out.getvalue()])
print(json.dumps(results))
"""


def _read_only_runner() -> list[str] | None:
    """The command prefix that runs a shell with ``$RO`` mounted read-only (None: cannot)."""
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
        if probe.returncode == 0:
            remount = 'mount --bind "$RO" "$RO" && mount -o remount,ro,bind "$RO" "$RO"'
            return ["unshare", "-rm", "sh", "-c", f'{remount} && exec "$@"', "sh"]
    if os.geteuid() != 0:
        return []  # chmod makes the folder read-only for a normal user
    return None


def test_a_read_only_workspace_is_read_and_never_written(base: Path, tmp_path: Path) -> None:
    prefix = _read_only_runner()
    if prefix is None:
        pytest.skip("no way to make a read-only folder here (root without user namespaces)")
    ro = tmp_path / "ro"
    shutil.copytree(base / "ws", ro)
    before = {p: p.read_bytes() for p in sorted(ro.rglob("*")) if p.is_file()}
    if not prefix:
        for path in [ro, *ro.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    net = str(base / "nets" / "vgg.onnx")
    reading = [
        ["show", "-w", str(ro)],
        ["show", "--check", "-w", str(ro)],
        ["export", str(tmp_path / "out.csv"), "-w", str(ro)],
        ["models", "-w", str(ro)],
        ["estimate", net, "-t", "analytic", "--partial", "-w", str(ro)],
    ]
    writing = [
        (
            ["estimate", net, "-t", "analytic", "--partial", "--csv", f"{ro}/k.csv", "-w", str(ro)],
            f"{ro}/k.csv",
        ),
        (["init", f"{ro}/new"], f"{ro}/new"),
        (
            [
                "plan",
                "--sampler",
                "random",
                "--budget",
                "3",
                "--kinds",
                "dense",
                "-t",
                "analytic",
                "-w",
                str(ro),
            ],
            str(ro),
        ),
        (["sweep", "conv_kernel", "-t", "analytic", "-w", str(ro)], "read-only"),
    ]
    commands = [*reading, *(args for args, _ in writing)]
    env = {**os.environ, "RO": str(ro), "COLUMNS": "400"}
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _RUN_ALL, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if not prefix:
        for path in [ro, *ro.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for args, (code, output) in zip(reading, results, strict=False):
        assert code == 0 and "Traceback" not in output, (args, output)
    for (args, words), (code, output) in zip(writing, results[len(reading) :], strict=True):
        assert code == 2 and "Traceback" not in output, (args, output)
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], (args, output)
    after = {p: p.read_bytes() for p in sorted(ro.rglob("*")) if p.is_file()}
    assert after == before  # nothing written: no WAL or shared-memory file, no new file


# -- a workspace path with % and ? --------------------------------------------------------------
def test_training_logs_to_mlflow_in_a_folder_named_with_percent_and_question_mark(
    base: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "pct%41ws?x"
    shutil.copytree(base / "ws", ws)
    train = ["train", "-t", "analytic", "--kinds", "dense", "--trials", "0", "--folds", "2"]
    code, output = run_cli([*train, "--json", "-w", str(ws)])
    assert code == 0, output
    uri = json.loads(output)["tracking_uri"]
    assert uri.endswith("/pct%2541ws%3Fx/mlflow.db")  # quoted: % and ? are not URI syntax
    assert (ws / "mlflow.db").is_file() and not (tmp_path / "pctAws").exists()
