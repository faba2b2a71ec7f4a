"""Tests of the ONNX Runtime target: options, identity, and honest per-call timings."""

from __future__ import annotations

import gc
import math
import re
import statistics
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from prmodel.layers import LayerConfig
from prmodel.targets import Benchmark, LayerBuildError, Target, TargetError, get_target
from prmodel.targets.base import fingerprint_hash
from prmodel.targets.cpu import ISA_FLAGS, detect_cpu
from prmodel.targets.onnxruntime import benchmark as ort_benchmark
from prmodel.targets.onnxruntime import target as ort_target
from prmodel.targets.onnxruntime.target import LAYOUT_OPS, OnnxRuntimeTarget, split_trace

CONV = LayerConfig.create("conv", channels=16, height=14, width=14, out_channels=16, kernel=3)
CONV_ADD_RELU = CONV.with_params(residual=True, activation="relu")
DENSE_RELU = LayerConfig.create("dense", channels=64, out_channels=32, activation="relu")
GELU = LayerConfig.create("gelu", channels=8, height=4, width=4)
INSTALLED = ort.get_available_providers()


# -- construction and identity --------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "settings"),
    [
        ("cpu", "t1-all"),
        ("CPU", "t1-all"),
        ("CPUExecutionProvider", "t1-all"),
        ("cpu:threads=2", "t2-all"),
        ("cpu:opt=extended", "t1-extended"),
        ("cpu:opt=DISABLE,threads=4", "t4-disable"),
        ("cpu:inter_threads=2", "t1-all-i2"),
        ("cpu:inter-threads=1", "t1-all"),
    ],
)
def test_spec_gives_target_id(spec: str, settings: str) -> None:
    target = get_target(spec)
    assert isinstance(target, OnnxRuntimeTarget)
    assert isinstance(target, Target)
    # ort-cpu-<this CPU's ISA level>-<4 hex of CPU model, ISA flags, ORT version>-<settings>
    isa = detect_cpu().isa
    assert re.fullmatch(rf"ort-cpu-{isa}-[0-9a-f]{{4}}-{settings}", target.target_id)
    assert target.target_id.split("-")[3] == get_target("cpu").target_id.split("-")[3]
    assert target.provider == "CPUExecutionProvider"
    assert target.deterministic is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cpu:threads=0", "threads must be at least 1"),
        ("cpu:threads=two", "threads='two' is not an integer"),
        ("cpu:opt=fast", "opt='fast' is not one of all, extended, basic, disable"),
        ("cpu:block=16", "no option 'block'"),
        ("nosuchdevice", "unknown target 'nosuchdevice'"),
    ],
)
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        get_target(spec)


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("cuda", "CUDAExecutionProvider"),
        ("tensorrt", "TensorrtExecutionProvider"),
        ("coreml", "CoreMLExecutionProvider"),
        ("migraphxexecutionprovider", "MIGraphXExecutionProvider"),
    ],
)
def test_missing_provider_names_it_and_the_installed_ones(name: str, provider: str) -> None:
    if provider in INSTALLED:
        pytest.skip(f"{provider} is installed here")
    with pytest.raises(TargetError) as info:
        OnnxRuntimeTarget.from_options(name, {})
    assert provider in str(info.value)
    assert "CPUExecutionProvider" in str(info.value)


def test_fingerprint_names_hardware_and_settings() -> None:
    target = get_target("cpu:threads=2,opt=extended")
    fingerprint = target.fingerprint()
    assert fingerprint["onnxruntime"] == ort.__version__
    assert fingerprint["provider"] == "CPUExecutionProvider"
    assert (fingerprint["threads"], fingerprint["inter_threads"]) == (2, 1)
    assert fingerprint["opt_level"] == "extended"
    assert fingerprint["cpu_model"]
    assert fingerprint["logical_cores"] >= 1
    assert set(fingerprint["isa"]) <= set(ISA_FLAGS)
    assert fingerprint_hash(fingerprint) == fingerprint_hash(target.fingerprint())
    assert fingerprint_hash(fingerprint) != fingerprint_hash(get_target("cpu").fingerprint())


def test_session_options_match_the_target(tmp_path: Path) -> None:
    target = get_target("cpu:threads=3,inter_threads=2,opt=basic")
    assert isinstance(target, OnnxRuntimeTarget)
    options = target.session_options(profile=True, profile_prefix=tmp_path / "trace")
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 2)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.enable_profiling and options.profile_file_prefix == str(tmp_path / "trace")
    assert not target.session_options(profile=False).enable_profiling
    default_prefix = Path(target.session_options(profile=True).profile_file_prefix)
    assert default_prefix.parent != Path.cwd()
    assert target.providers() == ["CPUExecutionProvider"]


