"""Transfer: a new machine started from another machine's network profiles.

The reference machine is the profiling analytic target of ``test_learn``; the new machine
is the same target with half the compute rate (``gmacs``) and twice the bandwidth, so
compute-bound kernels take up to twice their reference time and memory-bound ones down to
half: a ratio that depends on the kernel, which the translation has to learn from the few
networks measured on the new machine.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_learn import (
    TRAINING,
    UNSEEN,
    ProfilingTarget,
    _run,
    _spec,
    learn_quickly,
)

from prmodel.train.artifacts import list_model_cards
from prmodel.workflows.learn import LearnReport
from prmodel.workflows.network_profiles import in_network_times, read_profiles, write_profiles
from prmodel.workflows.predictor_fit import learn_from_profiles
from prmodel.workflows.transfer import (
    MIN_PAIRS,
    REFERENCE_PREFIX,
    ReferenceProfiles,
    TransferError,
    fit_translation,
    load_reference,
    translated_kernels,
)
from prmodel.workspace import Workspace
from prmodel.zoo.learning import LearningTier
from prmodel.zoo.sets import build_networks, held_out_networks

FIRST = TRAINING[:6]
"""What the new machine measures: six networks the reference measured too."""


def _new_machine() -> ProfilingTarget:
    return ProfilingTarget(gmacs=50.0, gbps=40.0)


def _learn(
    workspace: Path, target: ProfilingTarget, networks: Sequence[Any], **options: Any
) -> LearnReport:
    return learn_quickly(target, Workspace.at(workspace), networks=networks, **options)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfiles:
    """The reference machine's profiles of every training network."""
    report = _learn(tmp_path_factory.mktemp("reference"), ProfilingTarget(), TRAINING)
    return load_reference(report.data_set)


def _error_pct(report: LearnReport, target: ProfilingTarget, folder: Path) -> float:
    from prmodel.estimate.estimator import Estimator

    workspace = Workspace.at(report.models_dir.parent.parent)
    estimator = Estimator.load(workspace, target)
    errors = []
    for path in build_networks(UNSEEN, folder):
        truth = target.true_total_us(path)
        errors.append(abs(estimator.predict(path).total_us - truth) / truth)
    return 100 * float(np.mean(errors))


def test_a_few_networks_and_the_reference_predict_the_new_machine(
    reference: ReferenceProfiles, tmp_path: Path
) -> None:
    target = _new_machine()
    moved = _learn(tmp_path / "transfer", target, FIRST, reference=reference)
    scratch = _learn(tmp_path / "scratch", _new_machine(), FIRST)
    moved_error = _error_pct(moved, target, tmp_path / "nets")
    scratch_error = _error_pct(scratch, target, tmp_path / "nets")
    assert moved_error < scratch_error / 2  # 16 % against 43 % when written
    assert sum(target.calls) == len(FIRST)  # nothing but those networks was measured
    translation = moved.translation
    assert translation is not None
    assert translation.paired_networks == tuple(spec.name for spec in FIRST)
    assert 0.5 <= translation.median_ratio <= 2  # within what the rates allow
    assert translation.error_pct is not None and np.isfinite(translation.error_pct)


def test_translated_times_come_near_what_the_new_machine_measures(
    reference: ReferenceProfiles, tmp_path: Path
) -> None:
    rows = read_profiles(_learn(tmp_path / "few", _new_machine(), FIRST).data_set)
    translation = fit_translation(reference, rows)
    translated = translated_kernels(reference, translation, skip=list(rows["network"]))
    measured = {f"{REFERENCE_PREFIX}{spec.name}" for spec in FIRST}
    assert not measured & set(translated.networks)
    assert all(name.startswith(REFERENCE_PREFIX) for name in translated.networks)
    # The truth: every training network measured on the new machine.
    whole = read_profiles(_learn(tmp_path / "all", _new_machine(), TRAINING).data_set)
    there = reference.rows[~reference.rows["network"].isin([s.name for s in FIRST])]
    there = there.reset_index(drop=True)
    kept = (there["kind"].notna() & (in_network_times(there) > 0)).to_numpy()
    here = whole.assign(here_us=in_network_times(whole)).set_index(["network", "node"])
    keys = zip(there["network"][kept], there["node"][kept], strict=True)
    truth = np.array([here.at[key, "here_us"] for key in keys])
    before = np.median(np.abs(in_network_times(there)[kept] - truth) / truth)
    after = np.median(np.abs(translated.times_us - truth) / truth)
    assert after < before / 2  # 10 % against 41 % when written


