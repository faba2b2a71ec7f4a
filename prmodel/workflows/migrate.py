"""``prmodel migrate``: rename a workspace's artifacts from old target ids to today's ids.

Target ids once named only the settings (``ort-cpu-t1-all``); they now name the hardware too
(``ort-cpu-avx512-3f9c-t1-all``, :func:`prmodel.targets.onnxruntime.target.ort_target_id`).
:func:`migrate_workspace` finds everything stored under an old id and renames it to the id
its own recorded fingerprint gives, whichever machine that was:

- the store's rows (measurements, plan memberships, targets, cluster stamps);
- PR files ``representatives/<id>.yaml`` (the fingerprint is written into their metadata)
  and their plot folders;
- model folders ``trained_models/<id>/`` (each card's ``target_id``, and its
  ``representatives_sha256`` where it matched the renamed PR file) with their calibration;
- plan files ``sweeps/<name>-<id>.yaml`` of an id that maps to one machine only.

An artifact whose machine cannot be told (a PR file that records only a fingerprint hash
that neither the store nor this machine has) is left as it is, and the report says why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prmodel.measure.machines import stored_targets
from prmodel.measure.store import MeasurementStore
from prmodel.select.pr_file import recorded_fingerprint
from prmodel.select.representatives import RepresentativesError, RepresentativeSet
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.targets.identity import describe_machine, differences, id_for, old_target_id
from prmodel.train.artifacts import CARD_NAME, file_sha256
from prmodel.workspace import Workspace


@dataclass(frozen=True)
class Renamed:
    """One artifact renamed (or, in a dry run, to be renamed)."""

    what: str
    """``store``, ``PR file``, ``plots``, ``models`` or ``plan file``."""
    old: str
    new: str
    machine: str
    """The machine it was made on, in words."""
    this_machine: bool
    rows: int = 0
    """Measurements moved (``store`` only)."""


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`migrate_workspace` renamed and what it left, with why."""

    workspace: Path
    renamed: tuple[Renamed, ...] = ()
    left: tuple[str, ...] = ()
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "dry_run": self.dry_run,
            "renamed": [asdict(r) for r in self.renamed],
            "left": list(self.left),
        }


