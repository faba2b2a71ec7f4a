"""Tests of prmodel.networks: reading, validating and shape-inferring ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from estimate_fixtures import small_model
from onnx import helper

from prmodel.errors import PrmodelError
from prmodel.networks import NetworkError, load_network, parse_input_shapes
from prmodel.zoo import tiny_resnet, tiny_vgg

# -- loading --------------------------------------------------------------------------------------


def test_load_network_infers_every_shape() -> None:
    network = load_network(tiny_resnet(size=32, width=16))
    assert network.input_shapes == {"input": (1, 3, 32, 32)}
    assert network.shapes["output"] == (1, 10)
    assert network.opset == 17
    for node in network.model.graph.node:
        assert all(out in network.shapes for out in node.output), node.name


def test_load_network_from_file_keeps_the_file_as_source(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    onnx.save(tiny_vgg(), path)
    network = load_network(path)
    assert network.name == "net"
    assert network.model_source() == str(path)


@pytest.mark.parametrize("given", [{"input": (2, 3, 32, 32)}, {"": (2, 3, 32, 32)}])
def test_dynamic_batch_takes_the_given_shape(given: dict[str, tuple[int, ...]]) -> None:
    network = load_network(tiny_resnet(dynamic_batch=True), input_shapes=given)
    assert network.input_shapes["input"] == (2, 3, 32, 32)
    assert network.shapes["output"] == (2, 10)
    assert isinstance(network.model_source(), bytes)


def test_unnamed_nodes_get_unique_names() -> None:
    relu = helper.make_node("Relu", ["x"], ["a"])
    sigmoid = helper.make_node("Sigmoid", ["a"], ["y"])
    network = load_network(small_model([relu, sigmoid], {"x": [1, 4]}, {"y": [1, 4]}))
    names = [n.name for n in network.model.graph.node]
    assert names == ["Relu_0", "Sigmoid_1"]


# -- bad input ------------------------------------------------------------------------------------


def _error(model: Any, **kwargs: Any) -> str:
    with pytest.raises(NetworkError) as info:
        load_network(model, **kwargs)
    assert isinstance(info.value, PrmodelError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file_is_named(tmp_path: Path) -> None:
    assert str(tmp_path / "nope.onnx") in _error(tmp_path / "nope.onnx")


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a model\n", b"\x08\x07\x12\x04abc", b""],
    ids=["text", "garbage", "empty"],
)
def test_non_onnx_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    message = _error(path)
    assert str(path) in message
    assert "ONNX" in message


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused(tmp_path: Path, fraction: float) -> None:
    data = tiny_resnet().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert str(path) in _error(path)


def test_dynamic_shape_without_input_shape_names_the_input() -> None:
    message = _error(tiny_resnet(dynamic_batch=True))
    assert "'input'" in message
    assert "dynamic" in message
    assert "--input-shape input=1x3x32x32" in message


def test_opset_older_than_11_is_refused() -> None:
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    message = _error(small_model([relu], {"x": [1, 4]}, {"y": [1, 4]}, opset=10))
    assert "opset 10" in message
    assert "11" in message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"image": (1, 3, 32, 32)}, "no input named 'image'"),
        ({"input": (1, 3, 32)}, "has 3 dimensions"),
        ({"input": (1, 4, 32, 32)}, "cannot change"),
    ],
)
def test_bad_input_shapes_are_refused(given: dict[str, tuple[int, ...]], expected: str) -> None:
    model = tiny_resnet() if expected == "cannot change" else tiny_resnet(dynamic_batch=True)
    assert expected in _error(model, input_shapes=given)


def test_invalid_model_is_refused() -> None:
    relu = helper.make_node("Relu", ["missing"], ["y"], name="relu")
    message = _error(small_model([relu], {"x": [1, 4]}, {"y": [1, 4]}))
    assert "not a valid ONNX model" in message


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["input=1x3x224x224"], {"input": (1, 3, 224, 224)}),
        (["2x3x8x8"], {"": (2, 3, 8, 8)}),
        (["a=1x4", "b=1,8"], {"a": (1, 4), "b": (1, 8)}),
    ],
)
def test_parse_input_shapes(specs: list[str], expected: dict[str, tuple[int, ...]]) -> None:
    assert parse_input_shapes(specs) == expected


@pytest.mark.parametrize("spec", ["input=", "input=1xax3", "x=0x3", "=-1"])
def test_parse_input_shapes_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(NetworkError, match="input shape"):
        parse_input_shapes([spec])
