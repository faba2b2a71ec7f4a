"""Tests of the estimate and calibrate commands (prmodel/cli/_estimate.py)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

from prmodel.cli import _common, _estimate, main
from prmodel.estimate.calibration import BandwidthFit, Calibration, NetworkFit
from prmodel.layers import LayerConfig, LayerKind
from prmodel.networks import NetworkMeasureSettings
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.train.artifacts import save_model
from prmodel.train.model import LatencyModel
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg

CPU_ID = OnnxRuntimeTarget().target_id
ANALYTIC_ID = AnalyticTarget().target_id


def _training_layers(kind: LayerKind, rng: np.random.Generator) -> list[LayerConfig]:
    layers = []
    for _ in range(40):
        channels, size = int(rng.integers(1, 256)), int(rng.integers(4, 64))
        if kind is LayerKind.CONV:
            layer = LayerConfig.create(
                kind,
                channels=channels,
                height=size,
                width=size,
                out_channels=int(rng.integers(1, 256)),
                kernel=3,
                padding=1,
            )
        elif kind is LayerKind.DENSE:
            layer = LayerConfig.create(
                kind, channels=channels * 4, out_channels=int(rng.integers(1, 512))
            )
        elif kind is LayerKind.MAXPOOL:
            layer = LayerConfig.create(
                kind, channels=channels, height=size, width=size, kernel=3, stride=2, padding=1
            )
        else:
            layer = LayerConfig.create(kind, channels=channels, height=size, width=size)
        layers.append(layer)
    return layers


def _save_models(workspace: Workspace, target_id: str, kinds: Sequence[LayerKind]) -> None:
    """Ridge models fitted on the analytic target's latencies (fast; accuracy is not tested)."""
    rng = np.random.default_rng(0)
    analytic = AnalyticTarget()
    for kind in kinds:
        layers = _training_layers(kind, rng)
        model = LatencyModel(kind, regressor="ridge")
        model.fit(layers, [analytic.latency_us(layer) for layer in layers])
        save_model(
            model,
            workspace.model_dir(target_id, kind.value),
            target_id=target_id,
            fingerprint_hash="0",
        )


