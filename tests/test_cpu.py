"""The one CPU probe: /proc/cpuinfo and sysfs caches, the fingerprint, the machine line."""

from __future__ import annotations

from pathlib import Path

import pytest

from prmodel.targets.cpu import (
    ISA_FLAGS,
    CpuInfo,
    cpu_fingerprint,
    cpu_from_fingerprint,
    cpu_model,
    detect_cpu,
    machine_info,
)
from prmodel.targets.profiles import cpu_profile

CPUINFO = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n"


def _cpu(flags: str) -> CpuInfo:
    return detect_cpu(CPUINFO.format(flags=flags), cache_dir=Path("/nonexistent"))


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ("fpu sse2 avx avx2 fma avx512f avx512bw", "avx512"),
        ("fpu sse2 avx avx2 fma", "avx2"),
        ("fpu sse2 avx", "avx"),
        ("fpu sse2", "sse"),
    ],
)
def test_isa_is_the_widest_vector_extension(flags: str, isa: str) -> None:
    cpu = _cpu(flags)
    assert cpu.model == "Test CPU 9000"
    assert cpu.isa == isa
    assert cpu.caches == {}


def test_first_core_block_wins_and_arm_keys_are_read() -> None:
    two_cores = CPUINFO.format(flags="sse2 avx") + "\n" + CPUINFO.format(flags="sse2 avx2 fma")
    assert _cpu("").flags == frozenset()
    assert detect_cpu(two_cores, cache_dir=Path("/nonexistent")).isa == "avx"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp sve\n\nHardware\t: Neoverse-V1\n"
    cpu = detect_cpu(arm, cache_dir=Path("/nonexistent"))
    assert cpu.model == "Neoverse-V1"
    assert {"asimd", "sve"} <= cpu.flags


def test_caches_are_read_from_sysfs_layout(tmp_path: Path) -> None:
    for index, (level, kind, size) in enumerate(
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]
    ):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(level)
        (folder / "type").write_text(kind)
        (folder / "size").write_text(size)
    cpu = detect_cpu(CPUINFO.format(flags="avx2 fma"), cache_dir=tmp_path)
    assert cpu.caches == {"l1d_bytes": 48 * 1024, "l2_bytes": 2048 * 1024}
    assert cpu_profile(cpu).architecture["l2_bytes"] == 2048 * 1024


def test_fingerprint_wins_over_the_local_cpu() -> None:
    local = _cpu("sse2")
    fingerprint = {"cpu_model": "Remote", "isa": ["avx2", "fma"], "l2_kib": 1024}
    cpu = cpu_from_fingerprint(fingerprint, local)
    assert (cpu.model, cpu.isa, cpu.caches["l2_bytes"]) == ("Remote", "avx2", 1024 * 1024)
    assert cpu_from_fingerprint({}, local) == local


def test_fingerprint_lists_the_local_isa_flags_and_caches() -> None:
    local = detect_cpu()
    fingerprint = cpu_fingerprint()
    assert fingerprint["isa"] == [flag for flag in ISA_FLAGS if flag in local.flags]
    assert fingerprint["cpu_model"] == local.model == cpu_model()
    l2 = local.caches.get("l2_bytes")
    assert fingerprint["l2_kib"] == (l2 // 1024 if l2 else None)
    assert cpu_from_fingerprint(fingerprint, local).isa == local.isa


def test_fingerprint_reads_cpuinfo_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags_line = next(
        (
            line
            for line in cpuinfo.read_text().splitlines()
            if line.startswith(("flags", "Features"))
        ),
        "",
    )
    present = set(flags_line.partition(":")[2].split())
    expected = [flag for flag in ISA_FLAGS if flag in present]
    assert cpu_fingerprint()["isa"] == expected


def test_machine_info_names_the_cpu_and_libraries() -> None:
    info = machine_info(libraries=("numpy", "no-such-library"))
    assert info["cpu"] == cpu_model()
    assert info["numpy"] and info["no-such-library"] is None
    assert info["logical_cores"] >= 1
