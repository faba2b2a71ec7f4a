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
that a lone layer gets around it and a network mostly does not
(:mod:`prmodel.targets.onnxruntime.benchmark`).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from prmodel.layers import LayerConfig
from prmodel.networks import Network, NetworkMeasurement, NetworkMeasureSettings
from prmodel.targets.base import (
    LayerBuildError,
    TargetError,
    TargetInfo,
    UnknownTargetError,
)
from prmodel.targets.cpu import cpu_fingerprint, cpu_from_fingerprint, detect_cpu, isa_level
from prmodel.targets.identity import short_hash
from prmodel.targets.onnxruntime import networks as ort_networks
from prmodel.targets.onnxruntime.benchmark import (
    CPU_PROVIDER,
    HOST_TIMED_PROVIDERS,
    LAYOUT_OPS,
    CallKernels,
    OnnxRuntimeBenchmark,
    kernel_role,
    split_trace,
)
from prmodel.targets.onnxruntime.builder import DEFAULT_OPSET
from prmodel.targets.profiles import HardwareProfile, cpu_profile, generic_profile

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
    if provider not in HOST_TIMED_PROVIDERS:
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