KINDS = (
    LayerKind.CONV,
    LayerKind.DENSE,
    LayerKind.MAXPOOL,
    LayerKind.AVGPOOL,
    LayerKind.GLOBALAVGPOOL,
    LayerKind.RELU,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with models for the analytic and the cpu target, and tiny networks."""
    workspace = Workspace.at(tmp_path_factory.mktemp("ws")).create()
    for target_id in (ANALYTIC_ID, CPU_ID):
        _save_models(workspace, target_id, KINDS)
    for build in (tiny_resnet, tiny_mobilenet, tiny_vgg):
        onnx.save(build(), workspace.root / f"{build.__name__}.onnx")
    onnx.save(tiny_resnet(dynamic_batch=True), workspace.root / "dynamic.onnx")
    return workspace


def _run(
    args: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prmodel", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, "".join(err.split())  # rich wraps long messages: compare without spaces


def test_estimate_prints_a_table_and_the_total(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained.root / "tiny_vgg.onnx"
    code, out, _ = _run(
        ["estimate", str(model), "-t", "analytic", "-w", str(trained.root)], monkeypatch, capsys
    )
    assert code == 0
    assert "tiny_vgg on analytic-b16-l8" in out
    assert "estimated latency" in out and "plain sum" in out
    assert "unmodelled kernels" in out
    assert "Softmax" in out
    assert "1 free kernels" in out


def test_estimate_json_and_csv(
    trained: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    model, csv = trained.root / "tiny_resnet.onnx", tmp_path / "out" / "kernels.csv"
    args = ["estimate", str(model), "-t", "analytic", "-w", str(trained.root), "--json"]
    code, out, _ = _run([*args, "--csv", str(csv)], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    assert data["target_id"] == ANALYTIC_ID and not data["calibrated"]
    assert data["total_us"] == pytest.approx(sum(k["predicted_us"] for k in data["kernels"]))
    table = pd.read_csv(csv)
    assert list(table["node"]) == [k["node"] for k in data["kernels"]]
    assert (table["kind"] == "conv").sum() == 6


def test_estimate_with_input_shape_for_a_dynamic_model(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained.root / "dynamic.onnx"
    args = ["estimate", str(model), "-t", "analytic", "-w", str(trained.root), "--json"]
    code, out, _ = _run([*args, "--input-shape", "input=4x3x32x32"], monkeypatch, capsys)
    assert code == 0
    batches = {k["batch"] for k in json.loads(out)["kernels"] if k["batch"] is not None}
    assert batches == {4}


def _bad_inputs(root: Path) -> dict[str, tuple[Path, list[str], str]]:
    text = root / "notes.onnx"
    text.write_text("not a model\n")
    cut = root / "cut.onnx"
    data = tiny_resnet().SerializeToString()
    cut.write_bytes(data[: len(data) // 2])
    return {
        "non-onnx": (text, [], "is not a readable ONNX model"),
        "truncated": (cut, [], "is not a readable ONNX model"),
        "dynamic": (root / "dynamic.onnx", [], "has a dynamic shape"),
        "missing": (root / "absent.onnx", [], "does not exist"),
        "bad-shape": (root / "dynamic.onnx", ["--input-shape", "input=1x3"], "has 2 dimensions"),
    }


@pytest.mark.parametrize("case", ["non-onnx", "truncated", "dynamic", "missing", "bad-shape"])
def test_bad_input_is_one_clear_error_without_traceback(
    case: str,
    trained: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path, extra, expected = _bad_inputs(tmp_path)[case]
    if case in ("dynamic", "bad-shape"):
        path = trained.root / "dynamic.onnx"
    args = ["estimate", str(path), "-t", "analytic", "-w", str(trained.root), *extra]
    code, _, err = _run(args, monkeypatch, capsys)
    assert code == 2
    assert expected.replace(" ", "") in err
    assert path.name in err
    assert "Traceback" not in err


def test_estimate_without_trained_models_says_how_to_train(
    trained: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    empty = Workspace.at(tmp_path / "empty").create()
    model = trained.root / "tiny_vgg.onnx"
    args = ["estimate", str(model), "-t", "analytic", "-w", str(empty.root)]
    code, _, err = _run(args, monkeypatch, capsys)
    assert code == 2
    assert "notrainedmodels" in err and "prmodeltrain" in err


def test_estimate_measure_compares_per_kernel(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained.root / "tiny_resnet.onnx"
    args = ["estimate", str(model), "-t", "cpu", "-w", str(trained.root), "--measure"]
    code, out, _ = _run([*args, "--rounds", "1", "--json"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    assert data["measured"]["total_us"] > 0
    assert np.isfinite(data["total_error_pct"])
    assert data["unmatched_kernels"] == []
    assert all(k["measured_us"] is not None for k in data["kernels"])
    code, out, _ = _run([*args, "--rounds", "1"], monkeypatch, capsys)
    assert code == 0 and "measured latency" in out and "total error" in out


def test_calibrate_saves_a_calibration_that_estimate_uses(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cpu models here learned the analytic target, so their sums may be far off the real
    # CPU; this test is about the wiring, the 3x rule has its own tests (test_estimator.py).
    monkeypatch.setattr("prmodel.estimate.calibration.MAX_SUM_RATIO", 1e9)
    networks = [str(trained.root / f"{n}.onnx") for n in ("tiny_resnet", "tiny_mobilenet")]
    args = ["calibrate", *networks, "-t", "cpu", "-w", str(trained.root), "--rounds", "1"]
    code, out, _ = _run([*args, "--json"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    path = trained.models_dir / CPU_ID / "calibration.json"
    assert Path(data["path"]) == path and path.is_file()
    assert [n["name"] for n in data["networks"]] == ["tiny_resnet", "tiny_mobilenet"]
    estimate = ["estimate", networks[0], "-t", "cpu", "-w", str(trained.root), "--json"]
    code, out, _ = _run(estimate, monkeypatch, capsys)
    assert code == 0
    assert json.loads(out)["calibrated"]
    path.unlink()  # later tests expect the plain sum


def test_calibrate_refuses_a_target_that_cannot_run_networks(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(trained.root / "tiny_vgg.onnx")
    args = ["calibrate", model, "-t", "analytic", "-w", str(trained.root), "--rounds", "1"]
    code, _, err = _run(args, monkeypatch, capsys)
    assert code == 2
    assert "cannotrunwholenetworks" in err


def test_estimate_does_not_import_mlflow_or_optuna(trained: Workspace) -> None:
    model = trained.root / "tiny_mobilenet.onnx"
    script = (
        "import sys\n"
        "from prmodel.cli import main\n"
        f"sys.argv = ['prmodel', 'estimate', {str(model)!r}, '-t', 'cpu', "
        f"'-w', {str(trained.root)!r}, '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('mlflow', 'optuna') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr
    assert json.loads(result.stdout)["network"] == "tiny_mobilenet"


def _conv_transpose_file(root: Path) -> Path:
    weight = numpy_helper.from_array(np.ones((8, 4, 2, 2), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("ConvTranspose", ["x", "w"], ["d"], name="up", strides=[2, 2]),
            helper.make_node("Relu", ["d"], ["y"], name="relu"),
        ],
        "decoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = root / "decoder.onnx"
    onnx.save(model, path)
    return path


def test_an_unmappable_op_is_refused_unless_allowed(
    trained: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = _conv_transpose_file(tmp_path)
    args = ["estimate", str(path), "-t", "analytic", "-w", str(trained.root)]
    code, _, err = _run(args, monkeypatch, capsys)
    assert code == 2
    assert "node'up'(ConvTranspose)" in err and "decoder.onnx" in err
    code, _, err = _run([*args, "--allow-unmapped"], monkeypatch, capsys)
    assert code == 2  # nothing prices it: only a partial estimate, asked for, is given
    assert "nomodelforopConvTranspose" in err  # _run drops whitespace
    code, out, _ = _run([*args, "--allow-unmapped", "--partial", "--json"], monkeypatch, capsys)
    assert code == 0
    rows = {k["op"]: k for k in json.loads(out)["kernels"]}
    assert rows["ConvTranspose"]["status"] == "unmodelled"
    assert rows["ConvTranspose"]["source"] == "unpriced"
    assert rows["Relu"]["status"] == "modelled"


@pytest.mark.parametrize("command", ["estimate", "calibrate"])
def test_help_shows_an_example(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run([command, "--help"], monkeypatch, capsys)
    assert code == 0
    assert f"Example: prmodel {command}" in out


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_estimate_table_fits_80_columns_with_readable_times(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_common.console, "width", 80)
    model = trained.root / "tiny_mobilenet.onnx"
    code, out, _ = _run(
        ["estimate", str(model), "-t", "analytic", "-w", str(trained.root)], monkeypatch, capsys
    )
    assert code == 0
    assert max(len(line) for line in _lines(out)) <= 80
    assert "e+" not in out
    assert re.search(r"estimated latency: [\d.,]+ (µs|ms)", out)
    assert re.search(r"\d\.\d\d µs|\d+\.\d µs|\d{3} µs", out)  # 3 significant digits + unit


def test_calibration_table_fits_80_columns_in_ms_with_whole_network_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(_estimate, "console", Console(file=out, width=80))
    networks = tuple(
        NetworkFit(name, measured, measured * 1.2, 0.0, measured * 0.99, measured * 1.03)
        for name, measured in (
            ("mobilenet_v3_large_x0_75_256", 2967.3),
            ("resnet50_128_b2", 152_345.6),
            ("shufflenet_v2_x0_5", 812.4),
        )
    )
    fit = BandwidthFit(op="Concat", samples=16, fixed_us=0.173, us_per_mb=0.0012, mape=13.34)
    calibration = Calibration(target_id=CPU_ID, networks=networks, unmodelled=(fit,), loo_mape=2.5)
    _estimate._print_calibration(calibration, NetworkMeasureSettings(rounds=10))
    text = out.getvalue()
    assert max(len(line) for line in _lines(text)) <= 80
    for name in ("mobilenet_v3_large_x0_75_256", "resnet50_128_b2", "shufflenet_v2_x0_5"):
        assert name in text
    assert "2.97 ms" in text and "152 ms" in text and "812 µs" in text
    assert "+20.0" in text and "-1.0" in text and "+3.0" in text
    assert "e+" not in text and "…" not in text
