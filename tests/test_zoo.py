"""Tests of prmodel.zoo: the torch-free architectures and sets, the tiny networks, and the
exporter's error paths."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from prmodel import zoo
from prmodel.errors import PrmodelError
from prmodel.estimate.kernels import network_kernels
from prmodel.layers import LayerKind
from prmodel.networks import load_network
from prmodel.targets.analytic import AnalyticTarget
from prmodel.zoo import (
    REFERENCE_NETWORKS,
    TINY_NETWORKS,
    GraphBuilder,
    NetworkSpec,
    ZooError,
    export_all,
    export_network,
    tiny_mobilenet,
    tiny_resnet,
    tiny_vgg,
)
from prmodel.zoo.builder import SKELETON_MIN_ELEMENTS, conv_output_size, make_divisible
from prmodel.zoo.modern import REGNET_Y, regnet_stages

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


# -- torch-free architectures -------------------------------------------------------------------

SMALL_VARIANTS: dict[str, tuple[Callable[..., onnx.ModelProto], dict[str, Any]]] = {
    "resnet18": (zoo.resnet, {"depth": 18, "width": 0.25}),
    "resnet50": (zoo.resnet, {"depth": 50, "width": 0.25}),
    "vgg11": (zoo.vgg, {"depth": 11, "width": 0.125, "hidden": 32}),
    "squeezenet1_0": (zoo.squeezenet, {"version": "1_0", "size": 48}),
    "squeezenet1_1": (zoo.squeezenet, {"version": "1_1"}),
    "densenet121": (zoo.densenet, {"depth": 121, "growth": 4}),
    "googlenet": (zoo.googlenet, {}),
    "mobilenet_v2": (zoo.mobilenet_v2, {"width": 0.25}),
    "mobilenet_v3_large": (zoo.mobilenet_v3, {"variant": "large", "width": 0.25}),
    "mobilenet_v3_small": (zoo.mobilenet_v3, {"variant": "small", "width": 0.25}),
    "efficientnet_b0": (zoo.efficientnet, {"variant": "b0", "width": 0.25}),
    "mnasnet": (zoo.mnasnet, {"width": 0.25}),
    "shufflenet_v2": (zoo.shufflenet_v2, {"width": 0.5}),
    "regnet_y": (zoo.regnet_y, {"variant": "400mf", "width": 0.25}),
    "convnext": (zoo.convnext, {"depths": (1, 1, 2, 1), "dims": (8, 16, 32, 64)}),
}
"""A small, quick variant of every architecture (32 px unless given, 10 classes)."""


def _small(name: str, **options: Any) -> onnx.ModelProto:
    builder, kwargs = SMALL_VARIANTS[name]
    return builder(**{"size": 32, "classes": 10, **kwargs, **options})


@pytest.mark.parametrize("name", sorted(SMALL_VARIANTS))
def test_architecture_checks_and_runs_in_onnx_runtime(name: str) -> None:
    model = _small(name, batch=2)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17 and model.ir_version == zoo.IR_VERSION
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    out = _run(model, 2, size=size)
    assert out.shape == (2, 10)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "shufflenet_v2", "convnext"])
def test_architecture_weights_are_seeded(name: str) -> None:
    assert _small(name, seed=1).SerializeToString() == _small(name, seed=1).SerializeToString()
    assert _small(name, seed=1).SerializeToString() != _small(name, seed=2).SerializeToString()


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v3_large", "convnext"])
def test_skeleton_is_the_same_graph_without_weight_data(name: str) -> None:
    full, skeleton = _small(name), _small(name, weights=False)
    assert list(full.graph.node) == list(skeleton.graph.node)
    dims = [(t.name, list(t.dims)) for t in full.graph.initializer]
    assert dims == [(t.name, list(t.dims)) for t in skeleton.graph.initializer]
    large = [math.prod(t.dims) >= SKELETON_MIN_ELEMENTS for t in skeleton.graph.initializer]
    assert any(large)
    for tensor, is_large in zip(skeleton.graph.initializer, large, strict=True):
        assert bool(tensor.raw_data) is not is_large, tensor.name
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        assert external is is_large, tensor.name


EXPORTED_OPS: dict[str, dict[str, int]] = {
    "resnet18": {"Add": 8, "Conv": 20, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1,
                 "MaxPool": 1, "Relu": 17},
    "resnet50": {"Add": 16, "Conv": 53, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1,
                 "MaxPool": 1, "Relu": 49},
    "mobilenet_v2": {"Add": 10, "Clip": 35, "Conv": 52, "Flatten": 1, "Gemm": 1,
                     "GlobalAveragePool": 1},
    "mobilenet_v3_small": {"Add": 6, "Conv": 52, "Flatten": 1, "Gemm": 2,
                           "GlobalAveragePool": 10, "HardSigmoid": 9, "HardSwish": 19,
                           "Mul": 9, "Relu": 14},
    "mobilenet_v3_large": {"Add": 10, "Conv": 62, "Flatten": 1, "Gemm": 2,
                           "GlobalAveragePool": 9, "HardSigmoid": 8, "HardSwish": 21,
                           "Mul": 8, "Relu": 19},
    "efficientnet_b0": {"Add": 9, "Conv": 81, "Flatten": 1, "Gemm": 1,
                        "GlobalAveragePool": 17, "Mul": 65, "Sigmoid": 65},
    "vgg11": {"AveragePool": 1, "Conv": 8, "Flatten": 1, "Gemm": 3, "MaxPool": 5, "Relu": 10},
    "vgg16": {"AveragePool": 1, "Conv": 13, "Flatten": 1, "Gemm": 3, "MaxPool": 5, "Relu": 15},
    "squeezenet1_1": {"Concat": 8, "Conv": 26, "Flatten": 1, "GlobalAveragePool": 1,
                      "MaxPool": 3, "Relu": 26},
    # the export computes the channel split's bounds with Shape, Gather, Div, Mul and Add
    # nodes that ONNX Runtime folds away; here they are constants
    "shufflenet_v2_x1_0": {"Concat": 16, "Conv": 56, "Gemm": 1, "MaxPool": 1,
                           "ReduceMean": 1, "Relu": 37, "Reshape": 32, "Slice": 26,
                           "Transpose": 16},
    "densenet121": {"AveragePool": 3, "BatchNormalization": 62, "Concat": 62, "Conv": 120,
                    "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1, "MaxPool": 1,
                    "Relu": 121},
    "googlenet": {"Concat": 9, "Conv": 57, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1,
                  "MaxPool": 13, "Relu": 57},
    "regnet_y_400mf": {"Add": 16, "Conv": 85, "Flatten": 1, "Gemm": 1,
                       "GlobalAveragePool": 17, "Mul": 16, "Relu": 65, "Sigmoid": 16},
    "mnasnet1_0": {"Add": 10, "Conv": 52, "Gemm": 1, "ReduceMean": 1, "Relu": 35},
    "convnext_tiny": {"Add": 72, "Conv": 22, "Div": 18, "Erf": 18, "Flatten": 1, "Gemm": 1,
                      "GlobalAveragePool": 1, "LayerNormalization": 23, "MatMul": 36,
                      "Mul": 54, "Transpose": 46},
}  # fmt: skip
"""Op histograms of torchvision's exports (benchmarks/results/export_zoo.json: torch 2.14.1,
opset 17, constant folding) without the Identity and Constant nodes the exporter adds."""

PUBLISHED: dict[str, tuple[float, float]] = {
    "resnet18": (1.81, 11.69),
    "resnet50": (4.09, 25.56),
    "mobilenet_v2": (0.30, 3.50),
    "mobilenet_v3_small": (0.06, 2.54),
    "mobilenet_v3_large": (0.22, 5.48),
    "efficientnet_b0": (0.39, 5.29),
    "vgg11": (7.61, 132.86),
    "vgg16": (15.47, 138.36),
    "squeezenet1_1": (0.35, 1.24),
    "shufflenet_v2_x1_0": (0.14, 2.28),
    "densenet121": (2.83, 7.98),
    "googlenet": (1.50, 6.62),
    "regnet_y_400mf": (0.40, 4.34),
    "mnasnet1_0": (0.31, 4.38),
    "convnext_tiny": (4.46, 28.59),
}
"""GMACs ("GFLOPS") and million parameters that torchvision's model tables publish."""


