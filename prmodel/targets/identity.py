"""A target's identity: which machine an artifact was made on, and whether it may serve this one.

Measurements, PR files, trained models, calibrations and plans hold only for the hardware and
software they were made with, so each records the fingerprint of its target
(``Target.fingerprint()``: CPU model and ISA flags, runtime version, settings, or a
simulator's configuration). Before one is used, :func:`check_recorded` compares that
fingerprint with the running target's:

- a difference in any key outside :data:`TOLERATED_KEYS` (CPU model, ISA flags, machine,
  GPUs, runtime version, provider, threads, opt level, opset, a simulator's configuration) is
  refused with one sentence naming both machines (:class:`OtherMachineError`);
- a difference only in :data:`TOLERATED_KEYS` (logical cores, cache sizes as the system
  reports them: the same CPU model in VMs of different sizes) is a warning;
- an artifact the user names on purpose (``--from-other-machine ID``) is used, and the
  output says so (:class:`MachineWarning`).

A target id names what makes measurements comparable (``ort-cpu-avx512-3f9c-t1-all``, see
:func:`prmodel.targets.onnxruntime.target.ort_target_id`); artifacts under an id of the
earlier scheme (``ort-cpu-t1-all``) are recognised (:func:`old_target_id`) and renamed by
``prmodel migrate``. The policy is documented in ``docs/targets.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from prmodel.errors import PrmodelError
from prmodel.targets.base import Target, fingerprint_hash
from prmodel.targets.cpu import isa_level

TOLERATED_KEYS: frozenset[str] = frozenset({"logical_cores", "l2_kib", "l3_kib"})
"""Fingerprint keys whose difference is warned about, never refused: the same CPU model in
virtual machines of different sizes reports different core counts and cache sizes, and runs
the same kernels."""

MACHINE_KEYS: frozenset[str] = frozenset({"machine", "cpu_model", "isa", "gpus", *TOLERATED_KEYS})
"""Fingerprint keys that describe the hardware rather than the target's settings (with the
runtime's version, named by the fingerprint's ``target`` key)."""

FROM_OTHER_MACHINE = "--from-other-machine"
"""The command-line option that uses another machine's artifacts on purpose."""


class IdentityError(PrmodelError, ValueError):
    """An artifact that does not belong to the running target (one sentence says why)."""


class OtherMachineError(IdentityError):
    """An artifact made on another machine (or another runtime or configuration)."""


class OldTargetIdError(IdentityError):
    """An artifact under a target id of the earlier scheme: ``prmodel migrate`` renames it."""


class MachineWarning(UserWarning):
    """An artifact used although its machine differs (on purpose, or in tolerated keys)."""


@runtime_checkable
class IdScheme(Protocol):
    """A target whose id can be computed from any fingerprint of its kind (optional).

    ``prmodel migrate`` uses it to rename artifacts stored under the ids of an earlier
    scheme, including those of other machines.
    """

    def id_for_fingerprint(self, fingerprint: Mapping[str, Any]) -> str:
        """The id a target with ``fingerprint`` has."""
        ...

    def old_id_for_fingerprint(self, fingerprint: Mapping[str, Any]) -> str | None:
        """The id the earlier scheme gave it (None where the scheme did not change)."""
        ...


