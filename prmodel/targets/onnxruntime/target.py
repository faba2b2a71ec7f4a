"""ONNX Runtime as a prmodel target: one execution provider with its threads and opt level.

A target is named after its execution provider (``cpu``, ``cuda``, ``tensorrt``, ...) and
takes the options ``threads`` (intra-op threads, default 1), ``inter_threads`` (default 1)
and ``opt`` (graph optimization level: ``all``, ``extended``, ``basic`` or ``disable``,
default ``all``). Sessions run in sequential execution mode. A target's id names what makes
its measurements comparable (:func:`ort_target_id`): the provider, the hardware (the CPU's
ISA level, or the GPU), a short hash of the CPU model, ONNX Runtime version and the rest of
the fingerprint that changes kernels, the threads and the optimization level (``all``
blocks convolutions into NCHWc and fuses activations), e.g. ``ort-cpu-avx512-3f9c-t1-all``.

Each layer is measured with two sessions of the same single-layer model: a plain one timed
from Python (wall time of ``run_with_iobinding``, inputs and output bound once) and a
profiled one whose trace gives the layer's own kernel time, without the layout reorders
that a lone layer gets around it and a network mostly does not.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from prmodel.layers import LayerConfig
from prmodel.networks import Network, NetworkMeasurement, NetworkMeasureSettings
from prmodel.targets.base import (
    LayerBuildError,
    TargetError,
    TargetInfo,
    Timings,
    UnknownTargetError,
)
from prmodel.targets.cpu import cpu_fingerprint, cpu_from_fingerprint, detect_cpu, isa_level
from prmodel.targets.identity import short_hash
from prmodel.targets.onnxruntime import networks as ort_networks
from prmodel.targets.onnxruntime.builder import (
    DEFAULT_OPSET,
    OUTPUT_NAME,
    build_model,
    is_helper_node,
    make_inputs,
)
from prmodel.targets.profiles import HardwareProfile, cpu_profile, generic_profile

CPU_PROVIDER = "CPUExecutionProvider"

PROVIDER_ALIASES: dict[str, str] = {
    "cpu": CPU_PROVIDER,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "onednn": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
"""Short target names of well-known providers; any other provider is named by its own name
(case-insensitive) or by it without the ``ExecutionProvider`` suffix."""

_WELL_KNOWN = (
    "cpu",
    "cuda",
    "tensorrt",
    "rocm",
    "migraphx",
    "openvino",
    "dml",
    "coreml",
    "dnnl",
    "xnnpack",
    "qnn",
)

OPT_LEVELS: tuple[str, ...] = ("all", "extended", "basic", "disable")

LAYOUT_OPS: frozenset[str] = frozenset(
    {"ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost"}
)
"""Kernels that only move or re-lay data: NCHWc reorders, the transposes that layout
transformers insert around NHWC kernels, and host/device copies. They go to ``reorder_us``;
every other kernel of the layer (not a helper node) goes to ``kernel_us``."""

_HOST_TIMED_PROVIDERS = frozenset(
    {CPU_PROVIDER, "DnnlExecutionProvider", "XnnpackExecutionProvider"}
)
"""Providers whose kernels run synchronously on the host, so profiler durations are their
real run times. On device providers (CUDA, ...) a node event only times the launch."""

_BIND_DEVICES = {
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
    "DmlExecutionProvider": "dml",
    "CANNExecutionProvider": "cann",
    "WebGpuExecutionProvider": "webgpu",
}


_OPTIONS = ("threads", "inter_threads", "opt")
_ORT_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disable": "ORT_DISABLE_ALL",
}
_ASSIGNMENT_KEY = "session.record_ep_graph_assignment_info"
_PROFILE_PREFIX = "prmodel-ort-profile"


@dataclass(frozen=True)
class OnnxRuntimeTarget:
    """One ONNX Runtime execution provider with fixed threads and optimization level.

    Attributes:
        name: short target name used in specs and ids (``cpu``, ``cuda``, ...).
        provider: the execution provider, e.g. ``CPUExecutionProvider``.
        threads: intra-op threads.
        inter_threads: inter-op threads.
        opt_level: graph optimization level, one of :data:`OPT_LEVELS`.
        opset: opset the single-layer models are built with.
        warmup_calls: untimed calls per session when a layer is prepared.
    """

    name: str = "cpu"
    provider: str = CPU_PROVIDER
    threads: int = 1
    inter_threads: int = 1
    opt_level: str = "all"
    opset: int = DEFAULT_OPSET
    warmup_calls: int = 5
    deterministic: bool = field(default=False, init=False)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, str]) -> OnnxRuntimeTarget:
        """The target for provider ``name`` with ``options`` (see the module docstring).

        Raises:
            TargetError: unknown provider or option, a bad value, or a provider that this
                ONNX Runtime installation does not have.
        """
        provider = resolve_provider(name)
        short = short_name(provider)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise TargetError(
                f"ONNX Runtime target {short!r} has no option {unknown[0]!r} "
                f"(options: {', '.join(_OPTIONS)})"
            )
        opt_level = options.get("opt", "all").lower()
        if opt_level not in OPT_LEVELS:
            raise TargetError(f"opt={opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
        return cls(
            name=short,
            provider=provider,
            threads=_positive_int(options, "threads"),
            inter_threads=_positive_int(options, "inter_threads"),
            opt_level=opt_level,
        )

    @classmethod
    def target_infos(cls) -> list[TargetInfo]:
        """Every provider installed here, plus the well-known ones that are not."""
        installed = ort.get_available_providers()
        infos = [
            TargetInfo(short_name(p), f"ONNX Runtime {p}", True, _provider_note(p))
            for p in installed
        ]
        seen = {info.name for info in infos}
        for alias in _WELL_KNOWN:
            provider = PROVIDER_ALIASES[alias]
            if alias not in seen:
                note = f"not in this onnxruntime build ({ort.__version__})"
                infos.append(TargetInfo(alias, f"ONNX Runtime {provider}", False, note))
        return infos

    # -- identity ---------------------------------------------------------------------------
    @property
    def target_id(self) -> str:
        """E.g. ``ort-cpu-avx512-3f9c-t1-all``: see :func:`ort_target_id`."""
        return ort_target_id(self.fingerprint())

    @staticmethod
    def id_for_fingerprint(fingerprint: Mapping[str, Any]) -> str:
        """The id of the ONNX Runtime target that ``fingerprint`` describes (any machine)."""
        return ort_target_id(fingerprint)

    @staticmethod
    def old_id_for_fingerprint(fingerprint: Mapping[str, Any]) -> str | None:
        """The id before hardware was part of it, e.g. ``ort-cpu-t1-all``."""
        return old_ort_target_id(fingerprint)

    def fingerprint(self) -> dict[str, Any]:
        """The hardware (CPU model, ISA, caches, GPUs) and software settings measured."""
        info: dict[str, Any] = {
            "target": "onnxruntime",
            "onnxruntime": ort.__version__,
            "provider": self.provider,
            "threads": self.threads,
            "inter_threads": self.inter_threads,
            "opt_level": self.opt_level,
            "execution_mode": "sequential",
            "opset": self.opset,
            **cpu_fingerprint(),
        }
        if _BIND_DEVICES.get(self.provider) == "cuda":
            info["gpus"] = list(_nvidia_gpus())
        return info

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        """Why ``layer`` cannot run here: only layers too large for this machine's memory."""
        # Two sessions, each holding weights, activations and their reordered copies.
        needed = 4 * (layer.weight_bytes + layer.activation_bytes)
        available = _physical_memory_bytes()
        if available and needed > available // 2:
            return (
                f"it needs about {needed / 2**30:.1f} GiB, more than half of this machine's "
                f"{available / 2**30:.1f} GiB of memory"
            )
        return None

    def hardware_profile(self) -> HardwareProfile:
        """The CPU provider: the built-in profile of the CPU's ISA family, the generic one
        for every other provider.

        The CPU is the one the fingerprint names (the measurements are keyed on it),
        completed from this machine; its cache sizes come along. Below ``opt=all`` ONNX
        Runtime uses no NCHWc kernels, so the NCHWc hints are dropped.
        """
        if self.provider != CPU_PROVIDER:
            return generic_profile(self.name)
        cpu = cpu_from_fingerprint(self.fingerprint(), detect_cpu())
        return cpu_profile(cpu, opt_level=self.opt_level)

    # -- sessions ---------------------------------------------------------------------------
    def session_options(
        self, *, profile: bool, profile_prefix: str | Path | None = None
    ) -> ort.SessionOptions:
        """Session options exactly as this target runs layers (reuse them for networks).

        Args:
            profile: enable ONNX Runtime's profiler.
            profile_prefix: path prefix of the trace file; by default a file in the system
                temporary directory (never the working directory). ``end_profiling()``
                returns the file's path; the caller deletes it.
        """
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _ORT_LEVELS[self.opt_level]
        )
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = self.inter_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # ORT warns on every NCHWc save; errors still raise
        if profile:
            prefix = profile_prefix or Path(tempfile.gettempdir()) / _PROFILE_PREFIX
            options.enable_profiling = True
            options.profile_file_prefix = str(prefix)
        return options

    def providers(self) -> list[str]:
        """The provider list for ``InferenceSession``: this provider, then CPU as fallback."""
        if self.provider == CPU_PROVIDER:
            return [CPU_PROVIDER]
        return [self.provider, CPU_PROVIDER]

    @property
    def bind_device(self) -> str:
        """ONNX Runtime device type that inputs and outputs are bound to (``cpu``, ``cuda``)."""
        return _BIND_DEVICES.get(self.provider, "cpu")

    # -- benchmarking -----------------------------------------------------------------------
    def prepare(self, layer: LayerConfig) -> OnnxRuntimeBenchmark:
        """Build ``layer``, load it into both sessions and warm them up.

        Raises:
            LayerBuildError: the layer is too large, cannot be built, or ONNX Runtime
                cannot load or run it on this provider.
        """
        reason = self.unsupported_reason(layer)
        if reason:
            raise LayerBuildError(f"{layer.label} cannot run on {self.target_id}: {reason}")
        return OnnxRuntimeBenchmark(self, layer)

    # -- whole networks (the GraphOptimizer and NetworkRunner capabilities) ------------------
    @property
    def runtime_name(self) -> str:
        """``onnxruntime``: its optimizer rewrites networks (fusion, NCHWc) before running."""
        return "onnxruntime"

    def optimized_graph(self, network: Network) -> onnx.ModelProto:
        """The graph ONNX Runtime runs for ``network`` at this target's settings."""
        return ort_networks.optimized_graph(network, self)

    def nchwc_block(self) -> int:
        """The NCHWc channel block ORT pads to here (16 with AVX-512, 8 with AVX2), probed once."""
        return ort_networks.nchwc_block_size(self)

    def measure_networks(
        self,
        networks: Sequence[Network],
        settings: NetworkMeasureSettings | None = None,
        *,
        on_round: Callable[[int], None] | None = None,
    ) -> list[NetworkMeasurement]:
        """Time whole networks with this target's sessions, rounds interleaved (profiled)."""
        return ort_networks.measure_networks(networks, self, settings=settings, on_round=on_round)


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

    def __init__(self, target: OnnxRuntimeTarget, layer: LayerConfig) -> None:
        self.layer = layer
        self._target = target
        self._profile_dir: Path | None = None
        self._plain: _BoundSession | None = None
        self._profiled: _BoundSession | None = None
        self._kernels_from_profile = target.provider in _HOST_TIMED_PROVIDERS
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
                f"{layer.label} failed on {target.target_id}: {_first_line(exc)}"
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
            raise LayerBuildError(
                f"{self.layer.label} failed on {self._target.target_id}: {_first_line(exc)}"
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


# -- providers --------------------------------------------------------------------------------
def resolve_provider(name: str) -> str:
    """The execution provider named by a target name or a provider name (any case).

    Raises:
        TargetError: an unknown provider, or one this installation does not have.
    """
    key = name.strip().lower()
    known = {p.lower(): p for p in ort.get_all_providers()}
    known.update({short_name(p): p for p in ort.get_all_providers()})
    provider = PROVIDER_ALIASES.get(key) or known.get(key)
    if provider is None:
        aliases = tuple(sorted(PROVIDER_ALIASES))
        raise UnknownTargetError(
            f"unknown ONNX Runtime provider {name!r} (known: {', '.join(aliases)}, or a "
            "provider name)",
            known=aliases,
        )
    installed = ort.get_available_providers()
    if provider not in installed:
        raise TargetError(
            f"ONNX Runtime provider {provider} (target {name!r}) is not installed here; "
            f"installed providers: {', '.join(installed)}"
        )
    return provider


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``; aliases win (``Dml...`` -> ``dml``)."""
    for alias, full in PROVIDER_ALIASES.items():
        if full == provider:
            return alias
    return provider.removesuffix("ExecutionProvider").lower()


def _provider_note(provider: str) -> str:
    if provider == CPU_PROVIDER:
        return "kernel times from the ORT profiler; options threads, inter_threads, opt"
    if provider not in _HOST_TIMED_PROVIDERS:
        return "kernel time = synchronised wall time of the single-layer model"
    return ""


# -- ids --------------------------------------------------------------------------------------
ID_HASH_KEYS: tuple[str, ...] = (
    "machine",
    "cpu_model",
    "isa",
    "gpus",
    "onnxruntime",
    "opset",
    "execution_mode",
)
"""Fingerprint keys hashed into a target id: what changes the kernels (or their speed) and
is not spelled out in the id already. Core counts and cache sizes are left out: the same CPU
model reports different ones in VMs of different sizes (they stay in the fingerprint)."""

_GPU_VENDOR_WORDS = frozenset({"nvidia", "geforce", "tesla", "quadro", "amd", "radeon", "intel"})


def ort_target_id(fingerprint: Mapping[str, Any]) -> str:
    """The id of the ONNX Runtime target a fingerprint describes.

    ``ort-<provider>-<hardware>-<hash>-t<threads>-<opt>``, plus ``-i<n>`` where inter-op
    threads are not 1: ``hardware`` is the CPU's ISA level (``avx512``, ``avx2``, ``avx``,
    ``sse``, ``neon``; :func:`prmodel.targets.cpu.isa_level`) or, for a provider that runs
    on GPUs, the first GPU's model (``h100``); ``hash`` is 4 hex digits of the
    :data:`ID_HASH_KEYS` entries (CPU model, ISA flags, GPUs and driver, ONNX Runtime
    version, opset), so two machines whose measurements differ get different ids.
    """
    provider = str(fingerprint.get("provider") or CPU_PROVIDER)
    digest = short_hash({key: fingerprint[key] for key in ID_HASH_KEYS if key in fingerprint})
    text = (
        f"ort-{short_name(provider)}-{_hardware_label(fingerprint)}-{digest}"
        f"-t{fingerprint.get('threads', 1)}-{fingerprint.get('opt_level', 'all')}"
    )
    inter = fingerprint.get("inter_threads", 1)
    return text + (f"-i{inter}" if inter != 1 else "")


def old_ort_target_id(fingerprint: Mapping[str, Any]) -> str:
    """The id the same target had before hardware was part of ids (``ort-cpu-t1-all``)."""
    provider = str(fingerprint.get("provider") or CPU_PROVIDER)
    text = (
        f"ort-{short_name(provider)}-t{fingerprint.get('threads', 1)}"
        f"-{fingerprint.get('opt_level', 'all')}"
    )
    inter = fingerprint.get("inter_threads", 1)
    return text + (f"-i{inter}" if inter != 1 else "")


def _hardware_label(fingerprint: Mapping[str, Any]) -> str:
    if "gpus" in fingerprint:
        gpus = fingerprint.get("gpus") or []
        return _gpu_label(str(gpus[0])) if gpus else "gpu"
    flags = fingerprint.get("isa")
    machine = str(fingerprint.get("machine") or "")
    return isa_level(flags if isinstance(flags, list | tuple) else (), machine)


def _gpu_label(line: str) -> str:
    """``NVIDIA H100 80GB HBM3, 550.54.15`` -> ``h100``; ``NVIDIA GeForce RTX 4090`` ->
    ``rtx4090``: the model, without vendor words, memory size or driver."""
    words = [w for w in re.split(r"[\s_-]+", line.split(",")[0].lower()) if w]
    words = [w for w in words if w not in _GPU_VENDOR_WORDS and re.fullmatch(r"[a-z0-9]+", w)]
    for i, word in enumerate(words):
        if any(c.isdigit() for c in word):
            prefix = words[i - 1] if i and words[i - 1].isalpha() and len(words[i - 1]) <= 3 else ""
            return prefix + word
    return words[0] if words else "gpu"


# -- machine facts ----------------------------------------------------------------------------
@functools.cache
def _nvidia_gpus() -> tuple[str, ...]:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _positive_int(options: Mapping[str, str], key: str) -> int:
    text = options.get(key, "1")
    try:
        value = int(text)
    except ValueError:
        raise TargetError(f"ONNX Runtime option {key}={text!r} is not an integer") from None
    if value < 1:
        raise TargetError(f"ONNX Runtime option {key} must be at least 1, got {value}")
    return value


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__).rstrip(".")


__all__ = [
    "ID_HASH_KEYS",
    "LAYOUT_OPS",
    "OPT_LEVELS",
    "PROVIDER_ALIASES",
    "CallKernels",
    "OnnxRuntimeBenchmark",
    "OnnxRuntimeTarget",
    "kernel_role",
    "old_ort_target_id",
    "ort_target_id",
    "resolve_provider",
    "short_name",
    "split_trace",
]