def _macs(model: onnx.ModelProto) -> int:
    kernels = network_kernels(load_network(model), AnalyticTarget()).kernels
    dense = (LayerKind.CONV, LayerKind.DENSE)
    return sum(k.layer.macs for k in kernels if k.layer is not None and k.layer.kind in dense)


@pytest.fixture(scope="module")
def reference_skeletons() -> dict[str, onnx.ModelProto]:
    return {spec.name: spec.build(weights=False) for spec in zoo.reference_networks()}


def test_reference_networks_have_the_ops_of_torchvisions_export(
    reference_skeletons: dict[str, onnx.ModelProto],
) -> None:
    assert set(reference_skeletons) == set(EXPORTED_OPS)
    for name, model in reference_skeletons.items():
        assert dict(_ops(model)) == EXPORTED_OPS[name], name


def test_reference_networks_have_torchvisions_macs_and_parameters(
    reference_skeletons: dict[str, onnx.ModelProto],
) -> None:
    for name, model in reference_skeletons.items():
        gmacs, mparams = PUBLISHED[name]
        # published to two decimals: allow their rounding plus 3 %
        assert _macs(model) / 1e9 == pytest.approx(gmacs, rel=0.03, abs=0.005), name
        # batch-norm folded into the convs: its two parameters per channel become one bias
        assert zoo.parameter_count(model) / 1e6 == pytest.approx(mparams, rel=0.02), name


