"""Shared fixtures: deterministic targets and throw-away workspaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from prmodel.targets.analytic import AnalyticTarget
from prmodel.workspace import Workspace


@pytest.fixture
def analytic_target() -> AnalyticTarget:
    """A deterministic blocked-roofline target (block 16, lanes 8)."""
    return AnalyticTarget()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An empty workspace in a temporary directory."""
    return Workspace.at(tmp_path / "ws").create()
