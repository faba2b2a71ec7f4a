"""Tests of prmodel.zoo: the torch-free tiny networks and the exporter's error paths."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from prmodel.errors import PrmodelError
from prmodel.zoo import (
    REFERENCE_NETWORKS,
    TINY_NETWORKS,
    ZooError,
    export_all,
    export_network,
    tiny_mobilenet,
    tiny_resnet,
    tiny_vgg,
)

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _run(model: onnx.ModelProto, batch: int, size: int = 32) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    out: np.ndarray = session.run(None, {"input": x})[0]
    return out


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


@pytest.mark.parametrize("name", sorted(TINY_NETWORKS))
@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_network_checks_and_runs(name: str, batch: int) -> None:
    model = TINY_NETWORKS[name](batch=batch, classes=7)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    out = _run(model, batch)
    assert out.shape == (batch, 7)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(TINY_NETWORKS))
def test_tiny_network_has_static_shapes_after_inference(name: str) -> None:
    inferred = onnx.shape_inference.infer_shapes(TINY_NETWORKS[name](), strict_mode=True)
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims, value.name
        assert all(d.HasField("dim_value") for d in dims), value.name


@pytest.mark.parametrize("name", sorted(TINY_NETWORKS))
def test_dynamic_batch_names_the_axis(name: str) -> None:
    model = TINY_NETWORKS[name](dynamic_batch=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _run(model, 3).shape[0] == 3


@pytest.mark.parametrize("name", sorted(TINY_NETWORKS))
def test_same_seed_same_weights_other_seed_differs(name: str) -> None:
    build = TINY_NETWORKS[name]
    assert build(seed=1).SerializeToString() == build(seed=1).SerializeToString()
    assert build(seed=1).SerializeToString() != build(seed=2).SerializeToString()


def test_tiny_resnet_structure() -> None:
    model = tiny_resnet(width=8)
    ops = _ops(model)
    assert ops["Conv"] == 6  # stem, 2 + 2 block convs, 1x1 projection
    assert ops["BatchNormalization"] == 6
    assert ops["Add"] == 2
    assert ops["MaxPool"] == 1 and ops["GlobalAveragePool"] == 1 and ops["Gemm"] == 1
    # Every residual Add takes both operands from other nodes (as in a real network),
    # which is what lets ONNX Runtime fuse Conv + Add + Relu.
    produced = {out for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type == "Add":
            assert set(node.input) <= produced


def test_tiny_mobilenet_has_depthwise_and_hardswish() -> None:
    model = tiny_mobilenet(width=16)
    groups = [
        onnx.helper.get_attribute_value(a)
        for node in model.graph.node
        if node.op_type == "Conv"
        for a in node.attribute
        if a.name == "group"
    ]
    assert 16 in groups and 144 in groups  # depthwise over 16 and over 6 * 24 channels
    ops = _ops(model)
    assert ops["Clip"] >= 4 and ops["HardSwish"] == 1 and ops["Add"] == 1


def test_tiny_vgg_has_matmul_add_head_and_softmax() -> None:
    ops = _ops(tiny_vgg())
    assert ops["MatMul"] == 2 and ops["Add"] == 2
    assert ops["Softmax"] == 1 and ops["AveragePool"] == 1
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize(
    ("builder", "options"),
    [(tiny_resnet, {"batch": 0}), (tiny_resnet, {"size": 4}), (tiny_vgg, {"size": 36})],
)
def test_bad_tiny_options_raise_zoo_error(builder: object, options: dict[str, int]) -> None:
    with pytest.raises(ZooError):
        builder(**options)  # type: ignore[operator]


def test_zoo_error_is_a_prmodel_error() -> None:
    assert issubclass(ZooError, PrmodelError)


def test_reference_networks_are_unique_torchvision_names() -> None:
    assert len(set(REFERENCE_NETWORKS)) == len(REFERENCE_NETWORKS) >= 15
    assert {"resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"} <= set(REFERENCE_NETWORKS)


def test_unknown_network_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="unknown reference network 'alexnet9'"):
        export_network("alexnet9", tmp_path / "x.onnx")
    with pytest.raises(ZooError, match="unknown reference network"):
        export_all(tmp_path, names=["resnet18", "nope"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_missing_torch_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match=r"pip install torch==2\.14\.1 torchvision==0\.29\.1"):
        export_network("resnet18", tmp_path / "r.onnx")
    with pytest.raises(ZooError, match="install the zoo extra"):
        export_all(tmp_path)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch and torchvision (zoo extra)")
def test_export_squeezenet_with_torch(tmp_path: Path) -> None:
    result = export_network("squeezenet1_1", tmp_path / "sq.onnx", input_size=64)
    assert result.ok and result.nodes > 20 and result.op_counts.get("Conv", 0) == 26
    out = _run(onnx.load(result.path), 1, size=64)
    assert out.shape == (1, 1000)
