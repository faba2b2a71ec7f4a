"""How :func:`~prmodel.train.training.train_models` fits and tunes each kind: the settings."""

from __future__ import annotations

from dataclasses import dataclass

from prmodel.train.regressors import REGRESSORS, ModelError, unknown_regressor


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How :func:`train_models` fits each kind.

    ``trials`` Optuna trials of ``folds``-fold cross-validation (0: the regressor's
    defaults, no tuning), stopping early after ``timeout_s`` seconds per kind if given
    (a time budget makes the number of trials, and so the result, depend on the machine).
    """

    regressor: str = "xgboost"
    trials: int = 25
    folds: int = 4
    timeout_s: float | None = None
    seed: int = 0
    n_jobs: int = 1
    plateau_mapping: bool | None = None
    """Predict at each layer's plateau representative (None: when a PR set is given)."""
    target_transform: str | None = None
    """``log`` or ``log-relative`` (to the profile's work estimate); None: the model's default."""
    study_storage: str | None = None
    """An Optuna RDB storage URL (``sqlite:///studies.db``, ``postgresql://...``) that
    processes tuning the same kind on the same rows with the same settings share: they split
    ``trials`` between them (in all, not each) and each takes the best of every trial. None:
    a private in-memory study, reproducible from ``seed``."""

    def __post_init__(self) -> None:
        if self.regressor not in REGRESSORS:
            raise unknown_regressor(self.regressor)
        if self.folds < 2:
            raise ModelError(f"cross-validation needs at least 2 folds, got {self.folds}")
        if self.trials < 0:
            raise ModelError(f"the number of Optuna trials must be >= 0, got {self.trials}")


__all__ = ["TrainSettings"]