def test_the_reference_is_named_in_the_report_and_the_model_cards(
    reference: ReferenceProfiles, tmp_path: Path
) -> None:
    target = _new_machine()
    report = _learn(tmp_path, target, FIRST, reference=reference)
    cards = [card for _, card in list_model_cards(Workspace.at(tmp_path), target.target_id)]
    assert cards
    for card in cards:
        named = card.training_set["reference"]
        assert named["reference"] == reference.target_id
        assert named["file"] == str(reference.path)
        assert len(named["networks"]) == len(TRAINING) - len(FIRST)
    data = report.to_dict()
    assert data["translation"]["pairs"] >= MIN_PAIRS
    assert "translated from" in report.features


def test_a_reference_sharing_too_few_kernels_is_refused(
    reference: ReferenceProfiles, tmp_path: Path
) -> None:
    others = [_spec("resnet", 44, 16), _spec("vgg", 40, 12)]  # not in the reference
    rows = read_profiles(_learn(tmp_path, _new_machine(), others).data_set)
    with pytest.raises(TransferError, match=f"only [0-9] kernels .* needs {MIN_PAIRS}"):
        fit_translation(reference, rows)
    with pytest.raises(TransferError, match="measure some of the reference's networks"):
        learn_from_profiles(rows, _new_machine(), folds=2, reference=reference)


def test_held_out_networks_of_a_reference_are_left_out(
    reference: ReferenceProfiles, tmp_path: Path
) -> None:
    rows = reference.rows.copy()
    hidden = held_out_networks()[0].name
    rows.loc[rows["network"] == TRAINING[0].name, "network"] = hidden
    # Another network under a new name, but built as a held-out one (builder and options).
    disguised = held_out_networks()[1]
    second = rows["network"] == TRAINING[1].name
    rows.loc[second, "network"] = "disguised"
    rows.loc[second, "builder"] = disguised.builder.__name__
    rows.loc[second, "network_options"] = json.dumps(disguised.kwargs)
    path = write_profiles(tmp_path / "renamed.parquet", rows)
    loaded = load_reference(path)
    assert hidden not in loaded.networks and "disguised" not in loaded.networks
    assert len(loaded.networks) == len(TRAINING) - 2


def test_a_missing_or_empty_reference_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no reference network-profile file at"):
        load_reference(tmp_path / "nope.parquet")
    empty = write_profiles(tmp_path / "empty.parquet", read_profiles(tmp_path / "none.parquet"))
    with pytest.raises(TransferError, match="holds no profiled networks"):
        load_reference(empty)


def test_learn_command_starts_from_a_reference(
    reference: ReferenceProfiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copy(reference.path, tmp_path / "reference.parquet")
    target = _new_machine()
    monkeypatch.setattr("prmodel.cli._learn.get_target", lambda spec: target)
    monkeypatch.setattr(
        "prmodel.workflows.learn.learning_tiers",
        lambda: [LearningTier("all", tuple(FIRST))],
    )
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run(
        [
            *("learn", "-t", "analytic", "-w", str(tmp_path / "ws"), "--rounds", "2"),
            *("--max-rounds", "0", "--reference", str(tmp_path / "reference.parquet")),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "translated the kernels of analytic-b16-l8" in " ".join(out.split())
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    code, _, err = _run(
        ["learn", "-t", "analytic", "-w", str(tmp_path), "--reference", str(tmp_path / "x.pq")],
        monkeypatch,
        capsys,
    )
    assert code == 2
    assert "no reference network-profile file at" in " ".join(err.split())
    assert "Traceback" not in err