# -- ids ----------------------------------------------------------------------------------------
def short_hash(data: Mapping[str, Any], length: int = 4) -> str:
    """A short stable hex digest of ``data`` (key order does not matter)."""
    text = json.dumps(dict(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def id_for(target: Target, fingerprint: Mapping[str, Any]) -> str | None:
    """The id that ``fingerprint`` has among targets of ``target``'s kind (None: unknown)."""
    if isinstance(target, IdScheme) and fingerprint.get("target") == _kind(target):
        return target.id_for_fingerprint(fingerprint)
    return None


def old_target_id(target: Target, fingerprint: Mapping[str, Any] | None = None) -> str | None:
    """The id of the earlier scheme for ``fingerprint`` (default: the running target's).

    None where the target's id did not change (SCALE-Sim, analytic, plug-ins).
    """
    fingerprint = target.fingerprint() if fingerprint is None else fingerprint
    if not isinstance(target, IdScheme) or fingerprint.get("target") != _kind(target):
        return None
    old = target.old_id_for_fingerprint(fingerprint)
    return old if old and old != target.id_for_fingerprint(fingerprint) else None


def _kind(target: Target) -> Any:
    return target.fingerprint().get("target")


def made_for(target: Target) -> dict[str, Any]:
    """What an artifact records of the target it was made for: its id and fingerprint."""
    return {"target_id": target.target_id, "fingerprint": target.fingerprint()}


# -- describing and comparing -----------------------------------------------------------------
def is_machine(fingerprint: Mapping[str, Any]) -> bool:
    """Whether the fingerprint describes real hardware (a CPU or GPUs), not a simulator."""
    return bool(fingerprint.get("cpu_model") or fingerprint.get("gpus"))


def describe_machine(fingerprint: Mapping[str, Any], keys: Iterable[str] = ()) -> str:
    """``Intel(R) Xeon(R) Processor (avx512, onnxruntime 1.32.0)``: hardware, ISA level,
    runtime version, then the values of ``keys`` (the ones that differ)."""
    gpus = fingerprint.get("gpus")
    if gpus:
        hardware = " + ".join(str(g) for g in gpus)
    else:
        hardware = str(fingerprint.get("cpu_model") or fingerprint.get("target") or "a target")
    details: list[str] = []
    if isinstance(fingerprint.get("isa"), list | tuple):
        details.append(isa_level(fingerprint["isa"], str(fingerprint.get("machine") or "")))
    runtime = fingerprint.get("target")
    if isinstance(runtime, str) and fingerprint.get(runtime):
        details.append(f"{runtime} {fingerprint[runtime]}")
    shown = {"isa", "machine", "cpu_model", "gpus", runtime}
    details += [f"{key} {_value(fingerprint.get(key))}" for key in keys if key not in shown]
    return f"{hardware} ({', '.join(details)})" if details else hardware


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value) or "none"
    return str(value)


def differences(
    recorded: Mapping[str, Any], running: Mapping[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys of both fingerprints whose values differ: (refused, tolerated).

    Keys that only one of them has are left out: a fingerprint written by another prmodel
    version may name more or fewer facts.
    """
    refused: list[str] = []
    tolerated: list[str] = []
    for key in sorted(set(recorded) & set(running)):
        if _normal(recorded[key]) != _normal(running[key]):
            (tolerated if key in TOLERATED_KEYS else refused).append(key)
    return tuple(refused), tuple(tolerated)


def _normal(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def same_settings(recorded: Mapping[str, Any], running: Mapping[str, Any]) -> bool:
    """Whether two fingerprints differ at most in their hardware and runtime version: the
    artifacts of the one are the other's counterpart from another machine."""
    if recorded.get("target") != running.get("target"):
        return False
    runtime = running.get("target")
    refused, _ = differences(recorded, running)
    return all(key in MACHINE_KEYS or key == runtime for key in refused)


def mismatch_sentence(
    artifact: str, verb: str, recorded: Mapping[str, Any], running: Mapping[str, Any]
) -> str:
    """``<artifact> was <verb> on <their machine>; this machine is <ours>`` (no remedy)."""
    refused, tolerated = differences(recorded, running)
    keys = refused or tolerated
    theirs = describe_machine(recorded, keys)
    ours = describe_machine(running, keys)
    if is_machine(running):
        return f"{artifact} was {verb} on {theirs}; this machine is {ours}"
    return f"{artifact} was {verb} with {theirs}; the running target is {ours}"


# -- checking an artifact -----------------------------------------------------------------------
def check_recorded(
    artifact: str,
    recorded: Mapping[str, Any] | None,
    running: Mapping[str, Any],
    *,
    verb: str = "made",
    recorded_hash: str | None = None,
    on_purpose: bool = False,
    remedy: str = "",
) -> list[str]:
    """Check that an artifact was made on the running target; returns warnings to show.

    Args:
        artifact: What to name in messages, e.g. ``representatives/ort-...yaml``.
        recorded: The fingerprint the artifact records (None or empty: it records none).
        running: The running target's fingerprint.
        verb: How the artifact came to be (``selected``, ``trained``, ``measured``, ...).
        recorded_hash: The fingerprint hash the artifact records, if any.
        on_purpose: The user asked for this artifact of another machine
            (``--from-other-machine``): a refused difference becomes a warning.
        remedy: What the user can do, appended to a refusal after a colon.

    Raises:
        OtherMachineError: a difference outside :data:`TOLERATED_KEYS`, not on purpose.
        IdentityError: a recorded hash that does not match the recorded fingerprint (the
            artifact was edited).
    """
    tail = f": {remedy}" if remedy else ""
    if not recorded:
        if recorded_hash is not None and recorded_hash == fingerprint_hash(running):
            return []
        return [
            f"{artifact} records no fingerprint of the machine it was {verb} on, so prmodel "
            "cannot check that it belongs to this one"
        ]
    if recorded_hash is not None and fingerprint_hash(recorded) != recorded_hash:
        raise IdentityError(
            f"{artifact} records fingerprint_hash {recorded_hash}, but its fingerprint hashes "
            f"to {fingerprint_hash(recorded)}, so it was edited by hand{tail}"
        )
    refused, tolerated = differences(recorded, running)
    if refused:
        sentence = mismatch_sentence(artifact, verb, recorded, running)
        if not on_purpose:
            raise OtherMachineError(sentence + tail)
        return [f"used on purpose from another machine ({FROM_OTHER_MACHINE}): {sentence}"]
    if tolerated:
        return [mismatch_sentence(artifact, verb, recorded, running)]
    return []


def foreign_use_remedy(here: str, target_id: str, *, use: str = "pass") -> str:
    """``run `prmodel select` here, or pass --from-other-machine ID to use it on purpose``
    (``use``: how to give the option, e.g. ``estimate with``)."""
    return f"{here}, or {use} {FROM_OTHER_MACHINE} {target_id} to use it on purpose"


def migrate_command(workspace: str = "") -> str:
    """The command that renames a workspace's artifacts of old target ids."""
    return f"`prmodel migrate{f' -w {workspace}' if workspace else ''}`"


def explain_missing(
    wanted: str,
    target: Target,
    found: Iterable[tuple[str, str, Mapping[str, Any] | None]],
    *,
    verb: str,
    here: str,
    workspace: str = "",
    use: str = "pass",
) -> IdentityError | None:
    """Why the running target's artifact is missing, where the workspace holds its
    counterpart under another id: an old id (``prmodel migrate`` renames it) or another
    machine's id. None where it holds neither.

    Args:
        wanted: The missing artifact, e.g. ``representatives/ort-...yaml``.
        target: The running target.
        found: ``(label, target_id, fingerprint)`` of the artifacts of the same type under
            other ids (fingerprint None where the artifact records none).
        verb: How such an artifact comes to be (``selected``, ``trained``, ...).
        here: What makes it on this machine, e.g. ``run `prmodel select` here``.
        workspace: The workspace to name in the migrate command.
        use: How to give ``--from-other-machine`` (``pass``, ``estimate with``).
    """
    running = target.fingerprint()
    ours = describe_machine(running)
    old = old_target_id(target)
    candidates = []
    for label, target_id, recorded in found:
        if old is not None and target_id == old:
            if not recorded or not differences(recorded, running)[0]:
                return OldTargetIdError(
                    f"{label} is named by the old id of this machine's target (now "
                    f"{target.target_id}): run {migrate_command(workspace)} to rename it"
                )
            new = id_for(target, recorded) or "its own id"
            return OldTargetIdError(
                f"{label} (an old target id) was {verb} on {describe_machine(recorded)} and "
                f"this machine is {ours}: run {migrate_command(workspace)} to rename it to "
                f"{new}, then {here.removeprefix('run ')}"
            )
        if recorded and target_id != target.target_id and same_settings(recorded, running):
            candidates.append((label, target_id, recorded))
    if not candidates:
        return None
    label, target_id, recorded = candidates[0]
    others = f" (and {len(candidates) - 1} more)" if len(candidates) > 1 else ""
    fix = foreign_use_remedy(here, target_id, use=use)
    return OtherMachineError(
        f"there is no {wanted} of this machine, {ours}: {label}{others} was {verb} on "
        f"{describe_machine(recorded)}; {fix}"
    )


__all__ = [
    "FROM_OTHER_MACHINE",
    "MACHINE_KEYS",
    "TOLERATED_KEYS",
    "IdScheme",
    "IdentityError",
    "MachineWarning",
    "OldTargetIdError",
    "OtherMachineError",
    "check_recorded",
    "describe_machine",
    "differences",
    "explain_missing",
    "foreign_use_remedy",
    "id_for",
    "is_machine",
    "made_for",
    "migrate_command",
    "mismatch_sentence",
    "old_target_id",
    "same_settings",
    "short_hash",
]
