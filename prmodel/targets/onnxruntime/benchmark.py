"""Benchmarking one layer on ONNX Runtime: bound sessions, timed and profiled calls, traces.

:class:`OnnxRuntimeBenchmark` loads a single-layer model into a plain session (timed from
Python with ``run_with_iobinding``) and a profiled one whose trace (:func:`split_trace`) gives
the layer's own kernel time. The target it runs for is anything with the
:class:`SessionTarget` attributes, in practice
:class:`~prmodel.targets.onnxruntime.target.OnnxRuntimeTarget`.
"""

from __future__ import annotations

import bisect
import json
import shutil
import statistics
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from prmodel.errors import first_line
from prmodel.layers import LayerConfig
from prmodel.targets.base import LayerBuildError, Timings
from prmodel.targets.onnxruntime.builder import (
    OUTPUT_NAME,
    build_model,
    is_helper_node,
    make_inputs,
)

CPU_PROVIDER = "CPUExecutionProvider"
"""ONNX Runtime's CPU provider: always installed, the fallback of every other one."""


class SessionTarget(Protocol):
    """What a benchmark needs of its target: the provider, its sessions and warm-up calls."""

    @property
    def provider(self) -> str: ...

    @property
    def target_id(self) -> str: ...

    @property
    def opset(self) -> int: ...

    @property
    def warmup_calls(self) -> int: ...

    @property
    def bind_device(self) -> str: ...

    def session_options(
        self, *, profile: bool, profile_prefix: str | Path | None = None
    ) -> ort.SessionOptions: ...

    def providers(self) -> list[str]: ...


LAYOUT_OPS: frozenset[str] = frozenset(
    {"ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost"}
)
"""Kernels that only move or re-lay data: NCHWc reorders, the transposes that layout
transformers insert around NHWC kernels, and host/device copies. They go to ``reorder_us``;
every other kernel of the layer (not a helper node) goes to ``kernel_us``."""

HOST_TIMED_PROVIDERS = frozenset(
    {CPU_PROVIDER, "DnnlExecutionProvider", "XnnpackExecutionProvider"}
)
"""Providers whose kernels run synchronously on the host, so profiler durations are their
real run times. On device providers (CUDA, ...) a node event only times the launch."""


_ASSIGNMENT_KEY = "session.record_ep_graph_assignment_info"


class _BoundSession:
    """A session with its inputs and output bound once, so a call only runs the graph."""

    def __init__(self, session: ort.InferenceSession, layer: LayerConfig, device: str) -> None:
        self.session = session
        self.binding = session.io_binding()
        self._values: list[ort.OrtValue] = []  # bound values must outlive the binding
        for name, array in make_inputs(layer).items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
            self.binding.bind_ortvalue_input(name, value)
            self._values.append(value)
        output = ort.OrtValue.ortvalue_from_shape_and_type(
            list(layer.output_shape), np.float32, device, 0
        )
        self.binding.bind_ortvalue_output(OUTPUT_NAME, output)
        self._values.append(output)
        self._sync = device != "cpu"

    def call(self) -> None:
        self.session.run_with_iobinding(self.binding)
        if self._sync:
            self.binding.synchronize_outputs()

    def timed_call(self) -> float:
        """One call's wall time in microseconds."""
        start = time.perf_counter_ns()
        self.session.run_with_iobinding(self.binding)
        if self._sync:
            self.binding.synchronize_outputs()
        return (time.perf_counter_ns() - start) / 1e3


