"""``prmodel learn``: a predictor for a new machine from a few minutes of profiled networks.

Instead of thousands of lone layers, :func:`learn_target` profiles whole networks: one
profiled run of a network times every kernel in the context the estimator predicts (fused,
in the runtime's blocked layout, with the caches as a real network leaves them), so a few
dozen networks give thousands of kernel times. It

1. builds the training networks without torch (:func:`prmodel.zoo.learning.learning_tiers`:
   the reference networks, then tiers of variants at other resolutions, widths and batch
   sizes; never a held-out network) and measures them tier by tier, in batches with their
   rounds interleaved, until the tiers or the time budget end, or an optional check says
   the last tier was predicted well enough (:mod:`prmodel.workflows.tier_checks`); what the
   workspace measured before on this machine with the same protocol is reused;
2. keeps every kernel as a row of the network-profile data set
   (:mod:`prmodel.workflows.network_profiles`, Parquet);
3. fits one latency model per layer kind on the kernels' in-network times, cross-validated by
   network, with the PR file's features where the target has one, else its hardware
   profile's, and with another machine's networks translated to this one where asked
   (``--reference``);
4. fits the target's calibration on the out-of-fold predictions (steps 3-4:
   :mod:`prmodel.workflows.predictor_fit`);
5. saves the models (``trained_models/<target_id>/<kind>/``, their cards naming the data set)
   and the calibration where ``prmodel estimate`` loads them.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.estimate.calibration import (
    Calibration,
    calibration_path,
)
from prmodel.estimate.estimator import model_digests
from prmodel.networks import NetworkMeasureSettings
from prmodel.select.pr_file import MissingRepresentativesError, representatives_for
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets.base import NetworkRunner, Target, fingerprint_hash
from prmodel.train.artifacts import file_sha256, list_model_cards, save_model
from prmodel.train.in_network import DEFAULT_FOLDS, KindFit
from prmodel.train.training import training_digest
from prmodel.workflows.network_profiles import (
    PROFILE_SET,
    in_network_times,
    kernel_layers,
    matching_rows,
    profiles_path,
    protocol,
    protocol_hash,
    read_profiles,
)
from prmodel.workflows.predictor_fit import (
    LearnedPredictor,
    LearnError,
    NetworkCheck,
    learn_from_profiles,
)
from prmodel.workflows.profiling import NetworkProfiler
from prmodel.workflows.tier_checks import (
    CHECK_FOLDS,
    DEFAULT_STOP_PCT,
    TierCheck,
    TierChecker,
    measure_tiers,
)
from prmodel.workflows.transfer import (
    ReferenceProfiles,
    Translation,
)
from prmodel.workspace import Workspace
from prmodel.zoo.learning import LearningTier, check_not_held_out, learning_tiers
from prmodel.zoo.sets import NetworkSpec

DEFAULT_MINUTES = 10.0
"""The default time budget for building, measuring and mapping networks."""
LEARN_MAX_ROUNDS = 12
"""Rounds a training network may get when its first ones disagree (see
:class:`~prmodel.networks.NetworkMeasureSettings`): on a 2-core VM with noisy neighbours, one
network in five had round medians too far apart for 5 rounds to pin its latency within
1.5 %, and one such network learned at its disturbed time skews every kernel like it."""
DEFAULT_SETTINGS = NetworkMeasureSettings(max_rounds=LEARN_MAX_ROUNDS)
"""How learn times networks unless told otherwise: 5 interleaved rounds, up to 12 where
they disagree."""


@dataclass(frozen=True)
class LearnReport:
    """What ``prmodel learn`` measured, reused, trained and saved, and how well it predicts
    the training networks it was not fitted on."""

    target_id: str
    data_set: Path
    measured: tuple[str, ...]
    reused: tuple[str, ...]
    skipped: tuple[str, ...]
    kernels: int
    budget_seconds: float
    measure_seconds: float
    data_seconds: float
    train_seconds: float
    kinds: tuple[KindFit, ...]
    folds: int
    features: str
    calibration: Calibration
    checks: tuple[NetworkCheck, ...]
    models_dir: Path
    calibration_file: Path
    notes: tuple[str, ...] = ()
    tier_checks: tuple[TierCheck, ...] = ()
    stopped_after: str | None = None
    """The tier after which learning stopped because it was predicted within the stop
    threshold (None: it went on until the tiers or the budget ended)."""
    stop_pct: float = 0.0
    translation: Translation | None = None
    """How the reference's kernel times were translated (None: no reference)."""

    @property
    def networks(self) -> tuple[str, ...]:
        """Every network the models were trained on (reused and newly measured)."""
        return (*self.reused, *self.measured)

    @property
    def mape(self) -> float | None:
        """Mean absolute error (percent) of the training networks, each predicted without it."""
        errors = [abs(c.error_pct) for c in self.checks]
        return float(np.mean(errors)) if errors else None

    @property
    def within_10(self) -> int:
        """Training networks predicted within ±10 % without them."""
        return sum(abs(c.error_pct) <= 10 for c in self.checks)

    @property
    def worst(self) -> NetworkCheck | None:
        return max(self.checks, key=lambda c: abs(c.error_pct), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_id": self.target_id,
            "data_set": str(self.data_set),
            "measured": list(self.measured),
            "reused": list(self.reused),
            "skipped": list(self.skipped),
            "kernels": self.kernels,
            "budget_seconds": self.budget_seconds,
            "measure_seconds": self.measure_seconds,
            "data_seconds": self.data_seconds,
            "train_seconds": self.train_seconds,
            "features": self.features,
            "folds": self.folds,
            "kinds": [
                {
                    "kind": k.kind.value,
                    "rows": k.rows,
                    "networks": k.networks,
                    "transform": k.transform,
                    "error_pct": k.error_pct,
                    "errors_pct": k.errors_pct,
                }
                for k in self.kinds
            ],
            "calibration": {
                "formula": self.calibration.formula,
                "terms": list(self.calibration.terms),
                "loo_mape": self.calibration.loo_mape,
            },
            "check": {
                "mape": self.mape,
                "within_10": self.within_10,
                "networks": [{**asdict(c), "error_pct": c.error_pct} for c in self.checks],
            },
            "models_dir": str(self.models_dir),
            "calibration_file": str(self.calibration_file),
            "notes": list(self.notes),
            "stop_pct": self.stop_pct,
            "tier_checks": [check.to_dict() for check in self.tier_checks],
            "stopped_after": self.stopped_after,
            "translation": None if self.translation is None else self.translation.to_dict(),
        }


