"""The one probe of the local CPU: model, ISA flags and caches, as targets and reports need them.

Linux describes its CPU in ``/proc/cpuinfo`` (model, ISA flags) and
``/sys/devices/system/cpu/cpu0/cache`` (cache sizes). Everything in prmodel that asks about the
CPU asks here: :func:`detect_cpu` for the hardware profile, :func:`cpu_fingerprint` for the
identity that measurements are keyed on, :func:`machine_info` for the machine line of a report.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO_PATH = Path("/proc/cpuinfo")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")

ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
)
"""CPU features that select different kernels (x86 ``flags``, Arm ``Features``); a target's
fingerprint lists the ones present, in this order."""

_MODEL_KEYS = ("model name", "hardware", "cpu model")
_FLAG_KEYS = ("flags", "features")


@dataclass(frozen=True)
class CpuInfo:
    """A CPU as prmodel cares about it: model, ISA flags and cache sizes in bytes.

    ``caches`` maps ``l1d_bytes``, ``l2_bytes``, ``l3_bytes`` (data or unified caches) to
    their sizes; a level the system does not report is absent.
    """

    model: str
    flags: frozenset[str]
    caches: Mapping[str, int] = field(default_factory=dict)

    @property
    def isa(self) -> str:
        """The widest vector ISA MLAS dispatches to (see :func:`isa_level`)."""
        return isa_level(self.flags, platform.machine())


def isa_level(flags: Iterable[str], machine: str) -> str:
    """The widest vector ISA whose kernels MLAS runs for float32 on a CPU with ``flags``.

    ``avx512`` (AVX-512F), ``avx2`` (AVX2 and FMA), ``avx``, ``sse`` (any other x86-64),
    ``neon`` (Arm Advanced SIMD, ``asimd``) or ``generic``. ``machine`` is
    ``platform.machine()`` of the CPU (``x86_64``, ``aarch64``); a target's id names this
    level because it decides which kernels, and so which latency staircases, run.
    """
    present = frozenset(flags)
    if "avx512f" in present:
        return "avx512"
    if {"avx2", "fma"} <= present:
        return "avx2"
    if "avx" in present:
        return "avx"
    if "asimd" in present or machine.lower() in ("aarch64", "arm64"):
        return "neon"
    if "sse2" in present or "sse4_2" in present or machine.lower() in ("x86_64", "amd64"):
        return "sse"
    return "generic"


def detect_cpu(cpuinfo: str | None = None, cache_dir: Path | None = None) -> CpuInfo:
    """Read the CPU's model, flags and caches (Linux ``/proc`` and ``/sys``).

    Args:
        cpuinfo: Text of ``/proc/cpuinfo`` to parse instead of the local file (tests).
        cache_dir: Folder with ``index*/{level,type,size}`` entries instead of
            ``/sys/devices/system/cpu/cpu0/cache``.

    Returns:
        The CPU; where a file is unreadable, the platform module's model name, no flags
        and no caches.
    """
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO_PATH.read_text()
        except OSError:
            cpuinfo = ""
    fields = _first_fields(cpuinfo)
    model = next((fields[key] for key in _MODEL_KEYS if key in fields), "")
    flags = next((fields[key] for key in _FLAG_KEYS if key in fields), "")
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown",
        flags=frozenset(flags.split()),
        caches=_read_caches(cache_dir or CACHE_DIR),
    )


def cpu_model() -> str:
    """The local CPU's model name."""
    return detect_cpu().model


@functools.cache
def cpu_fingerprint() -> dict[str, Any]:
    """The local CPU as a target fingerprint states it (read once per process).

    Returns:
        ``machine``, ``cpu_model``, ``isa`` (the :data:`ISA_FLAGS` present), ``logical_cores``
        and ``l2_kib``/``l3_kib`` (None where unknown).
    """
    return fingerprint_of(detect_cpu(), machine=platform.machine(), logical_cores=os.cpu_count())


def fingerprint_of(cpu: CpuInfo, *, machine: str, logical_cores: int | None) -> dict[str, Any]:
    """The fingerprint entries of ``cpu`` (see :func:`cpu_fingerprint`).

    Tests build the fingerprint of another machine with it, from a ``/proc/cpuinfo`` text
    given to :func:`detect_cpu`.
    """
    return {
        "machine": machine,
        "cpu_model": cpu.model,
        "isa": [flag for flag in ISA_FLAGS if flag in cpu.flags],
        "logical_cores": logical_cores,
        "l2_kib": _kib(cpu.caches.get("l2_bytes")),
        "l3_kib": _kib(cpu.caches.get("l3_bytes")),
    }


def cpu_from_fingerprint(fingerprint: Mapping[str, Any], local: CpuInfo) -> CpuInfo:
    """The CPU a target's fingerprint describes (its ``isa`` flags, ``cpu_model`` and
    ``l2_kib``/``l3_kib``), completed from ``local`` where the fingerprint is silent.

    The fingerprint is what the measurements are keyed on, so it wins over the local CPU.
    """
    flags = fingerprint.get("isa")
    caches = dict(local.caches)
    for level in ("l2", "l3"):
        kib = fingerprint.get(f"{level}_kib")
        if isinstance(kib, int) and kib > 0:
            caches[f"{level}_bytes"] = kib * 1024
    return CpuInfo(
        model=str(fingerprint.get("cpu_model") or local.model),
        flags=frozenset(str(f) for f in flags) if isinstance(flags, list | tuple) else local.flags,
        caches=caches,
    )


def machine_info(*, libraries: Sequence[str] = ()) -> dict[str, Any]:
    """CPU model, logical and usable cores, load average, Python and library versions."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in libraries:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def _first_fields(text: str) -> dict[str, str]:
    """The first value of every ``key : value`` line (keys lower-cased); a multi-core
    cpuinfo repeats each block per core."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    return fields


def _read_caches(folder: Path) -> dict[str, int]:
    caches: dict[str, int] = {}
    for index in sorted(folder.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        name = f"l{level}d_bytes" if level == "1" else f"l{level}_bytes"
        caches[name] = size
    return caches


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMG]?)B?", text.upper())
    if not match:
        raise ValueError(text)
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]
    return int(match.group(1)) * scale


def _kib(size: int | None) -> int | None:
    return size // 1024 if size is not None else None


__all__ = [
    "ISA_FLAGS",
    "CpuInfo",
    "cpu_fingerprint",
    "cpu_from_fingerprint",
    "cpu_model",
    "detect_cpu",
    "fingerprint_of",
    "isa_level",
    "machine_info",
]