def test_target_infos_list_installed_and_well_known_providers() -> None:
    infos = {info.name: info for info in OnnxRuntimeTarget.target_infos()}
    assert infos["cpu"].available
    assert {ort_target.short_name(p) for p in INSTALLED} <= set(infos)
    for name in ("cuda", "tensorrt", "openvino", "coreml", "dml"):
        provider = ort_target.PROVIDER_ALIASES[name]
        assert infos[name].available == (provider in INSTALLED)


def test_too_large_layer_is_unsupported() -> None:
    target = OnnxRuntimeTarget()
    huge = LayerConfig.create("dense", channels=200_000, out_channels=200_000)
    reason = target.unsupported_reason(huge)
    assert reason is not None and "GiB" in reason
    assert target.unsupported_reason(CONV) is None
    with pytest.raises(LayerBuildError, match="dense 200000->200000"):
        target.prepare(huge)


# -- measuring --------------------------------------------------------------------------------
def _measure(layer: LayerConfig, spec: str = "cpu", batches: tuple[int, ...] = (3, 4)) -> Any:
    benchmark = get_target(spec).prepare(layer)
    try:
        walls = [benchmark.run(calls) for calls in batches]
        return walls, benchmark.finish()
    finally:
        benchmark.close()


@pytest.mark.slow
@pytest.mark.parametrize("batches", [(1,), (3, 4), (2, 2, 2)])
def test_timings_have_one_entry_per_call(batches: tuple[int, ...]) -> None:
    walls, timings = _measure(CONV, batches=batches)
    calls = sum(batches)
    assert [len(w) for w in walls] == list(batches)
    assert list(timings.wall_us) == [t for w in walls for t in w]
    assert len(timings.kernel_us) == len(timings.reorder_us) == calls
    values = [*timings.kernel_us, *timings.wall_us]
    assert all(math.isfinite(v) and v > 0 for v in values)


@pytest.mark.slow
def test_kernel_and_wall_are_both_microseconds() -> None:
    # Guards against unit slips (ns vs µs), not timing precision: a 3.5 MMAC conv is
    # tens to hundreds of µs on any CPU and both clocks must agree within a wide factor.
    _, timings = _measure(CONV, batches=(10, 10))
    kernel, wall = statistics.median(timings.kernel_us), statistics.median(timings.wall_us)
    assert kernel > 1.0, f"{kernel} µs: too small for this conv (a unit slip?)"
    assert kernel < 100_000
    assert kernel / 5 < wall < kernel * 5


@pytest.mark.slow
@pytest.mark.parametrize(("opt", "reorders"), [("all", True), ("extended", False)])
def test_nchwc_reorders_are_separated(opt: str, reorders: bool) -> None:
    _, timings = _measure(CONV, f"cpu:opt={opt}")
    assert all((r > 0) == reorders for r in timings.reorder_us)
    assert all(k > 0 for k in timings.kernel_us)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layer", "opt", "kernels"),
    [
        (CONV.with_params(activation="relu"), "all", 1),
        (CONV.with_params(activation="relu"), "disable", 2),
        (CONV.with_params(activation="relu6"), "all", 1),
        (CONV_ADD_RELU, "all", 1),
        (CONV_ADD_RELU, "extended", 3),
        (DENSE_RELU, "all", 1),
        (DENSE_RELU, "disable", 2),
        (GELU, "all", 1),
        (GELU, "disable", 5),
    ],
    ids=lambda value: value.label if isinstance(value, LayerConfig) else str(value),
)
def test_profiler_sees_fused_kernels(layer: LayerConfig, opt: str, kernels: int) -> None:
    _, timings = _measure(layer, f"cpu:opt={opt}")
    assert timings.extra["layer_kernels"] == kernels


@pytest.mark.slow
def test_residual_helper_is_not_the_layers_kernel() -> None:
    _, timings = _measure(CONV_ADD_RELU)
    assert timings.extra["helper_us"] > 0
    _, plain = _measure(CONV)
    assert "helper_us" not in plain.extra


