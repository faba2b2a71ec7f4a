"""MLflow's model registry for trained latency models: one registered model per target and kind.

Every tracked training registers its model as a new version of ``prmodel.<target_id>.<kind>``
(:func:`register_trained_model`), with the model card as the version's tags and description,
so a team compares versions on the UI's "Models" page. Calibration and estimate runs name the
versions they used (:func:`find_versions`): they find them by the sha256 of the model file,
which the model card, the calibration file and the registered version all carry.

The registry is for review only. Estimates load the models from ``trained_models/`` and
never need MLflow; the functions here take the ``mlflow`` module of a
:func:`prmodel.train.tracking.mlflow_session` and never import it themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prmodel.train.model import ModelCard

DIGEST_TAG = "model_sha256"
"""The model-version tag that holds the sha256 of the saved model file."""
_DESCRIPTION_LIMIT = 4800
"""MLflow's SQL stores keep 5000 characters of a description."""


@dataclass(frozen=True)
class VersionLink:
    """A registered model version: which one, and the training run that made it."""

    kind: str
    name: str
    version: str
    run_id: str | None
    sha256: str

    @property
    def label(self) -> str:
        """``prmodel.<target>.<kind> v3``, as the UI shows it."""
        return f"{self.name} v{self.version}"


def registered_model_name(target_id: str, kind: str) -> str:
    """The registered model of a target's kind (MLflow forbids ``/`` and ``:`` in names)."""
    safe = target_id.replace("/", "-").replace(":", "-")
    return f"prmodel.{safe}.{kind}"


def register_trained_model(
    mlflow: Any,
    *,
    model_uri: str,
    model_id: str | None,
    card: ModelCard,
    run_id: str,
    dataset: str | None = None,
) -> VersionLink:
    """Register the model logged at ``model_uri`` as a new version of its target's kind.

    The registered model is created on first use with a description saying what it
    predicts. The version gets the card's identity and metrics as tags and a readable
    summary of the card as its description.

    Args:
        mlflow: The module of an active :func:`~prmodel.train.tracking.mlflow_session`.
        model_uri: The logged model (``models:/<model id>``, from the flavour's ``log_model``).
        model_id: Its id (MLflow 3's logged models), linking the version to it.
        card: The saved model's card.
        run_id: The training run that logged the model.
        dataset: The training set's name (e.g. ``pr-conv``), for the description.
    """
    name = registered_model_name(card.target_id, card.kind)
    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(
            name,
            tags={"target_id": card.target_id, "kind": card.kind},
            description=(
                f"Latency models of {card.kind} layers on target {card.target_id}, one version "
                "per tracked training (prmodel train). The version tags carry the model card; "
                "estimates load the models from trained_models/, not from here."
            ),
        )
    # The client, not mlflow.register_model: that one prints to stderr on every call.
    version = client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        tags=card_tags(card, dataset),
        description=card_description(card, run_id, dataset),
        model_id=model_id,
    )
    return VersionLink(card.kind, name, str(version.version), run_id, card.model_sha256)


def card_tags(card: ModelCard, dataset: str | None = None) -> dict[str, str]:
    """The model card's identity and figures as model-version tags."""
    tags = {
        "target_id": card.target_id,
        "kind": card.kind,
        "regressor": card.regressor,
        DIGEST_TAG: card.model_sha256,
        "fingerprint_hash": card.fingerprint_hash,
        "training_rows": str(card.training_rows),
        "training_digest": card.training_digest,
        "target_transform": card.target_transform,
        "plateau_mapping": str(card.plateau_mapping),
        "seed": str(card.seed),
        "created": card.created,
    }
    if dataset:
        tags["dataset"] = dataset
    tags |= {name: f"{value:.4g}" for name, value in card.metrics.items()}
    tags |= {f"library.{name}": str(v) for name, v in card.library_versions.items()}
    return tags


def card_description(card: ModelCard, run_id: str | None, dataset: str | None = None) -> str:
    """A Markdown summary of the card: what the model is, how good, from what data."""
    metrics = card.metrics
    lines = [
        f"**{card.kind}** latency model for target `{card.target_id}`: {card.regressor} on "
        f"{card.training_rows} measured layers"
        + (f" of the set `{dataset}`" if dataset else "")
        + f", trained {card.created}.",
        "",
        _figures(metrics),
        "",
        f"- model file sha256 `{card.model_sha256[:16]}…`, training rows `"
        f"{card.training_digest[:16]}…`, target fingerprint `{card.fingerprint_hash}`",
        f"- features: {len(card.feature_schema)}, target transform `{card.target_transform}`"
        + (", predicts each layer's plateau representative" if card.plateau_mapping else ""),
        f"- latency range seen: {card.latency_range_us[0]:.3g}-{card.latency_range_us[1]:.3g} µs",
    ]
    if run_id:
        lines.append(f"- full card: run `{run_id}`, artifact `trained_model/model_card.json`")
    if card.parameter_ranges:
        lines += ["", "| parameter | trained from | to |", "|---|---|---|"]
        lines += [f"| {k} | {lo:g} | {hi:g} |" for k, (lo, hi) in card.parameter_ranges.items()]
    return "\n".join(lines)[:_DESCRIPTION_LIMIT]


def _figures(metrics: Mapping[str, float]) -> str:
    parts = []
    if "test_mape" in metrics:
        parts.append(f"test MAPE {metrics['test_mape']:.2f} %")
    if "test_within_10" in metrics:
        parts.append(f"{metrics['test_within_10']:.0f} % of test layers within ±10 %")
    if "cv_mape" in metrics:
        parts.append(f"cross-validation MAPE {metrics['cv_mape']:.2f} %")
    return "; ".join(parts) + "." if parts else "No test figures (no held-out layers)."


def find_versions(
    mlflow: Any, target_id: str, digests: Mapping[str, str]
) -> dict[str, VersionLink | None]:
    """The registered version of each model, by kind, found by its file's sha256.

    Args:
        mlflow: The module of an active :func:`~prmodel.train.tracking.mlflow_session`.
        target_id: The target the models belong to.
        digests: The sha256 of each kind's model file (as in the model card).

    Returns:
        Per kind, its version, or None where that model was never registered (trained
        without tracking, or tracked to another store).
    """
    client = mlflow.MlflowClient()
    found: dict[str, VersionLink | None] = {}
    for kind, digest in sorted(digests.items()):
        name = registered_model_name(target_id, kind)
        versions = client.search_model_versions(filter_string=f"name = '{name}'")
        matches = [v for v in versions if (v.tags or {}).get(DIGEST_TAG) == digest]
        latest = max(matches, key=lambda v: int(v.version), default=None)
        found[kind] = (
            VersionLink(kind, name, str(latest.version), latest.run_id, digest)
            if latest is not None
            else None
        )
    return found


__all__ = [
    "DIGEST_TAG",
    "VersionLink",
    "card_description",
    "card_tags",
    "find_versions",
    "register_trained_model",
    "registered_model_name",
]
