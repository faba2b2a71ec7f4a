"""Tests of prmodel.targets.onnxruntime.builder: valid single-layer models that compute right."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.special import erf

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets.onnxruntime.builder import (
    HELPER_PREFIX,
    OnnxBuildError,
    build_model,
    is_helper_node,
    make_inputs,
    residual_input_shape,
    save_model,
)

SHAPE = {"channels": 8, "height": 6, "width": 5}

LAYERS = {
    "conv": LayerConfig.create("conv", **SHAPE, out_channels=12, kernel=3, padding=1),
    "conv-strided-dilated": LayerConfig.create(
        "conv", **SHAPE, out_channels=4, kernel_h=3, kernel_w=2, stride=2, dilation=2, padding=2
    ),
    "conv-depthwise": LayerConfig.create(
        "conv", **SHAPE, out_channels=8, kernel=3, padding=1, groups=8
    ),
    "conv-grouped": LayerConfig.create("conv", **SHAPE, out_channels=6, kernel=1, groups=2),
    "conv-relu-add": LayerConfig.create(
        "conv", **SHAPE, out_channels=16, kernel=3, activation="relu", residual=True
    ),
    "conv-gelu-b2": LayerConfig.create(
        "conv", batch=2, **SHAPE, out_channels=5, kernel=1, activation="gelu"
    ),
    "dense": LayerConfig.create("dense", channels=20, out_channels=7),
    "dense-relu6-b3": LayerConfig.create(
        "dense", batch=3, channels=20, out_channels=7, activation="relu6"
    ),
    "dense-hardswish": LayerConfig.create(
        "dense", channels=20, out_channels=7, activation="hardswish"
    ),
    "dense-sigmoid": LayerConfig.create("dense", channels=20, out_channels=7, activation="sigmoid"),
    "maxpool": LayerConfig.create("maxpool", **SHAPE, kernel=3, stride=2, padding=1),
    "avgpool": LayerConfig.create("avgpool", **SHAPE, kernel=2, stride=1, padding=1),
    "globalavgpool": LayerConfig.create("globalavgpool", **SHAPE),
    "add": LayerConfig.create("add", **SHAPE),
    "mul": LayerConfig.create("mul", batch=2, **SHAPE),
    "relu": LayerConfig.create("relu", **SHAPE),
    "relu6": LayerConfig.create("relu6", **SHAPE),
    "sigmoid": LayerConfig.create("sigmoid", **SHAPE),
    "hardswish": LayerConfig.create("hardswish", **SHAPE),
    "gelu": LayerConfig.create("gelu", **SHAPE),
}

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def _session(model: onnx.ModelProto, level: str = "all", optimized: Path | None = None):
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _run(layer: LayerConfig, level: str = "all", opset: int = 17) -> np.ndarray:
    session = _session(build_model(layer, opset=opset), level)
    return np.asarray(session.run(["y"], make_inputs(layer))[0])


def _optimized_nodes(layer: LayerConfig, tmp_path: Path, level: str = "all", opset: int = 17):
    path = tmp_path / "optimized.onnx"
    _session(build_model(layer, opset=opset), level, optimized=path)
    return list(onnx.load(path).graph.node)


def test_every_kind_is_covered() -> None:
    assert {layer.kind for layer in LAYERS.values()} == set(LayerKind)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_model_is_valid_and_named(name: str) -> None:
    layer = LAYERS[name]
    model = build_model(layer)
    onnx.checker.check_model(model, full_check=True)
    inputs = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert inputs["x"] == list(layer.input_shape)
    assert set(inputs) == set(make_inputs(layer))
    assert [o.name for o in model.graph.output] == ["y"]
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == list(layer.output_shape)
    assert "layer" in {node.name for node in model.graph.node}
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)


@pytest.mark.parametrize("level", ["all", "disable"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_output_shape_in_onnxruntime(name: str, level: str) -> None:
    layer = LAYERS[name]
    output = _run(layer, level)
    assert output.shape == layer.output_shape
    assert np.isfinite(output).all()


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_optimization_does_not_change_results(name: str) -> None:
    layer = LAYERS[name]
    np.testing.assert_allclose(_run(layer, "all"), _run(layer, "disable"), rtol=1e-4, atol=1e-4)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


REFERENCES = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hardswish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "gelu": _gelu,
}


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("activation", sorted(REFERENCES))
def test_standalone_activations_compute_their_function(activation: str, opset: int) -> None:
    layer = LayerConfig.create(activation, **SHAPE)
    x = make_inputs(layer)["x"]
    expected = REFERENCES[activation](x.astype(np.float64))
    np.testing.assert_allclose(_run(layer, "disable", opset), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("kind", "op"), [("add", np.add), ("mul", np.multiply)])
def test_elementwise_take_two_inputs(kind: str, op: np.ufunc) -> None:
    layer = LayerConfig.create(kind, **SHAPE)
    inputs = make_inputs(layer)
    assert set(inputs) == {"x", "x2"}
    np.testing.assert_allclose(_run(layer), op(inputs["x"], inputs["x2"]), rtol=1e-6)


def test_dense_is_gemm_with_transposed_weights() -> None:
    layer = LAYERS["dense-relu6-b3"]
    model = build_model(layer)
    (gemm,) = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert {a.name: a.i for a in gemm.attribute}["transB"] == 1
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    x = make_inputs(layer)["x"]
    expected = np.clip(x @ weights["W"].T + weights["B"], 0, 6)
    np.testing.assert_allclose(_run(layer), expected, rtol=1e-4, atol=1e-5)


def test_avgpool_excludes_padding_like_torchvision() -> None:
    model = build_model(LAYERS["avgpool"])
    (pool,) = model.graph.node
    assert {a.name: a.i for a in pool.attribute}["count_include_pad"] == 0
    corner = _run(LAYERS["avgpool"])[0, :, 0, 0]
    np.testing.assert_allclose(corner, make_inputs(LAYERS["avgpool"])["x"][0, :, 0, 0], rtol=1e-6)


@pytest.mark.parametrize("level", ["all", "disable"])
def test_residual_adds_helper_output(level: str) -> None:
    layer = LayerConfig.create("conv", **SHAPE, out_channels=16, kernel=3, padding=1, residual=True)
    session = _session(build_model(layer), level)
    inputs = make_inputs(layer)
    assert inputs["residual_in"].shape == residual_input_shape(layer)
    conv = session.run(["y"], {**inputs, "residual_in": np.zeros_like(inputs["residual_in"])})[0]
    # The helper is a 1x1 conv of ones from one channel: it broadcasts residual_in.
    expected = conv + inputs["residual_in"]
    np.testing.assert_allclose(session.run(["y"], inputs)[0], expected, rtol=1e-4, atol=1e-4)
    helpers = [n.name for n in build_model(layer).graph.node if is_helper_node(n.name)]
    assert helpers == [f"{HELPER_PREFIX}residual"]


@pytest.mark.parametrize(("opset", "ops"), [(17, {"Div", "Erf", "Add", "Mul"}), (20, {"Gelu"})])
def test_gelu_form_depends_on_opset(opset: int, ops: set[str]) -> None:
    model = build_model(LAYERS["gelu"], opset=opset)
    assert {node.op_type for node in model.graph.node} == ops
    assert model.opset_import[0].version == opset


@pytest.mark.parametrize("opset", [10, 13, 99])
def test_opset_out_of_range_is_refused(opset: int) -> None:
    with pytest.raises(OnnxBuildError, match=f"opset {opset}"):
        build_model(LAYERS["relu"], opset=opset)


def test_weights_are_seeded_per_layer() -> None:
    def weights(layer: LayerConfig, seed: int = 0) -> np.ndarray:
        model = build_model(layer, seed=seed)
        return onnx.numpy_helper.to_array(model.graph.initializer[0])

    layer = LAYERS["dense"]
    np.testing.assert_array_equal(weights(layer), weights(layer))
    assert not np.array_equal(weights(layer), weights(layer, seed=1))
    assert not np.array_equal(weights(layer), weights(layer.with_params(batch=2)))
    np.testing.assert_array_equal(make_inputs(layer)["x"], make_inputs(layer)["x"])


def test_save_model_writes_a_loadable_file(tmp_path: Path) -> None:
    path = save_model(LAYERS["conv"], tmp_path / "nested" / "conv.onnx")
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.doc_string == LAYERS["conv"].label


# -- fusions ONNX Runtime applies at ORT_ENABLE_ALL (checked in the optimized graph) -------------
def _conv_nodes(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    return [n for n in nodes if n.op_type == "Conv" and not is_helper_node(n.name)]


def _activation(node: onnx.NodeProto) -> str | None:
    values = [a.s.decode() for a in node.attribute if a.name == "activation"]
    return values[0] if values else None


FUSED_CONVS: dict[str, tuple[dict[str, Any], str | None, int]] = {
    "relu": ({"activation": "relu"}, "Relu", 3),
    "relu6": ({"activation": "relu6"}, "Clip", 3),
    "add": ({"residual": True}, None, 4),
    "add-relu": ({"residual": True, "activation": "relu"}, "Relu", 4),
}


@pytest.mark.parametrize("out_channels", [16, 24, 5])
@pytest.mark.parametrize("case", sorted(FUSED_CONVS))
def test_conv_fuses_into_one_nchwc_kernel(case: str, out_channels: int, tmp_path: Path) -> None:
    params, activation, n_inputs = FUSED_CONVS[case]
    layer = LayerConfig.create(
        "conv", channels=16, height=7, width=7, out_channels=out_channels, kernel=3, **params
    )
    nodes = _optimized_nodes(layer, tmp_path)
    (conv,) = _conv_nodes(nodes)
    assert conv.domain == "com.microsoft.nchwc"
    assert _activation(conv) == activation
    assert len(conv.input) == n_inputs  # the 4th input is the fused Sum
    leftover = {n.op_type for n in nodes if not is_helper_node(n.name)} - {"Conv"}
    assert leftover <= {"ReorderInput", "ReorderOutput"}


def test_conv_add_is_not_fused_without_nchwc(tmp_path: Path) -> None:
    layer = LayerConfig.create(
        "conv", channels=16, height=7, width=7, out_channels=16, kernel=3, residual=True
    )
    ops = [n.op_type for n in _optimized_nodes(layer, tmp_path, "extended")]
    assert "Add" in ops and "ReorderInput" not in ops


def test_gemm_relu_fuses(tmp_path: Path) -> None:
    nodes = _optimized_nodes(
        LayerConfig.create("dense", channels=32, out_channels=16, activation="relu"), tmp_path
    )
    (gemm,) = nodes
    assert (gemm.domain, gemm.op_type, _activation(gemm)) == ("com.microsoft", "FusedGemm", "Relu")


@pytest.mark.parametrize(
    ("level", "ops"), [("all", ["Gelu"]), ("disable", ["Div", "Erf", "Add", "Mul", "Mul"])]
)
def test_erf_gelu_fuses_into_one_kernel(level: str, ops: list[str], tmp_path: Path) -> None:
    nodes = _optimized_nodes(LAYERS["gelu"], tmp_path, level)
    assert [n.op_type for n in nodes] == ops