@pytest.mark.parametrize(
    ("value", "expected"), [(32 * 0.75, 24), (1280, 1280), (16 * 0.25, 8), (72 * 0.75, 56)]
)
def test_make_divisible_rounds_like_torchvision(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


@pytest.mark.parametrize(
    ("variant", "stages"),
    [
        ("400mf", [(48, 1, 8), (104, 3, 8), (208, 6, 8), (440, 6, 8)]),
        ("800mf", [(64, 1, 16), (144, 3, 16), (320, 8, 16), (784, 2, 16)]),
    ],
)
def test_regnet_stages_match_torchvision(variant: str, stages: list[tuple[int, int, int]]) -> None:
    assert regnet_stages(REGNET_Y[variant]) == stages


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad", "ceil", "expected"),
    [(224, 7, 2, 3, False, 112), (111, 3, 2, 0, True, 55), (112, 3, 2, 0, True, 56),
     (13, 3, 2, 0, True, 6), (7, 2, 2, 0, True, 4), (56, 3, 2, 1, False, 28)],
)  # fmt: skip
def test_conv_output_size_floor_and_ceil(
    size: int, kernel: int, stride: int, pad: int, ceil: bool, expected: int
) -> None:
    assert conv_output_size(size, kernel=kernel, stride=stride, pad=pad, ceil=ceil) == expected


@pytest.mark.parametrize(
    ("builder", "options", "message"),
    [
        (zoo.resnet, {"depth": 20}, "ResNet depth must be one of"),
        (zoo.resnet, {"width": 0.01}, "width multiplier"),
        (zoo.vgg, {"size": 16}, "input size of at least 32"),
        (zoo.densenet, {"growth": 2}, "growth rate"),
        (zoo.mobilenet_v3, {"variant": "medium"}, "'large' or 'small'"),
        (zoo.efficientnet, {"variant": "b9"}, "b0, b1"),
        (zoo.shufflenet_v2, {"width": 0.75}, "0.5, 1.0, 1.5, 2.0"),
        (zoo.regnet_y, {"variant": "8gf"}, "400mf"),
        (zoo.convnext, {"depths": (1, 1, 1)}, "four positive depths"),
        (zoo.googlenet, {"batch": 0}, "batch size must be at least 1"),
    ],
)
def test_bad_architecture_options_raise_zoo_error(
    builder: Callable[..., onnx.ModelProto], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ZooError, match=re.escape(message)):
        builder(**options, weights=False)


# -- the reference and held-out sets ------------------------------------------------------------


def _full_settings(spec: NetworkSpec) -> tuple[str, dict[str, Any]]:
    """The builder and every option it runs with (defaults filled in)."""
    bound = inspect.signature(spec.builder).bind(**spec.kwargs)
    bound.apply_defaults()
    options = {k: v for k, v in bound.arguments.items() if k not in ("seed", "weights")}
    return spec.builder.__name__, options


def test_reference_set_is_the_torchvision_reference_list() -> None:
    specs = zoo.reference_networks()
    assert [s.name for s in specs] == list(REFERENCE_NETWORKS)
    for spec in specs:
        _, options = _full_settings(spec)
        assert (options["size"], options["batch"], options["classes"]) == (224, 1, 1000)


def test_held_out_networks_are_outside_the_reference_set() -> None:
    held_out = zoo.held_out_networks()
    assert 10 <= len(held_out) <= 15
    names = [s.name for s in held_out]
    assert len(set(names)) == len(names)
    assert not set(names) & set(REFERENCE_NETWORKS)
    reference = [_full_settings(s) for s in zoo.reference_networks()]
    for spec in held_out:
        assert _full_settings(spec) not in reference, spec.name
    assert len({s.builder for s in held_out}) >= 10  # most architecture families


def test_held_out_networks_span_the_documented_range() -> None:
    gmacs = {s.name: _macs(s.build(weights=False)) / 1e9 for s in zoo.held_out_networks()}
    assert 0.02 <= min(gmacs.values()) <= 0.1
    assert max(gmacs.values()) >= 1.5 and max(gmacs.values()) <= 3.0


