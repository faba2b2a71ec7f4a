"""The ``prmodel train`` workflow: a target's training and test sets from the store, trained.

:func:`train_target` finds the training sets ``<train_set>-<kind>`` of a target in the
workspace's store, reads (or draws and measures) the test sets ``<test_set>-<kind>``
(:mod:`prmodel.workflows.datasets`, the one test seed), trains one model per kind with the
target's PR features where a PR file exists (:func:`prmodel.train.training.train_models`) and
logs the report to MLflow when asked (:func:`prmodel.train.tracking.log_training`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

from prmodel.layers import LayerKind
from prmodel.measure.machines import ignored_rows_note, other_machines_note, refuse_old_ids
from prmodel.measure.store import MeasurementStore
from prmodel.select.pr_file import (
    CheckedRepresentatives,
    MissingRepresentativesError,
    representatives_for,
)
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.train.settings import TrainSettings
from prmodel.train.tracking import log_training
from prmodel.train.training import OverlapWarning, TrainingReport, train_models
from prmodel.workflows.datasets import (
    PR_SET,
    TEST_SET,
    DatasetError,
    concat_rows,
    stored_or_new_test_rows,
    training_kinds,
    training_rows,
)
from prmodel.workspace import Workspace

DEFAULT_TEST_SIZE = 100
"""Random layers drawn per kind where a test set is missing."""


def train_target(
    target: Target,
    *,
    workspace: Workspace,
    kinds: Sequence[LayerKind] | None = None,
    settings: TrainSettings | None = None,
    train_set: str = PR_SET,
    test_set: str = TEST_SET,
    test_size: int = DEFAULT_TEST_SIZE,
    track: bool = True,
    progress: bool = True,
    on_note: Callable[[str], None] | None = None,
    from_other_machine: str | None = None,
) -> TrainingReport:
    """Train one latency model per kind of ``target`` from the sets in the workspace's store.

    Args:
        target: The target whose measurements are trained on (this machine's fingerprint).
        workspace: Holds the store, the PR file; models go to its ``trained_models/``.
        kinds: Kinds to train (default: every kind with a training set).
        settings: Regressor, Optuna trials, folds, seed.
        train_set: Training rows are the store's plan ``<train_set>-<kind>``.
        test_set: Test rows are the plan ``<test_set>-<kind>``, drawn at random (the one
            test seed) and measured first where it does not exist yet.
        test_size: Random layers to draw per kind where a test set is missing.
        track: Log every kind as an MLflow run.
        progress: Show the runner's and the tuner's progress bars.
        on_note: Told, in one sentence each, that a test set is drawn or that no PR file
            exists (training then goes without architecture features).
        from_other_machine: Use the PR file of this target id, selected on another machine,
            on purpose (the rows are always this machine's).

    Returns:
        The training report (with MLflow run ids when tracked).

    Raises:
        DatasetError: no store, no training set, or a set without this fingerprint's rows.
        OtherMachineError: the PR file was selected on another machine (not on purpose).
        OldTargetIdError: the store or the PR file is under the target's old id.
    """
    if not workspace.store_path.exists():
        raise DatasetError(f"no measurement store at {workspace.store_path}; run 'prmodel sweep'")
    fingerprint = target.fingerprint()
    digest = fingerprint_hash(fingerprint)
    # Checked first: a PR file of another machine is refused before any test set is measured.
    checked = _representatives(target, workspace, from_other_machine)
    notes = list(checked.warnings) if checked is not None else []
    with MeasurementStore(workspace.store_path) as store:
        refuse_old_ids(store, target)
        ignored = ignored_rows_note(store, target)
        notes += [ignored] if ignored else []
        try:
            chosen = list(kinds or training_kinds(store, target.target_id, train_set=train_set))
            train_rows = concat_rows(
                [
                    training_rows(store, target.target_id, digest, kind, train_set=train_set)
                    for kind in chosen
                ]
            )
        except DatasetError as exc:
            # Name the machines whose rows the store holds instead, if any.
            raise DatasetError(f"{exc}{other_machines_note(store, target)}") from None
        test_rows = concat_rows(
            [
                stored_or_new_test_rows(
                    target,
                    kind,
                    store=store,
                    fingerprint_hash=digest,
                    size=test_size,
                    test_set=test_set,
                    progress=progress,
                    on_draw=on_note,
                )
                for kind in chosen
            ]
        )
    representatives = checked.representatives if checked is not None else None
    pr_path = checked.path if checked is not None else None
    if representatives is None and on_note is not None:
        on_note(
            f"no PR file at {workspace.representatives_path(target.target_id)}: training "
            "without architecture features"
        )
    for note in notes:
        if on_note is not None:
            on_note(f"warning: {note}")
    with warnings.catch_warnings():
        # Dropped overlapping test rows are counted in each result (dropped_overlap) instead.
        warnings.simplefilter("ignore", OverlapWarning)
        report = train_models(
            train_rows,
            target_id=target.target_id,
            fingerprint_hash=digest,
            fingerprint=fingerprint,
            kinds=chosen,
            settings=settings,
            test_frame=test_rows,
            representatives=representatives,
            representatives_path=pr_path if representatives else None,
            workspace=workspace,
            progress=progress,
        )
    report = replace(report, warnings=(*report.warnings, *notes))
    return log_training(report, workspace=workspace, train_set=train_set) if track else report


def _representatives(
    target: Target, workspace: Workspace, from_other_machine: str | None
) -> CheckedRepresentatives | None:
    """The PR file training may use; None where the target has none (and the workspace holds
    none of another machine or old id, which would be refused with what to do)."""
    try:
        return representatives_for(target, workspace, from_other_machine=from_other_machine)
    except MissingRepresentativesError:
        if from_other_machine is not None:
            raise
        return None


__all__ = ["DEFAULT_TEST_SIZE", "train_target"]