class OnnxRuntimeBenchmark:
    """A layer loaded into a plain and a profiled session of one ONNX Runtime target.

    ``run(calls)`` makes ``calls`` timed plain calls, then ``calls`` profiled calls. The
    batches alternate rather than single calls because each session holds its own copy
    of the (reordered) weights: alternating every call would evict one session's weights
    with the other's, and a layer measured alone is meant to run with hot caches. The
    sweep runner interleaves batches of many layers over time, so slow drift in machine
    load reaches both clocks alike.
    """

    def __init__(self, target: SessionTarget, layer: LayerConfig) -> None:
        self.layer = layer
        self._target = target
        self._profile_dir: Path | None = None
        self._plain: _BoundSession | None = None
        self._profiled: _BoundSession | None = None
        self._kernels_from_profile = target.provider in HOST_TIMED_PROVIDERS
        self._wall_us: list[float] = []
        self._profiled_calls = 0
        self._timings: Timings | None = None
        self._remove_dir: weakref.finalize | None = None
        try:
            self._open()
        except LayerBuildError:
            self.close()
            raise
        except Exception as exc:  # ORT's pybind errors share no base class below Exception
            self.close()
            raise LayerBuildError(
                f"{layer.label} failed on {target.target_id}: {first_line(exc, period=False)}"
            ) from None

    def _open(self) -> None:
        target = self._target
        model = build_model(self.layer, opset=target.opset).SerializeToString()
        plain_options = target.session_options(profile=False)
        plain_options.add_session_config_entry(_ASSIGNMENT_KEY, "1")
        plain = ort.InferenceSession(model, plain_options, providers=target.providers())
        self._check_provider(plain)
        self._plain = _BoundSession(plain, self.layer, target.bind_device)
        if self._kernels_from_profile:
            self._profile_dir = Path(tempfile.mkdtemp(prefix="prmodel-ort-"))
            # A benchmark dropped without close() must not leave its directory behind.
            self._remove_dir = weakref.finalize(self, shutil.rmtree, self._profile_dir, True)
            profiled_options = target.session_options(
                profile=True, profile_prefix=self._profile_dir / "profile"
            )
            profiled = ort.InferenceSession(model, profiled_options, providers=target.providers())
            self._profiled = _BoundSession(profiled, self.layer, target.bind_device)
        for session in filter(None, (self._plain, self._profiled)):
            for _ in range(target.warmup_calls):
                session.call()

    def _check_provider(self, session: ort.InferenceSession) -> None:
        """Refuse a layer that ONNX Runtime would silently run on another provider."""
        provider = self._target.provider
        if session.get_providers()[0] != provider:
            raise LayerBuildError(
                f"{self.layer.label}: {provider} could not be initialised and ONNX Runtime "
                f"fell back to {session.get_providers()[0]}"
            )
        assigned = _node_providers(session)
        layer_providers = {ep for node, ep in assigned.items() if not is_helper_node(node)}
        if layer_providers and provider not in layer_providers:
            raise LayerBuildError(
                f"{self.layer.label}: ONNX Runtime runs its nodes on "
                f"{', '.join(sorted(layer_providers))}, not on {provider}"
            )

    @property
    def trace_dir(self) -> Path | None:
        """The temporary directory of the profiler trace (None once closed or unprofiled)."""
        return self._profile_dir

    def run(self, calls: int) -> list[float]:
        """``calls`` timed plain calls, then ``calls`` profiled ones; returns the wall µs."""
        if self._timings is not None or self._plain is None:
            raise RuntimeError(f"benchmark of {self.layer.label} is already finished or closed")
        plain, profiled = self._plain, self._profiled
        try:
            wall = [plain.timed_call() for _ in range(calls)]
            if profiled is not None:
                for _ in range(calls):
                    profiled.call()
        except Exception as exc:  # as in __init__: any ORT failure is this layer's failure
            reason = first_line(exc, period=False)
            raise LayerBuildError(
                f"{self.layer.label} failed on {self._target.target_id}: {reason}"
            ) from None
        self._wall_us.extend(wall)
        self._profiled_calls += calls
        return wall

    def finish(self) -> Timings:
        """End profiling and return per-call kernel, wall and reorder times (µs).

        Raises:
            LayerBuildError: the trace does not hold one run per profiled call.
        """
        if self._timings is None:
            self._timings = self._collect_timings()
        return self._timings

    def _collect_timings(self) -> Timings:
        wall = tuple(self._wall_us)
        if not self._kernels_from_profile:
            # Device providers: profiler events time only launches, so the whole call is
            # the best available kernel time (single-layer model, synchronised).
            return Timings(kernel_us=wall, wall_us=wall, extra={"kernel_from_wall": 1.0})
        if self._profiled is None:
            raise RuntimeError(f"benchmark of {self.layer.label} was closed before finish()")
        trace_path = Path(self._profiled.session.end_profiling())
        try:
            events = json.loads(trace_path.read_text())
        finally:
            trace_path.unlink(missing_ok=True)
        calls = split_trace(events, skip_runs=self._target.warmup_calls)
        if len(calls) != self._profiled_calls:
            raise LayerBuildError(
                f"the ONNX Runtime trace of {self.layer.label} holds {len(calls)} timed runs, "
                f"expected {self._profiled_calls}"
            )
        return _timings_from_calls(calls, wall)

    def close(self) -> None:
        """Free both sessions and delete the trace directory (safe to call twice)."""
        # Sessions go first: one still profiling writes its trace when destroyed.
        self._plain = None
        self._profiled = None
        if self._remove_dir is not None:
            self._remove_dir()  # runs once; later calls do nothing
        self._profile_dir = None

    def __enter__(self) -> OnnxRuntimeBenchmark:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- trace parsing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CallKernels:
    """The kernel times of one profiled run, split by role, in microseconds."""

    kernel_us: float
    reorder_us: float
    helper_us: float
    layer_kernels: int


