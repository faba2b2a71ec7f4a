"""Which machines a store's rows were measured on, and what that means for the running target.

Every row is keyed by ``(target_id, fingerprint_hash)`` and readers pick the running target's
pair, so rows of another machine are never mixed in. This module makes that loud: it names
the machines a store holds (:func:`stored_targets`), refuses to add rows beside this
machine's rows of an old target id (:func:`refuse_old_ids`: ``prmodel migrate`` renames
them first), and says which other machines' rows a reader leaves out
(:func:`other_machines_note`, :func:`ignored_rows_note`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prmodel.measure.plans import SweepPlan
from prmodel.measure.store import MeasurementStore
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.targets.identity import (
    OldTargetIdError,
    check_recorded,
    describe_machine,
    differences,
    foreign_use_remedy,
    migrate_command,
    old_target_id,
    same_settings,
)


@dataclass(frozen=True)
class StoredTarget:
    """One ``(target_id, fingerprint_hash)`` of a store: its fingerprint and its rows."""

    target_id: str
    fingerprint_hash: str
    fingerprint: Mapping[str, Any] | None
    rows: int

    def describe(self) -> str:
        """``ort-... on Intel(R) Xeon(R) Processor (avx512, onnxruntime 1.32.0)``."""
        machine = describe_machine(self.fingerprint) if self.fingerprint else "an unknown machine"
        return f"{self.target_id} on {machine}"


def stored_targets(store: MeasurementStore) -> list[StoredTarget]:
    """Every target and fingerprint the store holds rows of (or has registered)."""
    targets = store.targets()
    counts = store.summary().groupby("target_id")[["ok", "error"]].sum()
    found = []
    for row in targets.itertuples(index=False):
        fingerprint = json.loads(row.fingerprint) if row.fingerprint else None
        rows = len(store.measured_keys(row.target_id, row.fingerprint_hash))
        if row.target_id in counts.index or rows:
            found.append(StoredTarget(row.target_id, row.fingerprint_hash, fingerprint, rows))
    return found


def refuse_old_ids(store: MeasurementStore, target: Target) -> None:
    """Refuse to measure while the store holds this machine's rows under the target's old id.

    Raises:
        OldTargetIdError: such rows exist; ``prmodel migrate`` renames them.
    """
    old = old_target_id(target)
    if old is None:
        return
    digest = fingerprint_hash(target.fingerprint())
    rows = len(store.measured_keys(old, digest))
    if rows:
        raise OldTargetIdError(
            f"the store {store.path} holds {rows} measurements of this machine under the old "
            f"target id {old} (now {target.target_id}): run "
            f"{migrate_command(_workspace_of(store))} to rename them"
        )


def _workspace_of(store: MeasurementStore) -> str:
    """The workspace folder of a store at ``<workspace>/sweeps/measurements.sqlite`` ("" for
    the current folder or a store elsewhere)."""
    path = store.path.resolve()
    if path.parent.name != "sweeps" or path.parent.parent == Path.cwd().resolve():
        return ""
    return str(path.parent.parent)


def other_machines_note(store: MeasurementStore, target: Target) -> str:
    """``; the store holds rows of ... only`` where it has the target's counterparts of
    other machines (or of its old id), else ``""``: appended to a "no rows" error."""
    running = target.fingerprint()
    old = old_target_id(target)
    others = [
        stored
        for stored in stored_targets(store)
        if stored.rows
        and stored.target_id != target.target_id
        and (
            stored.target_id == old
            or (stored.fingerprint and same_settings(stored.fingerprint, running))
        )
    ]
    if not others:
        return ""
    named = ", ".join(stored.describe() for stored in others[:3])
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    old_ids = any(stored.target_id == old for stored in others)
    hint = f" (old ids: run {migrate_command(_workspace_of(store))})" if old_ids else ""
    return f"; this machine is {describe_machine(running)}, the store holds {named}{more}{hint}"


def ignored_rows_note(store: MeasurementStore, target: Target) -> str | None:
    """A warning where the store holds rows of the running target's id measured with
    another fingerprint (another core count or cache size), which readers leave out."""
    running = target.fingerprint()
    digest = fingerprint_hash(running)
    others = [
        stored
        for stored in stored_targets(store)
        if stored.target_id == target.target_id and stored.fingerprint_hash != digest
    ]
    if not others:
        return None
    rows = sum(stored.rows for stored in others)
    keys = sorted(
        {k for s in others if s.fingerprint for k in sum(differences(s.fingerprint, running), ())}
    )
    what = f" ({', '.join(f'{k} differs' for k in keys)})" if keys else ""
    return (
        f"the store holds {rows} more measurements of {target.target_id} with another "
        f"fingerprint{what}; they are left out, only this machine's rows are used"
    )


def check_plans(
    plans: Sequence[SweepPlan], target: Target, *, from_other_machine: str | None = None
) -> list[str]:
    """Check plan files drawn for a target (their ``target:`` field) against the running one.

    A plan drawn from another machine's PR file or network mapping holds that machine's
    plateaus; sweeping it here is refused unless named on purpose. Returns warnings.

    Raises:
        OtherMachineError: a plan drawn for another machine, not on purpose.
    """
    notes: list[str] = []
    seen: set[str] = set()
    for plan in plans:
        made = plan.made_for
        if not made or made["target_id"] in seen:
            continue
        seen.add(made["target_id"])
        notes += check_recorded(
            f"plan {plan.name!r}",
            made["fingerprint"],
            target.fingerprint(),
            verb="drawn",
            on_purpose=from_other_machine == made["target_id"],
            remedy=foreign_use_remedy(
                "make the plan here (`prmodel plan`, `prmodel select`)", made["target_id"]
            ),
        )
    return notes


__all__ = [
    "StoredTarget",
    "check_plans",
    "ignored_rows_note",
    "other_machines_note",
    "refuse_old_ids",
    "stored_targets",
]
