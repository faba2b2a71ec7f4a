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

from prmodel.layers import LayerKind
from prmodel.measure.store import MeasurementStore
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.train.tracking import log_training
from prmodel.train.training import OverlapWarning, TrainingReport, TrainSettings, train_models
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

    Returns:
        The training report (with MLflow run ids when tracked).

    Raises:
        DatasetError: no store, no training set, or a set without this fingerprint's rows.
    """
    if not workspace.store_path.exists():
        raise DatasetError(f"no measurement store at {workspace.store_path}; run 'prmodel sweep'")
    fingerprint = target.fingerprint()
    digest = fingerprint_hash(fingerprint)
    with MeasurementStore(workspace.store_path) as store:
        chosen = list(kinds or training_kinds(store, target.target_id, train_set=train_set))
        train_rows = concat_rows(
            [
                training_rows(store, target.target_id, digest, kind, train_set=train_set)
                for kind in chosen
            ]
        )
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
    pr_path = workspace.representatives_path(target.target_id)
    representatives = RepresentativeSet.load(pr_path) if pr_path.exists() else None
    if representatives is None and on_note is not None:
        on_note(f"no PR file at {pr_path}: training without architecture features")
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
    return log_training(report, workspace=workspace) if track else report


__all__ = ["DEFAULT_TEST_SIZE", "train_target"]