def split_trace(events: Sequence[Mapping[str, Any]], *, skip_runs: int = 0) -> list[CallKernels]:
    """Per-run kernel sums from an ONNX Runtime profiler trace.

    Each ``model_run`` session event delimits one run; kernel events (``cat == "Node"``,
    name ending in ``_kernel_time``) are assigned to the run whose interval holds their
    start. Layout ops (:data:`LAYOUT_OPS`) count as reorders, helper nodes (see
    :mod:`prmodel.targets.onnxruntime.builder`) as helpers, everything else as the layer's kernel.

    Args:
        events: the parsed JSON trace.
        skip_runs: leading runs to drop (warm-up calls).
    """
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[skip_runs:]
    starts = [start for start, _ in runs]
    totals = [dict.fromkeys(("layer", "layout", "helper"), 0.0) for _ in runs]
    counts = [0] * len(runs)
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        ts = int(event["ts"])
        index = bisect.bisect_right(starts, ts) - 1
        if index < 0 or ts > runs[index][1]:
            continue  # a warm-up run
        role = kernel_role(event)
        totals[index][role] += float(event["dur"])
        counts[index] += role == "layer"
    return [
        CallKernels(t["layer"], t["layout"], t["helper"], n)
        for t, n in zip(totals, counts, strict=True)
    ]


def kernel_role(event: Mapping[str, Any]) -> str:
    """``helper``, ``layout`` or ``layer``: what one kernel event of a layer's trace is."""
    if is_helper_node(str(event["name"]).removesuffix("_kernel_time")):
        return "helper"
    if event.get("args", {}).get("op_name") in LAYOUT_OPS:
        return "layout"
    return "layer"


def _timings_from_calls(calls: Sequence[CallKernels], wall: tuple[float, ...]) -> Timings:
    extra: dict[str, float] = {}
    if calls:
        extra["layer_kernels"] = float(statistics.median(c.layer_kernels for c in calls))
        helper = statistics.median(c.helper_us for c in calls)
        if helper:
            extra["helper_us"] = float(helper)
    return Timings(
        kernel_us=tuple(c.kernel_us for c in calls),
        wall_us=wall,
        reorder_us=tuple(c.reorder_us for c in calls),
        extra=extra,
    )


def _node_providers(session: ort.InferenceSession) -> dict[str, str]:
    """Node name -> provider as ONNX Runtime partitioned the graph ({} where unknown)."""
    get_info = getattr(session, "get_provider_graph_assignment_info", None)
    if get_info is None:  # ONNX Runtime before 1.23 cannot tell
        return {}
    return {node.name: subgraph.ep_name for subgraph in get_info() for node in subgraph.get_nodes()}


__all__ = [
    "CPU_PROVIDER",
    "HOST_TIMED_PROVIDERS",
    "LAYOUT_OPS",
    "CallKernels",
    "OnnxRuntimeBenchmark",
    "SessionTarget",
    "kernel_role",
    "split_trace",
]
