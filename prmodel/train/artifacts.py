"""Saved latency models: writing, reading and checking their files, never with pickle.

A model is saved under ``trained_models/<target_id>/<kind>/`` as

- ``model.ubj`` (XGBoost's own binary JSON format) or ``model.skops`` (scikit-learn models
  through skops, loaded only with an allow-list of types);
- ``model_card.json``: its :class:`~prmodel.train.model.ModelCard`, which records the
  sha256 of the model file.

Loading checks the card against the file and the code and refuses anything that does not
match with one sentence (:class:`~prmodel.train.model.ModelError`). The estimator loads
models through this module, so it never imports mlflow or optuna, and reads XGBoost files
with :class:`~prmodel.train.treeforest.TreeForest` rather than xgboost.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prmodel.layers import InvalidLayerError, LayerKind, parse_kind
from prmodel.targets.base import Target
from prmodel.targets.identity import IdentityError, MachineWarning, explain_missing
from prmodel.train import card_checks
from prmodel.train.features import FeatureSpec
from prmodel.train.model import LatencyModel, ModelCard, ModelError
from prmodel.train.regressors import REGRESSORS
from prmodel.train.treeforest import TreeForest, TreeForestError
from prmodel.workspace import Workspace

CARD_NAME = "model_card.json"

_MODEL_FILES = ("model.ubj", "model.skops")

# skops refuses to load any type it does not know to be safe; these are the only modules a
# prmodel scikit-learn model is built from, so anything else in a file means tampering.
_SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


def save_model(
    model: LatencyModel,
    directory: str | Path,
    *,
    target_id: str,
    fingerprint_hash: str,
    fingerprint: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    training_digest: str = "",
    representatives_sha256: str | None = None,
    training_set: Mapping[str, Any] | None = None,
) -> ModelCard:
    """Write a fitted model's file and its card into ``directory`` (created; files replaced).

    The card also becomes the model's ``card_``.

    Args:
        model: A fitted model.
        directory: Usually ``Workspace.model_dir(target_id, kind)``.
        target_id: The target the model was trained for.
        fingerprint_hash: The hash of the target fingerprint the rows were measured with.
        fingerprint: The fingerprint itself, recorded for review.
        metrics: Figures to record (cross-validation, training, test).
        training_digest: sha256 of the training rows
            (:func:`~prmodel.train.training.training_digest`).
        representatives_sha256: sha256 of the PR file the features came from.
        training_set: What the rows were (name, file, networks, ...), recorded in the card.

    Returns:
        The card that was written.

    Raises:
        ModelError: the model is not fitted.
    """
    spec = model.fitted_spec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_file = _write_estimator(model.regressor, model.estimator_, directory)
    for stale in set(_MODEL_FILES) - {model_file.name}:
        # A model of another regressor trained earlier into this folder.
        (directory / stale).unlink(missing_ok=True)
    card = ModelCard(
        kind=spec.kind.value,
        target_id=target_id,
        fingerprint_hash=fingerprint_hash,
        regressor=model.regressor,
        hyperparameters=model.hyperparameters,
        feature_schema=spec.names,
        features=spec.to_dict(),
        parameter_ranges=model.parameter_ranges,
        feature_ranges=model.feature_ranges_,
        latency_range_us=model.latency_range_us_,
        model_file=model_file.name,
        model_sha256=file_sha256(model_file),
        training_rows=model.n_train_,
        training_digest=training_digest,
        seed=model.seed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        metrics=dict(metrics or {}),
        fingerprint=dict(fingerprint or {}),
        library_versions=library_versions(model.regressor),
        representatives_sha256=representatives_sha256,
        target_transform=model.target_transform_,
        plateau_mapping=model.plateau_mapping_,
        training_set=dict(training_set or {}),
    )
    _atomic_write_text(directory / CARD_NAME, card.to_json())
    model.card_ = card
    return card


def load_model(
    directory: str | Path,
    *,
    target_id: str | None = None,
    kind: LayerKind | str | None = None,
    running: Mapping[str, Any] | None = None,
    on_purpose: bool = False,
    label: str | None = None,
) -> LatencyModel:
    """Load a saved model after checking its card, hash, schema, kind, target and machine.

    The checks follow :mod:`prmodel.train.card_checks`; what is only worth a warning is
    issued as a :class:`~prmodel.targets.identity.MachineWarning` or
    :class:`~prmodel.train.card_checks.LibraryVersionWarning`.

    Args:
        directory: A ``trained_models/<target_id>/<kind>`` folder.
        target_id: Refuse a model trained for another target.
        kind: Refuse a model of another layer kind.
        running: The running target's fingerprint: refuse a model trained on another
            machine (None: the machine is not checked).
        on_purpose: Use a model of another machine anyway (``--from-other-machine``).
        label: How messages name the model (default: its folder).

    Raises:
        ModelError: missing or malformed card, a model file outside its folder or changed
            since training, a feature schema this code does not build, another kind or
            target, or a scikit-learn model saved with another scikit-learn.
        OtherMachineError: a model trained on another machine, not on purpose.
    """
    directory = Path(directory)
    card = ModelCard.read(directory / CARD_NAME)
    _check_identity(card, directory, target_id=target_id, kind=kind)
    notes = []
    if running is not None:
        notes += card_checks.check_machine(
            card, label or str(directory), running, on_purpose=on_purpose
        )
    spec = _checked_spec(card, directory)
    model_path = card_checks.check_model_file(card, directory)
    _check_hash(card, model_path)
    for note in notes:
        warnings.warn(note, MachineWarning, stacklevel=2)
    for note in card_checks.check_libraries(card, directory):
        warnings.warn(note, card_checks.LibraryVersionWarning, stacklevel=2)
    estimator = _read_estimator(card.regressor, model_path)
    _check_width(estimator, len(spec.names), model_path)
    try:
        model = LatencyModel.from_card(
            card, feature_spec=spec, estimator=estimator, feature_ranges=card.feature_ranges
        )
    except ModelError as exc:
        raise ModelError(f"model card in {directory}: {exc}") from None
    _check_ranges(card, spec, directory)
    return model


def load_models(
    workspace: Workspace,
    target_id: str,
    *,
    running: Mapping[str, Any] | None = None,
    on_purpose: bool = False,
) -> dict[LayerKind, LatencyModel]:
    """Every trained model of ``target_id`` in ``workspace``, by layer kind.

    ``running`` and ``on_purpose`` check each model's machine (see :func:`load_model`).

    Returns an empty dict where the target has no trained models yet. Folders whose name is
    not a layer kind (``conv.bak``) are not models: they are skipped, and
    :func:`model_folder_notes` names them.

    Raises:
        ModelError: a model folder whose model is broken, tampered or mismatched, or that
            has no model card.
    """
    models: dict[LayerKind, LatencyModel] = {}
    root = workspace.models_dir / target_id
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        kind = _folder_kind(directory)
        if kind is not None:
            models[kind] = load_model(
                directory,
                target_id=target_id,
                kind=kind,
                running=running,
                on_purpose=on_purpose,
                label=_relative(directory, workspace.root),
            )
    return models


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def explain_missing_models(workspace: Workspace, target: Target) -> IdentityError | None:
    """Why ``target`` has no models, where the workspace holds models of its old id or of
    another machine (:func:`prmodel.targets.identity.explain_missing`); None otherwise."""
    found = []
    for root in sorted(p for p in workspace.models_dir.glob("*") if p.is_dir()):
        if root.name == target.target_id:
            continue
        for directory in _model_dirs(root):
            try:
                card = ModelCard.read(directory / CARD_NAME)
            except ModelError:
                continue  # loading it names the fault; here it only cannot be described
            label = _relative(directory, workspace.root)
            found.append((label, root.name, dict(card.fingerprint) or None))
            break  # one folder per target says whose models they are
    return explain_missing(
        "trained model",
        target,
        found,
        verb="trained",
        here="run `prmodel train` here",
        workspace=_workspace_arg(workspace),
        use="estimate with",
    )


def _workspace_arg(workspace: Workspace) -> str:
    return "" if workspace.root == Path.cwd().resolve() else str(workspace.root)


def model_folder_notes(workspace: Workspace, target_id: str) -> list[str]:
    """One note per folder under the target's models that :func:`load_models` skips."""
    root = workspace.models_dir / target_id
    return [
        f"ignored {d}: a model folder is named after its layer kind (conv, dense, ...)"
        for d in (sorted(root.iterdir()) if root.is_dir() else [])
        if d.is_dir() and _folder_kind(d) is None
    ]


