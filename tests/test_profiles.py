"""Hardware profiles: the ISA-family profiles, each target's own, the YAML file and its errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from prmodel.layers import LayerKind
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.cpu import CpuInfo, detect_cpu
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.targets.profiles import (
    GemmBlocks,
    HardwareProfile,
    ProfileError,
    StepHint,
    builtin_profile,
    cpu_profile,
    profile_for,
)
from prmodel.targets.scalesim import ScaleSimTarget

CPUINFO = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n"


def _cpu(flags: str) -> CpuInfo:
    return detect_cpu(CPUINFO.format(flags=flags), cache_dir=Path("/nonexistent"))


@pytest.mark.parametrize(
    ("flags", "isa", "block", "dense"),
    [
        ("fpu sse2 avx avx2 fma avx512f avx512bw", "avx512", 16, (16, 32)),
        ("fpu sse2 avx avx2 fma", "avx2", 8, (8, 16)),
        ("fpu sse2", "sse", 8, (8, 16)),
    ],
)
def test_cpu_isa_picks_the_profile(
    flags: str, isa: str, block: int, dense: tuple[int, ...]
) -> None:
    cpu = _cpu(flags)
    assert cpu.model == "Test CPU 9000" and cpu.isa == isa
    profile = cpu_profile(cpu)
    assert profile.family == "cpu"
    assert profile.architecture["nchwc_block"] == block
    assert profile.candidate_periods("conv", "out_channels") == (block,)
    assert profile.hint("conv", "channels") == StepHint(
        (block,), (block - 1,), 4, profile.hint("conv", "channels").note
    )
    assert sorted(profile.candidate_periods("dense", "out_channels")) == list(dense)
    assert profile.candidate_periods("conv", "height") == ()


def test_cpu_target_profile_comes_from_its_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    fingerprint = {"cpu_model": "X", "isa": ["avx", "avx2", "fma"], "l2_kib": 512}
    monkeypatch.setattr(OnnxRuntimeTarget, "fingerprint", lambda self: fingerprint)
    profile = profile_for(OnnxRuntimeTarget())
    assert profile.name == "ort-cpu-avx2"
    assert profile.candidate_periods("conv", "out_channels") == (8,)
    assert profile.architecture["cpu_model"] == "X"
    assert profile.architecture["l2_bytes"] == 512 * 1024
    assert profile_for(OnnxRuntimeTarget(opt_level="basic")).name == "ort-cpu-avx2-basic"


def test_the_local_cpu_target_gets_its_isa_family(local_cpu_profile: HardwareProfile) -> None:
    # whatever this machine is (AVX2 or AVX-512, Intel or AMD), the profile follows its ISA
    assert local_cpu_profile == cpu_profile(detect_cpu())
    block = {"avx512": 16, "avx2": 8, "avx": 8}.get(detect_cpu().isa)
    if block is not None:
        assert local_cpu_profile.channel_block() == block


def test_without_nchwc_the_conv_hints_are_dropped() -> None:
    profile = cpu_profile(_cpu("avx2 fma avx512f"), opt_level="extended")
    assert profile.candidate_periods("conv", "out_channels") == ()
    assert profile.candidate_periods("dense", "out_channels") != ()
    assert profile.name.endswith("-extended")


def test_analytic_profile_follows_the_target() -> None:
    profile = profile_for(AnalyticTarget(block=32, lanes=4))
    assert profile.family == "analytic"
    assert profile.candidate_periods("conv", "out_channels") == (32,)
    assert profile.candidate_periods("conv", "channels") == (4,)
    assert profile.candidate_periods("dense", "out_channels") == (32,)


@pytest.mark.parametrize(
    ("dataflow", "hinted"),
    [
        ("ws", {"out_channels": 24, "channels": 8}),
        ("os", {"out_channels": 24, "height": 8}),
        ("is", {"channels": 8, "height": 24}),
    ],
)
def test_scalesim_profile_follows_the_dataflow(dataflow: str, hinted: dict[str, int]) -> None:
    profile = profile_for(ScaleSimTarget(rows=8, cols=24, dataflow=dataflow, clock_mhz=500))
    assert profile.family == "accelerator"
    conv = {name: hint.periods[0] for name, hint in profile.hints[LayerKind.CONV].items()}
    assert conv == hinted
    assert profile.architecture["clock_mhz"] == 500


def test_targets_without_a_profile_get_a_generic_one() -> None:
    profile = profile_for(SimpleNamespace(name="mydevice"))
    assert profile.family == "generic" and not profile.hints
    assert profile.name == "generic-mydevice"
    gpu = OnnxRuntimeTarget(name="cuda", provider="CUDAExecutionProvider")
    assert gpu.hardware_profile().family == "generic"


def test_the_target_supplies_its_profile_whatever_its_name() -> None:
    own = HardwareProfile(name="mine", family="accelerator")
    impostor = SimpleNamespace(name="analytic", provider="CPUExecutionProvider")
    assert profile_for(impostor).family == "generic"  # no dispatch on names
    assert profile_for(SimpleNamespace(name="cpu", hardware_profile=lambda: own)) is own


def test_profile_round_trips_and_overrides(tmp_path: Path) -> None:
    profile = cpu_profile(_cpu("avx2 fma"))
    path = profile.save(tmp_path / "p" / "mine.yaml")
    loaded = profile_for(AnalyticTarget(), override=path)
    assert loaded.hints == profile.hints
    assert loaded.architecture == profile.architecture
    assert loaded.source == str(path)


@pytest.mark.parametrize(
    "name",
    [
        p.name.removesuffix(".yaml")
        for p in (resources.files("prmodel.targets") / "builtin_profiles").iterdir()
    ],
)
def test_every_shipped_profile_loads(name: str) -> None:
    profile = builtin_profile(name)
    assert profile.name == name and profile.family == "cpu"


def test_unknown_builtin_profile() -> None:
    with pytest.raises(ProfileError, match="no built-in hardware profile 'nope'"):
        builtin_profile("nope")


GOOD: dict[str, Any] = {
    "schema": 1,
    "name": "x",
    "family": "cpu",
    "architecture": {"lanes": 8},
    "steps": {"conv": {"out_channels": {"periods": [8]}}},
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "'name'"),
        ({"family": "gpu"}, "'family'"),
        ({"schema": 2}, "'schema'"),
        ({"bogus": 1}, "'bogus'"),
        ({"architecture": {"lanes": [8]}}, "'architecture.lanes'"),
        ({"steps": {"softmax": {}}}, "'steps.softmax'"),
        ({"steps": {"dense": {"height": {"periods": [8]}}}}, "'steps.dense.height'"),
        ({"steps": {"conv": {"out_channels": {"periods": [0]}}}}, "periods'"),
        ({"steps": {"conv": {"out_channels": {"periods": 8}}}}, "periods'"),
        ({"steps": {"conv": {"out_channels": {"periods": [8], "step": 0}}}}, ".step'"),
        ({"steps": {"conv": {"out_channels": {"period": [8]}}}}, ".period'"),
    ],
)
def test_bad_profile_files_name_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(ProfileError) as caught:
        HardwareProfile.load(path)
    message = str(caught.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_unreadable_profile_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        HardwareProfile.load(bad)
    with pytest.raises(ProfileError, match="cannot read hardware profile"):
        HardwareProfile.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("dataflow", "blocks"),
    [
        ("ws", GemmBlocks(k=16, n=8, fill=2 * 16 + 8 - 2)),
        ("os", GemmBlocks(m=16, n=8, fill=16 + 8 - 2)),
        ("is", GemmBlocks(k=16, m=8, fill=2 * 16 + 8 - 2)),
    ],
)
def test_gemm_blocks_of_a_systolic_array(dataflow: str, blocks: GemmBlocks) -> None:
    profile = ScaleSimTarget(rows=16, cols=8, dataflow=dataflow).hardware_profile()
    assert profile.gemm_blocks("conv") == blocks
    assert profile.gemm_blocks("dense") == blocks
    assert profile.gemm_blocks("maxpool") is None


def test_gemm_blocks_of_the_cpu_and_analytic_profiles() -> None:
    cpu = builtin_profile("ort-cpu-avx512")
    assert cpu.gemm_blocks("conv") == GemmBlocks(k=16, n=16, reduction="channels")
    assert cpu.gemm_blocks("dense") == GemmBlocks(n=32)
    analytic = AnalyticTarget(block=16, lanes=8).hardware_profile()
    assert analytic.gemm_blocks("dense") == GemmBlocks(k=8, n=16, reduction="channels")
    generic = HardwareProfile(name="g", family="generic")
    assert generic.gemm_blocks("conv") is None


@pytest.mark.parametrize("bad", [{"m": 0}, {"fill": -1}, {"reduction": "rows"}])
def test_bad_gemm_blocks_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ProfileError):
        GemmBlocks.from_dict(bad)
