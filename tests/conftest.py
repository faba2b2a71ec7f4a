"""Shared fixtures: deterministic targets, throw-away workspaces and the local CPU's profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_fixtures import Reviewed, build_reviewed

from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.targets.profiles import HardwareProfile
from prmodel.workspace import Workspace


@pytest.fixture
def analytic_target() -> AnalyticTarget:
    """A deterministic blocked-roofline target (block 16, lanes 8)."""
    return AnalyticTarget()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An empty workspace in a temporary directory."""
    return Workspace.at(tmp_path / "ws").create()


@pytest.fixture(scope="session")
def local_cpu_profile() -> HardwareProfile:
    """The hardware profile of this machine's CPU target (ONNX Runtime, ``opt=all``).

    Tests whose expectation depends on the CPU (its ISA, its NCHWc block) derive it from
    this profile, never from the machine they were written on.
    """
    return OnnxRuntimeTarget().hardware_profile()


@pytest.fixture(scope="session")
def nchwc_block(local_cpu_profile: HardwareProfile) -> int:
    """The channel block ONNX Runtime pads NCHWc tensors to here: 16 with AVX-512, 8 with AVX2."""
    block = local_cpu_profile.channel_block()
    if block is None:
        pytest.skip(f"the CPU profile {local_cpu_profile.name} has no NCHWc block")
    return block


@pytest.fixture(scope="session")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    """A workspace with training, calibration and estimate runs in its MLflow store
    (tests/review_fixtures.py); tests may add runs, never remove them."""
    return build_reviewed(tmp_path_factory.mktemp("reviewed"))