# -- the workflow ------------------------------------------------------------------------------


def learn_target(
    target: Target,
    *,
    workspace: Workspace,
    networks: Sequence[NetworkSpec] | None = None,
    tiers: Sequence[LearningTier] | None = None,
    minutes: float = DEFAULT_MINUTES,
    stop_pct: float = DEFAULT_STOP_PCT,
    settings: NetworkMeasureSettings | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    model_params: Mapping[str, Any] | None = None,
    reference: ReferenceProfiles | None = None,
    progress: bool = True,
    on_note: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> LearnReport:
    """Profile networks on ``target`` within a time budget, learn its predictor and save it.

    Args:
        target: A target that runs whole networks (ONNX Runtime: cpu, cuda, ...).
        workspace: Holds the data set, the models and the calibration (created if missing).
        networks: The training networks, in the order to measure them, as one tier
            (default: the tiers of :func:`~prmodel.zoo.learning.learning_tiers`); never
            held-out ones.
        tiers: The training networks in tiers instead (not with ``networks``).
        minutes: Time budget for building, measuring, mapping and checking networks;
            measuring stops adding networks when it is spent (0: train on what was
            measured before).
        stop_pct: Before measuring a tier, the tier before it is predicted by models
            learned from the tiers before that; within this MAPE, learning stops there
            (0: never, measure until the tiers or the budget end). Networks measured
            before are always used.
        settings: How each network is timed (rounds, runs, profiled runs; default
            :data:`DEFAULT_SETTINGS`).
        folds: Folds of networks for the out-of-fold check and the calibration.
        seed: Seed of the folds and the regressors.
        model_params: XGBoost hyper-parameters replacing the defaults.
        reference: Another machine's network profiles to start from: the kind models
            also learn from its networks not measured here, translated to this machine
            (:mod:`prmodel.workflows.transfer`).
        progress: Show a progress bar with an ETA on stderr.
        on_note: Told, one sentence each, what happens (batches measured, features used).
        clock: Seconds, monotonic (tests pass a fake one).

    Returns:
        The report; the models and calibration are saved in ``workspace``.

    Raises:
        LearnError: the target cannot run networks, a bad budget, held-out networks asked
            for, models of another training set in the way, or nothing to train on.
        ProfileSetError: an unreadable data set file.
        TransferError: a reference sharing too few kernels with what was measured.
    """
    if not isinstance(target, NetworkRunner):
        raise LearnError(
            f"target {target.target_id} cannot run whole networks, and learning profiles "
            "networks; use an ONNX Runtime target (cpu, cuda, ...)"
        )
    if not (math.isfinite(minutes) and minutes >= 0):
        raise LearnError(f"the time budget must be 0 minutes or more, got {minutes}")
    if networks is not None and tiers is not None:
        raise LearnError("give the training networks either as networks or as tiers, not both")
    if not (math.isfinite(stop_pct) and stop_pct >= 0):
        raise LearnError(f"the stop threshold must be 0 % or more, got {stop_pct}")
    if tiers is None:
        tiers = learning_tiers() if networks is None else [LearningTier("given", tuple(networks))]
    specs = [spec for tier in tiers for spec in tier.networks]
    if not specs:
        raise LearnError("no networks to learn from were given")
    try:
        check_not_held_out(specs)
    except PrmodelError as exc:
        raise LearnError(str(exc)) from None
    settings = settings or DEFAULT_SETTINGS
    note = on_note or (lambda message: None)
    _refuse_foreign_models(workspace, target.target_id)
    # Checked first: a PR file of another machine is refused before anything is measured.
    representatives, pr_path, features = _features(target, workspace, note)
    fingerprint = target.fingerprint()
    identity = {
        "target_id": target.target_id,
        "fingerprint_hash": fingerprint_hash(fingerprint),
        "fingerprint": json.dumps(fingerprint, sort_keys=True, default=str),
        "protocol_hash": protocol_hash(settings),
        "protocol": json.dumps(protocol(settings), sort_keys=True),
    }
    path = profiles_path(workspace, target.target_id)
    known = matching_rows(
        read_profiles(path),
        target_id=identity["target_id"],
        fingerprint_hash=identity["fingerprint_hash"],
        protocol_hash=identity["protocol_hash"],
    )
    reused = _reusable(specs, known)
    if reused:
        note(f"reusing {len(reused)} networks measured before on this machine ({path})")
    pending = [spec for spec in specs if spec.name not in reused]
    measuring = NetworkProfiler(target, settings, identity, clock=clock, budget_s=60 * minutes)
    measuring.learn_rates(known[known["network"].isin(reused)], specs)
    fit = partial(
        learn_from_profiles,
        target=target,
        representatives=representatives,
        folds=CHECK_FOLDS,
        seed=seed,
        model_params=model_params,
        reference=reference,
    )
    checking = TierChecker(target, path, identity, fit, stop_pct=stop_pct, clock=clock)
    with measuring.showing(progress and bool(pending)):
        measured, stopped_after = measure_tiers(
            tiers, reused, measuring, checking, path, progress=progress, note=note
        )
    whole = read_profiles(path)
    rows = matching_rows(
        whole,
        target_id=identity["target_id"],
        fingerprint_hash=identity["fingerprint_hash"],
        protocol_hash=identity["protocol_hash"],
    )
    used = [spec.name for spec in specs if spec.name in reused or spec.name in measured]
    rows = rows[rows["network"].isin(used)].reset_index(drop=True)
    if rows.empty:
        raise LearnError(
            f"nothing was measured within {minutes:g} minutes and the workspace holds no "
            f"profiles of these networks on this machine; give more time (--minutes)"
        )
    started = clock()
    learned = learn_from_profiles(
        rows,
        target,
        representatives=representatives,
        features=features,
        folds=folds,
        seed=seed,
        model_params=model_params,
        reference=reference,
    )
    models_dir = workspace.models_dir / target.target_id
    calibration_file = _save(
        learned,
        rows,
        target,
        workspace=workspace,
        data_set=path,
        settings=settings,
        representatives_path=pr_path,
    )
    skipped = tuple(spec.name for spec in pending if spec.name not in measured)
    return LearnReport(
        target_id=target.target_id,
        data_set=path,
        measured=tuple(name for name in used if name in measured),
        reused=tuple(name for name in used if name in reused),
        skipped=skipped,
        kernels=int((rows["status"] != "free").sum()),
        budget_seconds=60 * minutes,
        measure_seconds=measuring.elapsed,
        data_seconds=float(rows.groupby("network")["seconds"].first().sum()),
        train_seconds=clock() - started,
        kinds=learned.fit.kinds,
        folds=learned.fit.folds,
        features=learned.features,
        calibration=learned.calibration,
        checks=learned.checks,
        models_dir=models_dir,
        calibration_file=calibration_file,
        notes=tuple(measuring.notes),
        tier_checks=tuple(checking.checks),
        stopped_after=stopped_after,
        stop_pct=stop_pct,
        translation=None if learned.translated is None else learned.translated.translation,
    )


def _reusable(specs: Sequence[NetworkSpec], known: pd.DataFrame) -> set[str]:
    """Networks whose rows (same machine, protocol and builder settings) are in the file."""
    if known.empty:
        return set()
    hashes = known.groupby("network")["network_hash"].first().to_dict()
    return {spec.name for spec in specs if hashes.get(spec.name) == spec.settings_hash()}


# -- features, saving -----------------------------------------------------------------------------


def _features(
    target: Target, workspace: Workspace, note: Callable[[str], None]
) -> tuple[RepresentativeSet | None, Path | None, str]:
    """The PR set to take features from where the target has one (and its file), and the
    choice in words."""
    try:
        checked = representatives_for(target, workspace)
    except MissingRepresentativesError:
        profile = target.hardware_profile().name
        note(f"no PR file for {target.target_id}: features from the hardware profile {profile}")
        return None, None, f"hardware profile {profile}"
    for warning in checked.warnings:
        note(f"warning: {warning}")
    return checked.representatives, checked.path, f"PR file {checked.path.name}"


def _refuse_foreign_models(workspace: Workspace, target_id: str) -> None:
    """Refuse to mix with models trained on other sets (their calibration would not fit)."""
    foreign = [
        card.kind
        for _, card in list_model_cards(workspace, target_id)
        if card.training_set.get("name") != PROFILE_SET
    ]
    if foreign:
        where = workspace.models_dir / target_id
        raise LearnError(
            f"{where} holds models trained on other sets ({', '.join(sorted(foreign))}); "
            "learning replaces a target's models and calibration, so learn into another "
            "workspace (-w DIR) or move that folder away first"
        )


def _save(
    learned: LearnedPredictor,
    rows: pd.DataFrame,
    target: Target,
    *,
    workspace: Workspace,
    data_set: Path,
    settings: NetworkMeasureSettings,
    representatives_path: Path | None,
) -> Path:
    """Save the models and the calibration; the target's earlier learned models of kinds
    not learned now are removed (only learned ones are there: :func:`_refuse_foreign_models`).
    Returns the calibration's path."""
    fingerprint = target.fingerprint()
    digest = fingerprint_hash(fingerprint)
    networks = list(dict.fromkeys(rows["network"]))
    inside = data_set.is_relative_to(workspace.root)
    training_set = {
        "name": PROFILE_SET,
        "file": str(data_set.relative_to(workspace.root) if inside else data_set),
        "networks": networks,
        "protocol": protocol(settings),
        "fingerprint_hash": digest,
    }
    if learned.translated is not None:
        translated = learned.translated
        training_set["reference"] = {
            **translated.translation.to_dict(),
            "networks": list(dict.fromkeys(translated.networks)),
        }
    layers = kernel_layers(rows)
    in_network = in_network_times(rows)
    keys = [None if layer is None else layer.key for layer in layers]
    if learned.translated is not None:  # the digest covers every row the models learned from
        layers = [*layers, *learned.translated.layers]
        in_network = np.concatenate([in_network, learned.translated.times_us])
        keys += [
            f"{name}/{layer.key}"
            for name, layer in zip(
                learned.translated.networks, learned.translated.layers, strict=True
            )
        ]
    by_kind = {k.kind: k for k in learned.fit.kinds}
    pr_sha = file_sha256(representatives_path) if representatives_path is not None else None
    for kind, model in learned.models.items():
        picked = [i for i, layer in enumerate(layers) if layer is not None and layer.kind is kind]
        frame = pd.DataFrame(
            {
                "target_id": target.target_id,
                "fingerprint_hash": digest,
                "layer_key": [keys[i] for i in picked],
                "latency_us": in_network[picked],
            }
        )
        fitted = by_kind[kind]
        metrics = {"rows": float(fitted.rows), "networks": float(fitted.networks)}
        if fitted.error_pct is not None:
            metrics["out_of_fold_error_pct"] = fitted.error_pct
        save_model(
            model,
            workspace.model_dir(target.target_id, kind.value),
            target_id=target.target_id,
            fingerprint_hash=digest,
            fingerprint=fingerprint,
            metrics=metrics,
            training_digest=training_digest(frame[np.isfinite(frame["latency_us"])]),
            representatives_sha256=pr_sha,
            training_set={**training_set, "kernels": fitted.rows, "folds": learned.fit.folds},
        )
    learned_kinds = {kind.value for kind in learned.models}
    for folder, card in list_model_cards(workspace, target.target_id):
        if card.kind not in learned_kinds:
            shutil.rmtree(folder)  # a kind an earlier learn had and this one has not
    notes = {
        "measure_settings": asdict(settings),
        "networks": networks,
        "models": model_digests(learned.models),
        "fingerprint": fingerprint,
        "training_set": training_set,
    }
    calibration = replace(learned.calibration, notes=notes)
    return calibration.save(calibration_path(workspace, target.target_id))


__all__ = [
    "DEFAULT_MINUTES",
    "DEFAULT_SETTINGS",
    "LEARN_MAX_ROUNDS",
    "LearnError",
    "LearnReport",
    "learn_target",
]