def _folder_kind(directory: Path) -> LayerKind | None:
    """The layer kind a model folder is named after; None for anything else."""
    if not directory.is_dir():
        return None
    try:
        return parse_kind(directory.name)
    except InvalidLayerError:
        return None


def list_model_cards(
    workspace: Workspace, target_id: str | None = None
) -> list[tuple[Path, ModelCard]]:
    """The cards of every saved model (of one target, or all), with their folders.

    Raises:
        ModelError: a malformed card.
    """
    roots = (
        [workspace.models_dir / target_id]
        if target_id
        else sorted(p for p in workspace.models_dir.glob("*") if p.is_dir())
    )
    return [(d, ModelCard.read(d / CARD_NAME)) for root in roots for d in _model_dirs(root)]


def _model_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / CARD_NAME).is_file())


# -- model files ------------------------------------------------------------------------------
def _write_estimator(regressor: str, estimator: Any, directory: Path) -> Path:
    if regressor == "xgboost":
        path = directory / _MODEL_FILES[0]
        with _temporary_sibling(path) as tmp:
            estimator.save_model(str(tmp))
        return path
    import skops.io  # heavy (scikit-learn, scipy): only for scikit-learn models

    path = directory / _MODEL_FILES[1]
    with _temporary_sibling(path) as tmp:
        skops.io.dump(estimator, tmp)
    return path