@pytest.mark.slow
def test_benchmark_lifecycle_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    benchmark = OnnxRuntimeTarget().prepare(GELU)
    assert isinstance(benchmark, Benchmark)
    profile_dir = benchmark.trace_dir
    assert profile_dir is not None and profile_dir.is_dir()
    benchmark.run(2)
    first = benchmark.finish()
    assert benchmark.finish() is first
    with pytest.raises(RuntimeError, match="finished"):
        benchmark.run(1)
    benchmark.close()
    benchmark.close()
    assert not profile_dir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_closing_unfinished_benchmark_removes_its_trace() -> None:
    benchmark = OnnxRuntimeTarget().prepare(GELU)
    profile_dir = benchmark.trace_dir
    benchmark.run(2)
    benchmark.close()
    assert profile_dir is not None and not profile_dir.exists()
    with pytest.raises(RuntimeError, match="closed before finish"):
        benchmark.finish()


@pytest.mark.slow
def test_dropped_benchmark_removes_its_trace() -> None:
    benchmark = OnnxRuntimeTarget().prepare(GELU)
    benchmark.run(1)
    profile_dir = benchmark.trace_dir
    del benchmark
    gc.collect()
    assert profile_dir is not None and not profile_dir.exists()


@pytest.mark.slow
def test_finish_without_calls_is_empty() -> None:
    _, timings = _measure(GELU, batches=())
    assert timings.kernel_us == timings.wall_us == timings.reorder_us == ()


@pytest.mark.slow
def test_device_providers_time_kernels_by_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort_benchmark, "HOST_TIMED_PROVIDERS", frozenset())
    benchmark = OnnxRuntimeTarget().prepare(GELU)
    assert benchmark.trace_dir is None
    benchmark.run(3)
    timings = benchmark.finish()
    benchmark.close()
    assert timings.kernel_us == timings.wall_us
    assert timings.extra == {"kernel_from_wall": 1.0}


@pytest.mark.skipif("AzureExecutionProvider" not in INSTALLED, reason="needs the Azure EP")
def test_layer_the_provider_cannot_run_is_a_layer_build_error() -> None:
    # The Azure EP runs remote endpoints, not local ops: ORT would silently place every
    # node on the CPU, which must not be recorded as an Azure measurement.
    target = get_target("azure")
    with pytest.raises(LayerBuildError) as info:
        target.prepare(CONV)
    assert CONV.label in str(info.value)
    assert "CPUExecutionProvider" in str(info.value)


# -- trace parsing on a synthetic trace ---------------------------------------------------------
def _run_event(ts: int, dur: int) -> dict[str, Any]:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _kernel(node: str, op: str, ts: int, dur: int) -> dict[str, Any]:
    return {
        "cat": "Node",
        "name": f"{node}_kernel_time",
        "ts": ts,
        "dur": dur,
        "args": {"op_name": op},
    }


TRACE = [
    _run_event(0, 50),  # warm-up
    _kernel("conv_out_nchwc", "Conv", 10, 30),
    _run_event(100, 50),
    _kernel("ReorderInput", "ReorderInput", 101, 4),
    _kernel("helper_residual_out_nchwc", "Conv", 106, 2),
    _kernel("conv_out_nchwc", "Conv", 110, 20),
    {"cat": "Node", "name": "conv_out_nchwc_fence_before", "ts": 109, "dur": 0},
    _kernel("ReorderOutput", "ReorderOutput", 131, 3),
    _run_event(200, 50),
    _kernel("conv_out_nchwc", "Conv", 210, 22),
    _kernel("transpose", "Transpose", 240, 5),
    _kernel("late", "Conv", 260, 99),  # outside every run
]


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        (1, [(20.0, 7.0, 2.0, 1), (22.0, 5.0, 0.0, 1)]),
        (0, [(30.0, 0.0, 0.0, 1), (20.0, 7.0, 2.0, 1), (22.0, 5.0, 0.0, 1)]),
        (3, []),
    ],
)
def test_split_trace_assigns_kernels_to_runs(skip: int, expected: list[tuple[Any, ...]]) -> None:
    calls = split_trace(list(reversed(TRACE)), skip_runs=skip)
    assert [(c.kernel_us, c.reorder_us, c.helper_us, c.layer_kernels) for c in calls] == expected


def test_layout_ops_are_only_data_movement() -> None:
    assert {"ReorderInput", "ReorderOutput"} <= LAYOUT_OPS
    assert not LAYOUT_OPS & {"Conv", "Gemm", "FusedGemm", "Add", "Relu", "MaxPool"}