def test_resolve_networks_by_set_name_and_names() -> None:
    assert len(zoo.resolve_networks("reference")) == len(REFERENCE_NETWORKS)
    assert [s.name for s in zoo.resolve_networks(["vgg11_112", "resnet18"])] == [
        "vgg11_112",
        "resnet18",
    ]
    assert [s.name for s in zoo.resolve_networks("resnet34_160")] == ["resnet34_160"]
    both = zoo.resolve_networks(["held-out", "reference"])
    assert [s.name for s in both] == [s.name for s in zoo.held_out_networks()] + list(
        REFERENCE_NETWORKS
    )
    with pytest.raises(ZooError, match="no network set has a network named 'held_out'"):
        zoo.resolve_networks("held_out")
    with pytest.raises(ZooError, match="listed twice"):
        zoo.resolve_networks(["reference", "resnet18"])
    with pytest.raises(ZooError, match="no network set has a network named 'resnet99'"):
        zoo.resolve_networks(["resnet99"])
    with pytest.raises(ZooError, match="listed twice"):
        zoo.resolve_networks(["resnet18", "resnet18"])


def _tiny_specs(width: float = 0.25) -> list[NetworkSpec]:
    small = {"size": 32, "classes": 10}
    return [
        NetworkSpec("r", zoo.resnet, {"depth": 18, "width": width, **small}),
        NetworkSpec("m", zoo.mobilenet_v2, {"width": width, **small}),
    ]


def test_build_networks_writes_files_and_keeps_current_ones(tmp_path: Path) -> None:
    calls: list[tuple[str, bool]] = []
    paths = zoo.build_networks(
        _tiny_specs(), tmp_path / "nets", on_network=lambda s, p, b: calls.append((s.name, b))
    )
    assert [p.name for p in paths] == ["r.onnx", "m.onnx"]
    assert calls == [("r", True), ("m", True)]
    record = json.loads((tmp_path / "nets" / "r.settings.json").read_text())
    assert record["hash"] == _tiny_specs()[0].settings_hash()
    assert record["builder"] == "resnet" and record["kwargs"]["width"] == 0.25
    assert record["parameters"] == zoo.parameter_count(onnx.load(paths[0]))
    assert _run(onnx.load(paths[0]), 1).shape == (1, 10)
    written = [p.stat().st_mtime_ns for p in paths]

    calls.clear()
    again = zoo.build_networks(
        _tiny_specs(), tmp_path / "nets", on_network=lambda s, p, b: calls.append((s.name, b))
    )
    assert again == paths and calls == [("r", False), ("m", False)]
    assert [p.stat().st_mtime_ns for p in paths] == written
    assert sorted(p.name for p in (tmp_path / "nets").iterdir()) == [
        "m.onnx",
        "m.settings.json",
        "r.onnx",
        "r.settings.json",
    ]


def test_build_networks_rebuilds_changed_or_unrecorded_files(tmp_path: Path) -> None:
    first = zoo.build_networks(_tiny_specs(), tmp_path)
    before = first[0].read_bytes()
    (tmp_path / "m.settings.json").write_text("not json")
    calls: list[tuple[str, bool]] = []
    zoo.build_networks(
        _tiny_specs(width=0.5), tmp_path, on_network=lambda s, p, b: calls.append((s.name, b))
    )
    assert calls == [("r", True), ("m", True)]
    assert first[0].read_bytes() != before


def test_settings_hash_follows_every_setting() -> None:
    base = NetworkSpec("r", zoo.resnet, {"depth": 18})
    hashes = {
        base.settings_hash(),
        NetworkSpec("r2", zoo.resnet, {"depth": 18}).settings_hash(),
        NetworkSpec("r", zoo.resnet, {"depth": 34}).settings_hash(),
        NetworkSpec("r", zoo.vgg, {"depth": 18}).settings_hash(),
    }
    assert len(hashes) == 4
    assert base.settings_hash() == NetworkSpec("r", zoo.resnet, {"depth": 18}).settings_hash()


def test_describe_reads_the_skeleton() -> None:
    spec = zoo.network_spec("efficientnet_b0_260_b2")
    facts = zoo.describe(spec)
    assert facts["set"] == "held-out" and facts["builder"] == "efficientnet"
    assert facts["input_shape"] == [2, 3, 260, 260]
    assert facts["parameters"] == zoo.parameter_count(spec.build(weights=False)) > 5_000_000
    assert zoo.describe(NetworkSpec("x", zoo.resnet, {"depth": 18}))["set"] is None


@pytest.mark.parametrize("weights", [True, False])
def test_a_miswired_graph_is_refused_with_or_without_weights(weights: bool) -> None:
    g = GraphBuilder(seed=0, weights=weights)
    x = g.global_avgpool_flatten(g.conv("input", 3, 8, kernel=3))
    x = g.gemm(x, 10, 5)  # the pooled features are 8 wide, not 10
    with pytest.raises(onnx.shape_inference.InferenceError, match="fc1"):
        g.model("miswired", [1, 3, 32, 32], x, [1, 5])