def _read_estimator(regressor: str, path: Path) -> Any:
    if regressor not in REGRESSORS:
        raise ModelError(f"model card in {path.parent} names an unknown regressor {regressor!r}")
    try:
        if regressor == "xgboost":
            return _read_xgboost(path)
        return _read_skops(path)
    except ModelError:
        raise
    except Exception as exc:  # any parse failure of a file that passed the hash check
        raise ModelError(f"model file {path} cannot be read ({type(exc).__name__})") from None


def _read_xgboost(path: Path) -> Any:
    # A numpy evaluator first: importing xgboost (with scipy and scikit-learn) costs more than
    # a whole `prmodel estimate` may take. xgboost reads whatever the evaluator refuses.
    try:
        return TreeForest.load(path)
    except TreeForestError:
        from xgboost import XGBRegressor  # heavy: only for a file TreeForest cannot read

        estimator = XGBRegressor()
        estimator.load_model(str(path))
        return estimator


def _read_skops(path: Path) -> Any:
    import skops.io  # heavy (scikit-learn, scipy): only for scikit-learn models

    untrusted = skops.io.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not t.startswith(_SKOPS_TRUSTED_PREFIXES)]
    if unsafe:
        raise ModelError(f"model file {path} contains types prmodel does not trust: {unsafe[0]}")
    return skops.io.load(path, trusted=untrusted)


# -- checks -----------------------------------------------------------------------------------
def _check_identity(
    card: ModelCard, directory: Path, *, target_id: str | None, kind: LayerKind | str | None
) -> None:
    if kind is not None and card.kind != parse_kind(kind).value:
        raise ModelError(
            f"model in {directory} is a {card.kind} model, not a {parse_kind(kind).value} model"
        )
    if target_id is not None and card.target_id != target_id:
        raise ModelError(
            f"model in {directory} was trained for target {card.target_id!r}, not {target_id!r}"
        )


def _checked_spec(card: ModelCard, directory: Path) -> FeatureSpec:
    try:
        spec = FeatureSpec.from_dict(card.features)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card in {directory} has unusable features ({exc})") from None
    if spec.kind.value != card.kind:
        raise ModelError(f"model card in {directory} mixes {card.kind} and {spec.kind} features")
    if spec.names != tuple(card.feature_schema):
        diff = _first_difference(tuple(card.feature_schema), spec.names)
        raise ModelError(
            f"model in {directory} was trained on a feature schema this prmodel does not "
            f"build ({diff}); retrain it"
        )
    return spec


def _check_ranges(card: ModelCard, spec: FeatureSpec, directory: Path) -> None:
    if set(card.feature_ranges) != set(spec.names):
        raise ModelError(
            f"model card in {directory} has feature ranges that do not match its schema"
        )


def _first_difference(saved: tuple[str, ...], built: tuple[str, ...]) -> str:
    for i, (a, b) in enumerate(zip(saved, built, strict=False)):
        if a != b:
            return f"feature {i} is {a!r} in the card but {b!r} here"
    return f"{len(saved)} features in the card but {len(built)} here"


def _check_hash(card: ModelCard, path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"model file {path} named by its model card is missing")
    actual = file_sha256(path)
    if actual != card.model_sha256:
        raise ModelError(
            f"model file {path} has sha256 {actual[:12]}… but its card records "
            f"{card.model_sha256[:12]}…, so it was changed after training"
        )


def _check_width(estimator: Any, width: int, path: Path) -> None:
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and int(n_in) != width:
        raise ModelError(f"model file {path} takes {n_in} features but its card lists {width}")


# -- files ------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions(regressor: str) -> dict[str, str]:
    """Versions of the libraries a saved model depends on (without importing them)."""
    names = ["prmodel", "numpy", "scikit-learn", "skops"]
    if regressor == "xgboost":
        names = ["prmodel", "numpy", "xgboost"]
    # xgboost is installed as the distribution xgboost-cpu too: look it up by what it provides
    return {name: card_checks.installed_version(name) or "unknown" for name in names}


@contextmanager
def _temporary_sibling(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` atomically on success."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    with _temporary_sibling(path) as tmp:
        tmp.write_text(text)


__all__ = [
    "CARD_NAME",
    "explain_missing_models",
    "file_sha256",
    "library_versions",
    "list_model_cards",
    "load_model",
    "load_models",
    "model_folder_notes",
    "save_model",
]
