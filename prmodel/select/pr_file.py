"""The PR file a target may use: found in the workspace and checked against this machine.

A PR file (``representatives/<target_id>.yaml``) records the fingerprint of the machine it
was selected on (``metadata.fingerprint``; files of earlier versions only its
``fingerprint_hash`` and the hardware profile). :func:`representatives_for` reads the running
target's file and refuses one selected on another machine, unless the user names it on
purpose (``--from-other-machine ID``); where the target has no file but the workspace holds
one of an old id or of another machine, the error says which and what to do
(:func:`prmodel.targets.identity.explain_missing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prmodel.errors import PrmodelError
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.base import Target
from prmodel.targets.identity import (
    OldTargetIdError,
    check_recorded,
    explain_missing,
    foreign_use_remedy,
)
from prmodel.workspace import Workspace

SELECT_HERE = "run `prmodel select` here"


class MissingRepresentativesError(PrmodelError, FileNotFoundError):
    """The target has no PR file (and the workspace holds none of another machine)."""


@dataclass(frozen=True)
class CheckedRepresentatives:
    """A PR set that may serve the running target, with what the check has to say."""

    representatives: RepresentativeSet
    path: Path
    warnings: tuple[str, ...] = ()
    from_other_machine: str | None = None
    """The PR set's target id where it was used on purpose from another machine."""


def recorded_fingerprint(representatives: RepresentativeSet) -> Mapping[str, Any] | None:
    """The fingerprint a PR set records; for files of earlier versions, the CPU model and
    ISA flags their hardware profile names (None where it names neither)."""
    metadata = representatives.metadata
    full = metadata.get("fingerprint")
    if isinstance(full, Mapping) and full:
        return full
    profile = metadata.get("profile")
    architecture = profile.get("architecture") if isinstance(profile, Mapping) else None
    if isinstance(architecture, Mapping) and architecture.get("cpu_model"):
        return {"cpu_model": architecture["cpu_model"]}
    return None


def representatives_for(
    target: Target,
    workspace: Workspace,
    *,
    path: Path | None = None,
    from_other_machine: str | None = None,
) -> CheckedRepresentatives:
    """The PR set the target may use: its own file, or the one named on purpose.

    Args:
        target: The running target.
        workspace: Holds ``representatives/``.
        path: A PR file given explicitly (checked all the same).
        from_other_machine: Use ``representatives/<this id>.yaml`` of another machine on
            purpose (or allow ``path`` to be another machine's).

    Raises:
        MissingRepresentativesError: no PR file.
        OtherMachineError: a PR file selected on another machine, not on purpose.
        OldTargetIdError: the workspace holds the PR file under an old id.
        RepresentativesError: an unreadable or inconsistent PR file.
    """
    chosen = path or workspace.representatives_path(from_other_machine or target.target_id)
    if not chosen.is_file():
        if path is None and from_other_machine is None:
            explained = explain_missing(
                "PR file",
                target,
                _other_files(workspace, target.target_id),
                verb="selected",
                here=SELECT_HERE,
                workspace=_workspace_arg(workspace),
            )
            if explained is not None:
                raise explained
        raise MissingRepresentativesError(
            f"no Performance Representatives at {_label(chosen, workspace)}: "
            f"run `prmodel select --target {target.name}` first or pass --representatives"
        )
    return check_representatives(
        RepresentativeSet.load(chosen),
        chosen,
        target,
        workspace=workspace,
        on_purpose=from_other_machine is not None,
    )


def check_representatives(
    representatives: RepresentativeSet,
    path: Path,
    target: Target,
    *,
    workspace: Workspace | None = None,
    on_purpose: bool = False,
) -> CheckedRepresentatives:
    """``representatives`` read from ``path``, checked against the running target.

    Raises:
        OtherMachineError: selected on another machine, not on purpose.
    """
    label = _label(path, workspace)
    notes = check_recorded(
        label,
        recorded_fingerprint(representatives),
        target.fingerprint(),
        verb="selected",
        on_purpose=on_purpose,
        remedy=foreign_use_remedy(SELECT_HERE, representatives.target_id),
    )
    foreign = representatives.target_id if on_purpose and notes else None
    return CheckedRepresentatives(representatives, path, tuple(notes), foreign)


def refuse_old_pr_file(target: Target, workspace: Workspace) -> None:
    """Refuse where the target has no PR file but the workspace holds one of its old id
    (``prmodel migrate`` renames it), rather than selecting a second one beside it.

    Raises:
        OldTargetIdError: a PR file of the target's old id.
    """
    if workspace.representatives_path(target.target_id).is_file():
        return
    explained = explain_missing(
        "PR file",
        target,
        _other_files(workspace, target.target_id),
        verb="selected",
        here=SELECT_HERE,
        workspace=_workspace_arg(workspace),
    )
    if isinstance(explained, OldTargetIdError):
        raise explained


def _other_files(
    workspace: Workspace, target_id: str
) -> list[tuple[str, str, Mapping[str, Any] | None]]:
    found = []
    for path in sorted(workspace.representatives_dir.glob("*.yaml")):
        if path.stem == target_id:
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue  # not a PR file this lookup can describe; using it names the fault
        if not isinstance(data, dict) or not isinstance(data.get("target_id"), str):
            continue
        metadata = data.get("metadata")
        prs = RepresentativeSet(
            data["target_id"], (), metadata if isinstance(metadata, dict) else {}
        )
        found.append((_label(path, workspace), path.stem, recorded_fingerprint(prs)))
    return found


def _label(path: Path, workspace: Workspace | None) -> str:
    if workspace is not None and path.resolve().is_relative_to(workspace.root):
        return str(path.resolve().relative_to(workspace.root))
    return str(path)


def _workspace_arg(workspace: Workspace) -> str:
    return "" if workspace.root == Path.cwd().resolve() else str(workspace.root)


__all__ = [
    "CheckedRepresentatives",
    "MissingRepresentativesError",
    "check_representatives",
    "recorded_fingerprint",
    "refuse_old_pr_file",
    "representatives_for",
]
