"""The workspace: where sweeps, measurements, representatives, models and runs live.

The repository root is itself a workspace; ``prmodel init DIR`` makes another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from prmodel.errors import PrmodelError

SUBDIRS = ("sweeps", "representatives", "trained_models", "notebooks", "benchmarks/results")


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace directory (nothing is created until asked)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> Workspace:
        """The workspace in folder ``root`` (which need not exist yet).

        Raises:
            WorkspaceError: ``root`` is an existing file, not a folder.
        """
        path = Path(root).resolve()
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"workspace {root} is a file, not a folder")
        return cls(path)

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
        """Default MLflow tracking store: an SQLite file in the workspace.

        The path is URL-quoted: a ``%`` or ``?`` in a folder name would otherwise be read as
        an escape or the start of the URI's query (SQLAlchemy unquotes it again).
        """
        return f"sqlite:///{quote(str(self.root / 'mlflow.db'))}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def results_dir(self) -> Path:
        return self.root / "benchmarks" / "results"

    def create(self) -> Workspace:
        """Make the workspace's folders; returns self.

        Raises:
            WorkspaceError: a folder cannot be made (a file in the way, no permission).
        """
        for sub in SUBDIRS:
            folder = self.root / sub
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                problem = "a file is in the way"
            except OSError as exc:
                problem = str(exc.strerror).lower()
            else:
                continue
            raise WorkspaceError(f"cannot make the folder {folder}: {problem}")
        return self


class WorkspaceError(PrmodelError):
    """A workspace folder that is a file, or cannot be created."""