@dataclass
class _Migration:
    workspace: Workspace
    target: Target
    dry_run: bool
    renamed: list[Renamed] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    known: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Fingerprints by hash: this machine's and the store's, to place old PR files."""
    new_ids: dict[str, set[str]] = field(default_factory=dict)
    """Every old id migrated, with the new ids it went to."""
    pr_sha: dict[str, str] = field(default_factory=dict)
    """sha256 of each PR file renamed: old -> new (model cards record it)."""

    def add(self, item: Renamed, old_id: str, new_id: str) -> None:
        self.renamed.append(item)
        self.new_ids.setdefault(old_id, set()).add(new_id)

    def machine(self, fingerprint: Mapping[str, Any]) -> tuple[str, bool]:
        running = self.target.fingerprint()
        return describe_machine(fingerprint), not differences(fingerprint, running)[0]

    def new_id(self, old_id: str, fingerprint: Mapping[str, Any] | None) -> str | None:
        """The id ``fingerprint`` has today, where ``old_id`` is its old id."""
        if not fingerprint or old_target_id(self.target, fingerprint) != old_id:
            return None
        return id_for(self.target, fingerprint)


def migrate_workspace(
    workspace: Workspace, target: Target, *, dry_run: bool = False
) -> MigrationReport:
    """Rename the workspace's artifacts of old target ids (see the module docstring).

    Args:
        workspace: The workspace to migrate.
        target: A target of the kind whose ids changed (``cpu``: every ONNX Runtime
            artifact is renamed, whatever machine or provider it was made with).
        dry_run: Only report what would be renamed.

    Returns:
        What was renamed, and what was left with the reason.
    """
    job = _Migration(workspace, target, dry_run)
    job.known[fingerprint_hash(target.fingerprint())] = target.fingerprint()
    if workspace.store_path.is_file():
        _migrate_store(job)
    _migrate_pr_files(job)
    _migrate_models(job)
    _migrate_plan_files(job)
    return MigrationReport(workspace.root, tuple(job.renamed), tuple(job.left), dry_run)


# -- the store ----------------------------------------------------------------------------------
def _migrate_store(job: _Migration) -> None:
    with MeasurementStore(job.workspace.store_path, readonly=job.dry_run) as store:
        for stored in stored_targets(store):
            fingerprint = stored.fingerprint or job.known.get(stored.fingerprint_hash)
            if fingerprint:
                job.known.setdefault(stored.fingerprint_hash, fingerprint)
            new = job.new_id(stored.target_id, fingerprint)
            if new is None:
                if not fingerprint and _looks_old(job, stored.target_id):
                    job.left.append(
                        f"{stored.rows} store rows of {stored.target_id} (fingerprint "
                        f"{stored.fingerprint_hash}) record no fingerprint, so their machine "
                        "and new id are unknown: left under the old id"
                    )
                continue
            assert fingerprint is not None
            rows = stored.rows
            if not job.dry_run:
                rows = store.rename_target(stored.target_id, new, stored.fingerprint_hash)
            machine, here = job.machine(fingerprint)
            item = Renamed("store", stored.target_id, new, machine, here, rows)
            job.add(item, stored.target_id, new)


def _looks_old(job: _Migration, target_id: str) -> bool:
    old = old_target_id(job.target)
    return old is not None and target_id.split("-")[:2] == old.split("-")[:2]


# -- PR files -----------------------------------------------------------------------------------
def _migrate_pr_files(job: _Migration) -> None:
    folder = job.workspace.representatives_dir
    for path in sorted(folder.glob("*.yaml")):
        try:
            prs = RepresentativeSet.load(path)
        except RepresentativesError:
            continue  # not a PR file this can rename; using it names the fault
        fingerprint = _pr_fingerprint(job, prs)
        new = job.new_id(prs.target_id, fingerprint)
        if new is None:
            if fingerprint is None and _looks_old(job, prs.target_id):
                job.left.append(
                    f"{_rel(job, path)} records no fingerprint that this machine or the store "
                    "knows, so its machine and new id are unknown: select again with "
                    "`prmodel select`, or rename it by hand"
                )
            continue
        assert fingerprint is not None
        job.known.setdefault(fingerprint_hash(fingerprint), fingerprint)
        target_path = job.workspace.representatives_path(new)
        machine, here = job.machine(fingerprint)
        if target_path.exists():
            job.left.append(f"{_rel(job, path)} was not renamed: {target_path.name} exists")
            continue
        item = Renamed("PR file", _rel(job, path), _rel(job, target_path), machine, here)
        job.add(item, prs.target_id, new)
        old_sha = file_sha256(path)
        if not job.dry_run:
            metadata = dict(prs.metadata)
            metadata["fingerprint"] = dict(fingerprint)
            plan_file = str(metadata.get("plan_file") or "")
            suffix = f"-{prs.target_id}.yaml"
            if plan_file.endswith(suffix):
                metadata["plan_file"] = plan_file.removesuffix(suffix) + f"-{new}.yaml"
            replace(prs, target_id=new, metadata=metadata).save(target_path)
            path.unlink()
            job.pr_sha[old_sha] = file_sha256(target_path)
        plots = job.workspace.plots_dir(prs.target_id)
        if plots.is_dir() and not job.workspace.plots_dir(new).exists():
            if not job.dry_run:
                os.replace(plots, job.workspace.plots_dir(new))
            moved = _rel(job, job.workspace.plots_dir(new))
            job.add(Renamed("plots", _rel(job, plots), moved, machine, here), prs.target_id, new)


def _pr_fingerprint(job: _Migration, prs: RepresentativeSet) -> Mapping[str, Any] | None:
    full = prs.metadata.get("fingerprint")
    if isinstance(full, Mapping) and full:
        return full
    digest = prs.metadata.get("fingerprint_hash")
    found = job.known.get(str(digest)) if digest else None
    partial = recorded_fingerprint(prs)
    if found and partial and differences(partial, found)[0]:
        return None  # the hash says one machine, the profile another: do not guess
    return found


# -- models -------------------------------------------------------------------------------------
def _migrate_models(job: _Migration) -> None:
    for root in sorted(p for p in job.workspace.models_dir.glob("*") if p.is_dir()):
        cards = sorted(root.glob(f"*/{CARD_NAME}"))
        fingerprints = []
        for card_path in cards:
            try:
                fingerprints.append(json.loads(card_path.read_text()).get("fingerprint") or {})
            except (OSError, ValueError, AttributeError):
                fingerprints.append({})
        news = {job.new_id(root.name, fp) for fp in fingerprints}
        if not cards or news == {None}:
            if cards and _looks_old(job, root.name):
                job.left.append(
                    f"{_rel(job, root)}: its model cards record no fingerprint of a known "
                    "machine: left under the old id (retrain with `prmodel train`)"
                )
            continue
        if len(news) != 1:
            job.left.append(
                f"{_rel(job, root)} holds models of several machines (or cards without a "
                "fingerprint): left under the old id; retrain with `prmodel train`"
            )
            continue
        new = news.pop()
        assert new is not None
        destination = job.workspace.models_dir / new
        if destination.exists():
            job.left.append(f"{_rel(job, root)} was not renamed: {destination.name} exists")
            continue
        job.known.setdefault(fingerprint_hash(fingerprints[0]), fingerprints[0])
        machine, here = job.machine(fingerprints[0])
        item = Renamed("models", _rel(job, root), _rel(job, destination), machine, here)
        job.add(item, root.name, new)
        if not job.dry_run:
            for card_path in cards:
                _rewrite_json(card_path, new, job.pr_sha, None)
            calibration = root / "calibration.json"
            if calibration.is_file():
                _rewrite_json(calibration, new, {}, fingerprints[0])
            os.replace(root, destination)


def _rewrite_json(
    path: Path,
    new_id: str,
    pr_sha: Mapping[str, str],
    fingerprint: Mapping[str, Any] | None,
) -> None:
    data = json.loads(path.read_text())
    data["target_id"] = new_id
    sha = data.get("representatives_sha256")
    if sha in pr_sha:
        data["representatives_sha256"] = pr_sha[sha]
    if fingerprint and isinstance(data.get("notes"), dict):
        data["notes"].setdefault("fingerprint", dict(fingerprint))
    text = json.dumps(data, indent=2, sort_keys=path.name == CARD_NAME)
    temporary = path.with_name(f".{path.name}.migrate")
    temporary.write_text(text + ("" if path.name == CARD_NAME else "\n"))
    os.replace(temporary, path)


# -- plan files ---------------------------------------------------------------------------------
def _migrate_plan_files(job: _Migration) -> None:
    for old_id, news in sorted(job.new_ids.items()):
        new = _plans_id(job, old_id, news)
        for path in sorted(job.workspace.sweeps_dir.glob(f"*-{old_id}.yaml")):
            if new is None:
                job.left.append(
                    f"{_rel(job, path)} was left: {old_id} went to several new ids "
                    f"({', '.join(sorted(news))}), so which one its plans are for is unknown"
                )
                continue
            name = path.name.removesuffix(f"-{old_id}.yaml") + f"-{new}.yaml"
            destination = path.with_name(name)
            if destination.exists():
                job.left.append(f"{_rel(job, path)} was not renamed: {name} exists")
                continue
            if not job.dry_run:
                os.replace(path, destination)
            fingerprint = _fingerprint_of_id(job, new)
            machine, here = job.machine(fingerprint) if fingerprint else ("", False)
            item = Renamed("plan file", _rel(job, path), _rel(job, destination), machine, here)
            job.renamed.append(item)


def _plans_id(job: _Migration, old_id: str, news: set[str]) -> str | None:
    """The new id of a plan file of ``old_id``: the only one, else the one its PR file went to
    (plans are drawn from it), else this machine's (where the workspace was used)."""
    if len(news) == 1:
        return next(iter(news))
    by_pr = {r.new for r in job.renamed if r.what == "PR file" and Path(r.old).stem == old_id}
    if len(by_pr) == 1:
        return Path(by_pr.pop()).stem
    here = id_for(job.target, job.target.fingerprint())
    return here if here in news else None


def _fingerprint_of_id(job: _Migration, target_id: str) -> Mapping[str, Any] | None:
    for fingerprint in job.known.values():
        if id_for(job.target, fingerprint) == target_id:
            return fingerprint
    return None


def _rel(job: _Migration, path: Path) -> str:
    root = job.workspace.root
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


__all__ = ["MigrationReport", "Renamed", "migrate_workspace"]
