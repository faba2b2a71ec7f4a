"""Checks of a model card against this machine and this installation, before a model is used.

The policy (documented in ``docs/training.md``, "Where a model may be used"):

- **machine**: the card's fingerprint must be the running target's
  (:func:`prmodel.targets.identity.check_recorded`): another CPU model, ISA, ONNX Runtime
  version, provider setting or simulator configuration is refused, a different core count or
  cache size is a warning, and ``--from-other-machine ID`` uses a foreign model on purpose,
  with a warning. A card whose ``fingerprint_hash`` is not the hash of its ``fingerprint``
  was edited and is refused.
- **libraries**: a model saved with another version of a library it depends on warns; a
  scikit-learn model (a skops file) saved with another major or minor version of
  scikit-learn or skops is refused, because skops rebuilds scikit-learn's objects and
  scikit-learn only promises to load them in the version that saved them. XGBoost models are
  read by prmodel's own reader of XGBoost's stable UBJ format, so an XGBoost version only
  warns.
- **files**: ``model_file`` is a file name of the card's own folder (``model.ubj`` or
  ``model.skops``), never a path that leads out of it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from prmodel.targets.identity import FROM_OTHER_MACHINE, check_recorded
from prmodel.train.model import ModelCard
from prmodel.train.regressors import ModelError

MODEL_FILES: Mapping[str, str] = {"xgboost": "model.ubj"}
"""The model file of each regressor; every other regressor is saved as ``model.skops``."""

_SKOPS_FILE = "model.skops"

_DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = {"xgboost": ("xgboost", "xgboost-cpu")}
"""Distributions that install a library under another name (``pip install xgboost-cpu``)."""

_MODULES: Mapping[str, str] = {"scikit-learn": "sklearn"}

_NOT_CHECKED = frozenset({"prmodel"})
"""prmodel's own version: the feature schema check decides whether a model still fits."""

_STRICT_FOR_SKOPS = frozenset({"scikit-learn", "skops"})


class LibraryVersionWarning(UserWarning):
    """A model saved with another version of a library it depends on."""


def installed_version(name: str) -> str | None:
    """The installed version of the library ``name`` (``xgboost``, ``scikit-learn``), found
    under any distribution that provides it; None where it is not installed."""
    return _installed_version(name)


@functools.cache
def _installed_version(name: str) -> str | None:
    for distribution in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    module = _MODULES.get(name, name.replace("-", "_"))
    for distribution in metadata.packages_distributions().get(module, []):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_model_file(card: ModelCard, directory: Path) -> Path:
    """The model file the card names, refused unless it is a model file of ``directory``
    itself.

    Raises:
        ModelError: ``model_file`` is a path (``../x``, ``/etc/x``), another file name, or a
            link that leads out of the folder.
    """
    allowed = sorted({*MODEL_FILES.values(), _SKOPS_FILE})
    if card.model_file not in allowed:
        raise ModelError(
            f"model card in {directory} names model_file {card.model_file!r}, which is not "
            f"a model file of the card's own folder ({' or '.join(allowed)})"
        )
    path = directory / card.model_file
    if path.exists() and path.resolve().parent != directory.resolve():
        raise ModelError(f"model file {path} is a link that leads out of its folder")
    return path


def check_libraries(card: ModelCard, directory: Path) -> list[str]:
    """Warnings for libraries of another version than the card records.

    Raises:
        ModelError: a scikit-learn model saved with another major or minor version of
            scikit-learn or skops.
    """
    notes = []
    for name, saved in sorted(card.library_versions.items()):
        here = installed_version(name)
        if name in _NOT_CHECKED or here is None or saved in ("", "unknown") or saved == here:
            continue
        strict = card.regressor != "xgboost" and name in _STRICT_FOR_SKOPS
        if strict and _minor(saved) != _minor(here):
            raise ModelError(
                f"model in {directory} was saved with {name} {saved}, this installation has "
                f"{here}, and a scikit-learn model is only read by the version that saved it: "
                f"retrain it (prmodel train), or install {name} {'.'.join(_minor(saved))}.*"
            )
        notes.append(
            f"model in {directory} was saved with {name} {saved}; this installation has {here}"
        )
    return notes


def _minor(version: str) -> tuple[str, ...]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return match.groups() if match else (version,)


def check_machine(
    card: ModelCard,
    label: str,
    running: Mapping[str, Any],
    *,
    on_purpose: bool = False,
) -> list[str]:
    """Warnings for a card of another machine (see the module docstring).

    Raises:
        OtherMachineError: the card's fingerprint is another machine's, not on purpose.
        IdentityError: the card's fingerprint_hash does not match its fingerprint.
    """
    remedy = (
        "run `prmodel train` here, or estimate with "
        f"{FROM_OTHER_MACHINE} {card.target_id} to use it on purpose"
    )
    return check_recorded(
        label,
        card.fingerprint,
        running,
        verb="trained",
        recorded_hash=card.fingerprint_hash if card.fingerprint else None,
        on_purpose=on_purpose,
        remedy=remedy,
    )


__all__ = [
    "MODEL_FILES",
    "LibraryVersionWarning",
    "check_libraries",
    "check_machine",
    "check_model_file",
    "installed_version",
]
