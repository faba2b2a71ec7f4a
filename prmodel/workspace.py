"""The workspace: where sweeps, measurements, representatives, models and runs live.

The repository root is itself a workspace; ``prmodel init DIR`` makes another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBDIRS = ("sweeps", "representatives", "trained_models", "notebooks", "benchmarks/results")


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace directory (nothing is created until asked)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Workspace:
        return cls(Path(root).resolve())

    @property
    def sweeps_dir(self) -> Path:
        return self.root / "sweeps"

    @property
    def store_path(self) -> Path:
        """The SQLite measurement store, the source of truth for every benchmark."""
        return self.root / "sweeps" / "measurements.sqlite"

    @property
    def representatives_dir(self) -> Path:
        return self.root / "representatives"

    def representatives_path(self, target_id: str) -> Path:
        return self.representatives_dir / f"{target_id}.yaml"

    def plots_dir(self, target_id: str) -> Path:
        return self.representatives_dir / target_id

    @property
    def models_dir(self) -> Path:
        return self.root / "trained_models"

    def model_dir(self, target_id: str, kind: str) -> Path:
        return self.models_dir / target_id / kind

    @property
    def mlflow_uri(self) -> str:
        """Default MLflow tracking store: an SQLite file in the workspace."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def results_dir(self) -> Path:
        return self.root / "benchmarks" / "results"

    def create(self) -> Workspace:
        """Make the workspace's folders; returns self."""
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self
