"""Tests of prmodel.estimate.kernels: ONNX networks mapped to the kernels a runtime runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import pytest
from estimate_fixtures import off_block_width, small_model
from onnx import TensorProto, helper

from prmodel.estimate.kernels import EstimateError, Kernel, network_kernels
from prmodel.layers import LayerKind
from prmodel.networks import load_network
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg

CPU_ALL = OnnxRuntimeTarget(opt_level="all")
CPU_EXTENDED = OnnxRuntimeTarget(opt_level="extended")


# -- small graphs built here --------------------------------------------------------------------


def _weight(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.1, shape)


def _conv_model(**attrs: Any) -> onnx.ModelProto:
    """One 3x3 conv 8->16 on 1x8x15x15 with the given attributes."""
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)
    out: list[int | str] = ["n", 16, "h", "w"]
    return small_model([conv], {"x": [1, 8, 15, 15]}, {"y": out}, {"w": _weight(16, 8, 3, 3)})


def _by_status(kernels: Sequence[Kernel], status: str) -> list[Kernel]:
    return [k for k in kernels if k.status == status]


def _layers(kernels: Sequence[Kernel], kind: LayerKind) -> list[Any]:
    return [k.layer for k in kernels if k.layer is not None and k.layer.kind is kind]


# -- kernels as ONNX Runtime runs them ------------------------------------------------------------


def test_nchwc_block_size_is_a_power_of_two() -> None:
    block = CPU_ALL.nchwc_block()
    assert block in (1, 4, 8, 16, 32)


def test_ort_fuses_conv_relu_and_the_residual_add_into_one_kernel() -> None:
    kernels = network_kernels(load_network(tiny_resnet()), CPU_ALL).kernels
    ops = [k.op.rpartition(".")[2] for k in kernels]
    # batch-norm folded, every Relu and the residual Add absorbed by convs
    assert not {"BatchNormalization", "Relu", "Add"} & set(ops)
    convs = _layers(kernels, LayerKind.CONV)
    assert len(convs) == 6
    assert sum(c.residual for c in convs) == 2
    assert all(c.activation == "relu" for c in convs if c.residual)
    fused = [k.fused_ops for k in kernels if k.layer is not None and k.layer.residual]
    assert all(f == ("Conv", "Add", "Relu") for f in fused)


def test_ort_extended_fuses_conv_relu_but_not_the_sum() -> None:
    kernels = network_kernels(load_network(tiny_resnet()), CPU_EXTENDED).kernels
    assert [k.op for k in kernels].count("Add") == 2
    convs = _layers(kernels, LayerKind.CONV)
    assert not any(c.residual for c in convs)
    assert sum(c.activation == "relu" for c in convs) == 3
    assert _layers(kernels, LayerKind.ADD) and _layers(kernels, LayerKind.RELU)


def test_nchwc_kernels_use_padded_channels_and_the_stem_keeps_its_input() -> None:
    block = CPU_ALL.nchwc_block()
    width = off_block_width(CPU_ALL)
    kernels = network_kernels(load_network(tiny_mobilenet(width=width)), CPU_ALL).kernels
    convs = [k for k in kernels if k.op == "nchwc.Conv"]
    assert convs, "expected NCHWc convs at opt=all"
    assert convs[0].layer is not None and convs[0].layer.channels == 3
    for kernel in convs:
        assert kernel.layer is not None
        assert kernel.layer.out_channels % block == 0, kernel.layer.label
    depthwise = [c.layer for c in convs if c.layer is not None and c.layer.groups > 1]
    assert depthwise and all(d.groups == d.channels == d.out_channels for d in depthwise)
    assert any(k.op.endswith("ReorderOutput") for k in kernels)


def test_ort_relu6_and_hardswish_are_fused_activations() -> None:
    kernels = network_kernels(load_network(tiny_mobilenet()), CPU_ALL).kernels
    activations = {c.activation for c in _layers(kernels, LayerKind.CONV)}
    assert {"relu6", "hardswish"} <= activations
    assert "Clip" not in [k.op for k in kernels]


def test_ort_maps_matmul_add_to_dense_and_lists_softmax_unmapped() -> None:
    kernels = network_kernels(load_network(tiny_vgg(width=8)), CPU_ALL).kernels
    dense = _layers(kernels, LayerKind.DENSE)
    assert [(d.channels, d.out_channels) for d in dense] == [(16 * 16, 32), (32, 10)]
    assert dense[0].activation == "relu"
    softmax = [k for k in kernels if k.op == "Softmax"]
    assert len(softmax) == 1 and softmax[0].status == "unmapped"
    assert softmax[0].bytes_moved == 2 * 10 * 4
    assert all(k.op == "Flatten" for k in _by_status(kernels, "free"))


def test_layout_reorders_are_unmapped_with_their_traffic() -> None:
    model = tiny_mobilenet(width=off_block_width(CPU_ALL))
    kernels = network_kernels(load_network(model), CPU_ALL).kernels
    reorders = [k for k in kernels if "Reorder" in k.op]
    assert reorders
    for kernel in reorders:
        assert kernel.status == "unmapped"
        assert kernel.note == "layout reorder"
        assert kernel.bytes_moved > 0


# -- kernels of the exported graph (non-ORT targets) ----------------------------------------------


def test_exported_graph_fusion_conv_bn_relu_and_residual_add(
    analytic_target: AnalyticTarget,
) -> None:
    kernels = network_kernels(load_network(tiny_resnet()), analytic_target).kernels
    assert kernels and all(k.op != "BatchNormalization" for k in kernels)
    assert [k.op for k in kernels].count("Relu") == 0
    residual = [k for k in kernels if k.layer is not None and k.layer.residual]
    assert [k.fused_ops for k in residual] == [
        ("Conv", "BatchNormalization", "Add", "Relu"),
        ("Conv", "BatchNormalization", "Add", "Relu"),
    ]
    projection = [k for k in kernels if k.fused_ops == ("Conv", "BatchNormalization")]
    assert len(projection) == 1  # the 1x1 shortcut conv feeds the Add, it is not fused into it


def test_exported_graph_matmul_add_relu_is_one_dense_kernel(
    analytic_target: AnalyticTarget,
) -> None:
    kernels = network_kernels(load_network(tiny_vgg()), analytic_target).kernels
    dense = [k for k in kernels if k.layer is not None and k.layer.kind is LayerKind.DENSE]
    assert [k.fused_ops for k in dense] == [("MatMul", "Add", "Relu"), ("MatMul", "Add")]
    assert dense[0].layer is not None and dense[0].layer.activation == "relu"


def test_a_conv_output_used_twice_is_not_fused(analytic_target: AnalyticTarget) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["c", "r"], ["y"], name="add"),
    ]
    model = small_model(nodes, {"x": [1, 4, 8, 8]}, {"y": [1, 4, 8, 8]}, {"w": _weight(4, 4, 3, 3)})
    kernels = network_kernels(load_network(model), analytic_target).kernels
    assert [k.fused_ops for k in kernels] == [("Conv",), ("Relu",), ("Add",)]


# -- mapping details ------------------------------------------------------------------------------


def test_a_per_channel_scale_is_priced_as_a_unary_op(analytic_target: AnalyticTarget) -> None:
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["m"], name="scale"),
        helper.make_node("Add", ["m", "x"], ["y"], name="add"),
    ]
    weights = {"scale": _weight(1, 4, 1, 1)}
    model = small_model(nodes, {"x": [1, 4, 8, 8]}, {"y": [1, 4, 8, 8]}, weights)
    scale, add = network_kernels(load_network(model), analytic_target).kernels
    assert scale.layer is not None and scale.layer.kind is LayerKind.RELU
    assert scale.note == "Mul of a broadcast operand as relu"
    assert add.layer is not None and add.layer.kind is LayerKind.ADD and not add.note


@pytest.mark.parametrize("target", [CPU_EXTENDED, AnalyticTarget()], ids=["ort", "analytic"])
def test_conv1d_maps_to_a_conv_over_one_row(target: Any) -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv1d", strides=[2], pads=[2, 2])
    model = small_model([conv], {"x": [1, 8, 100]}, {"y": [1, 16, 50]}, {"w": _weight(16, 8, 5)})
    (kernel,) = network_kernels(load_network(model), target).kernels
    layer = kernel.layer
    assert layer is not None
    assert (layer.height, layer.width, layer.kernel_h, layer.kernel_w) == (1, 100, 1, 5)
    assert (layer.stride_h, layer.stride_w, layer.pad_h, layer.pad_w) == (1, 2, 0, 2)
    assert layer.output_shape == (1, 16, 1, 50)


@pytest.mark.parametrize(
    ("attrs", "pad", "note"),
    [
        ({"pads": [1, 1, 1, 1]}, 1, ""),
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 1, ""),
        ({"pads": [0, 0, 2, 2]}, 1, "pads 0/2 as 1"),
        ({"auto_pad": "VALID"}, 0, ""),
    ],
)
def test_conv_padding_becomes_symmetric_with_the_same_output(
    analytic_target: AnalyticTarget, attrs: dict[str, Any], pad: int, note: str
) -> None:
    network = load_network(_conv_model(**attrs))
    (kernel,) = network_kernels(network, analytic_target).kernels
    assert kernel.layer is not None
    assert kernel.layer.pad_h == kernel.layer.pad_w == pad
    assert kernel.layer.output_shape == network.shapes["y"]
    assert (note in kernel.note) if note else kernel.note == ""


def test_reduce_mean_over_height_and_width_is_a_global_avgpool(
    analytic_target: AnalyticTarget,
) -> None:
    mean = helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[2, 3], keepdims=1)
    model = small_model([mean], {"x": [1, 32, 7, 7]}, {"y": [1, 32, 1, 1]})
    (kernel,) = network_kernels(load_network(model), analytic_target).kernels
    assert kernel.layer is not None and kernel.layer.kind is LayerKind.GLOBALAVGPOOL


@pytest.mark.parametrize(
    ("op", "kind", "note"),
    [
        ("Sub", LayerKind.ADD, "Sub as add"),
        ("Div", LayerKind.MUL, "Div as mul"),
        ("Mul", LayerKind.MUL, ""),
    ],
)
def test_binary_elementwise_ops_map_to_add_or_mul(
    analytic_target: AnalyticTarget, op: str, kind: LayerKind, note: str
) -> None:
    node = helper.make_node(op, ["a", "b"], ["y"], name="op")
    model = small_model([node], {"a": [1, 8, 4, 4], "b": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]})
    (kernel,) = network_kernels(load_network(model), analytic_target).kernels
    assert kernel.layer is not None and kernel.layer.kind is kind
    assert kernel.layer.input_shape == (1, 8, 4, 4)
    assert kernel.note == note


def test_concat_is_unmapped_with_bytes_moved(analytic_target: AnalyticTarget) -> None:
    concat = helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=1)
    model = small_model([concat], {"a": [1, 8, 4, 4], "b": [1, 8, 4, 4]}, {"y": [1, 16, 4, 4]})
    (kernel,) = network_kernels(load_network(model), analytic_target).kernels
    assert kernel.status == "unmapped"
    assert kernel.bytes_moved == (2 * 128 + 256) * 4
    assert not kernel.compute_bound


def _conv_transpose_model() -> onnx.ModelProto:
    deconv = helper.make_node("ConvTranspose", ["x", "w"], ["d"], name="up", strides=[2, 2])
    relu = helper.make_node("Relu", ["d"], ["y"], name="relu")
    weights = {"w": _weight(8, 4, 2, 2)}
    return small_model([deconv, relu], {"x": [1, 8, 8, 8]}, {"y": [1, 4, 16, 16]}, weights)


@pytest.mark.parametrize("target", [CPU_ALL, AnalyticTarget()], ids=["ort", "analytic"])
def test_an_op_that_cannot_be_mapped_is_refused_naming_node_and_op(target: Any) -> None:
    with pytest.raises(EstimateError) as info:
        network_kernels(load_network(_conv_transpose_model()), target)
    message = str(info.value)
    assert "'up'" in message and "ConvTranspose" in message and "--allow-unmapped" in message


def test_allow_unmapped_lists_the_op_as_compute_bound() -> None:
    kernels = network_kernels(
        load_network(_conv_transpose_model()), AnalyticTarget(), strict=False
    ).kernels
    assert [(k.op, k.status, k.compute_bound) for k in kernels] == [
        ("ConvTranspose", "unmapped", True),
        ("Relu", "layer", False),
    ]


def test_ort_load_failure_is_an_estimate_error() -> None:
    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery", domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    model.ir_version = 8
    network = load_network(model)
    with pytest.raises(EstimateError, match="ONNX Runtime cannot load"):
        network_kernels(network, CPU_ALL)
