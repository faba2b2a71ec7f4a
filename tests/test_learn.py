"""prmodel learn: profile networks within a time budget, learn a predictor, save it.

The target is the analytic one that also "runs" networks (:class:`ProfilingTarget`): each
kernel takes a known in-network time (the analytic latency times 1.15 for modelled layers,
bytes over bandwidth plus launch for the rest), its profile adds a 3 µs floor, and the
network takes the sum of its kernels plus 25 µs. Every measured network advances a fake
clock by 20 s, so budgets are exact. The networks are tiny ones at several sizes and widths.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from prmodel.cli import main
from prmodel.estimate.calibration import calibration_path
from prmodel.estimate.estimator import Estimator
from prmodel.layers import LayerConfig, LayerKind
from prmodel.networks import Network, NetworkMeasurement, NetworkMeasureSettings
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import fingerprint_hash
from prmodel.train.artifacts import file_sha256, list_model_cards
from prmodel.workflows.learn import LearnError, LearnReport, learn_target
from prmodel.workflows.network_profiles import PROFILE_SET, profiles_path, read_profiles
from prmodel.workflows.predictor_fit import learn_from_profiles
from prmodel.workflows.tier_checks import predict_profiled
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg
from prmodel.zoo.learning import LearningTier
from prmodel.zoo.sets import NetworkSpec, build_networks, held_out_networks

CONTEXT = 1.15
PROFILER_FLOOR_US = 3.0
RUN_OFFSET_US = 25.0
SECONDS_PER_NETWORK = 20.0
FAST = {"n_estimators": 80, "max_depth": 4, "learning_rate": 0.2}
QUICK = NetworkMeasureSettings(rounds=2)  # the fake target only counts the rounds


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class ProfilingTarget(AnalyticTarget):
    """The analytic target (same id and fingerprint) that also times whole networks."""

    clock: FakeClock = field(default_factory=FakeClock, compare=False)
    calls: list[int] = field(default_factory=list, compare=False)

    def measure_networks(
        self,
        networks: Sequence[Network],
        settings: NetworkMeasureSettings | None = None,
        *,
        on_round: Callable[[int], None] | None = None,
    ) -> list[NetworkMeasurement]:
        settings = settings or NetworkMeasureSettings()
        self.calls.append(len(networks))
        measured = [self._measure(network, settings) for network in networks]
        for done in range(settings.rounds):
            if on_round is not None:
                on_round(done + 1)
        self.clock.now += SECONDS_PER_NETWORK * len(networks)
        return measured

    def true_kernels(self, network: Network | str | Path) -> pd.DataFrame:
        """Each running kernel's true in-network time (the fake truth)."""
        table = Estimator(self, {}, strict=False, partial=True).predict(network).layers
        running = table[table["status"] != "free"].reset_index(drop=True)
        times = []
        for _, row in running.iterrows():
            if isinstance(row["kind"], str):
                layer = _layer(row)
                times.append(CONTEXT * self.latency_us(layer))
            else:
                times.append(self.launch_us + float(row["bytes_moved"]) / (self.gbps * 1e3))
        return running.assign(true_us=times)

    def true_total_us(self, network: Network | str | Path) -> float:
        return float(self.true_kernels(network)["true_us"].sum()) + RUN_OFFSET_US

    def _measure(self, network: Network, settings: NetworkMeasureSettings) -> NetworkMeasurement:
        running = self.true_kernels(network)
        kernels = pd.DataFrame(
            {
                "node": running["node"],
                "op": [str(op).rpartition(".")[2] for op in running["op"]],
                "measured_us": running["true_us"] + PROFILER_FLOOR_US,
                "provider": "analytic",
                "output_shape": running["output_shape"],
            }
        )
        total = float(running["true_us"].sum()) + RUN_OFFSET_US
        return NetworkMeasurement(
            network=network.name,
            target_id=self.target_id,
            total_us=total,
            median_us=total,
            p10_us=total,
            p90_us=total,
            round_medians_us=(total,) * settings.rounds,
            runs=settings.rounds * settings.runs,
            kernels=kernels,
            settings=settings,
        )


def _layer(row: pd.Series) -> LayerConfig:
    from prmodel.measure.frames import layers_from_frame

    return layers_from_frame(pd.DataFrame([row]))[0]


# Tiny builders with the zoo builders' ``weights`` option (a spec builds skeletons with it).
def tiny_resnet_net(*, weights: bool = True, **options: Any) -> onnx.ModelProto:
    return tiny_resnet(**options)


def tiny_mobilenet_net(*, weights: bool = True, **options: Any) -> onnx.ModelProto:
    return tiny_mobilenet(**options)


def tiny_vgg_net(*, weights: bool = True, **options: Any) -> onnx.ModelProto:
    return tiny_vgg(**options)


BUILDERS = {"resnet": tiny_resnet_net, "mobilenet": tiny_mobilenet_net, "vgg": tiny_vgg_net}


def _spec(family: str, size: int, width: int, batch: int = 1) -> NetworkSpec:
    options = {"size": size, "width": width, "batch": batch}
    return NetworkSpec(f"tiny_{family}_{size}_w{width}_b{batch}", BUILDERS[family], options)


TRAINING = [
    _spec(family, size, width, batch)
    for size, width, batch in [
        (32, 16, 1),
        (24, 8, 1),
        (48, 24, 1),
        (32, 32, 2),
        (40, 12, 1),
        (24, 20, 2),
    ]
    for family in BUILDERS
]
UNSEEN = [_spec("resnet", 36, 20), _spec("mobilenet", 28, 12, 2), _spec("vgg", 56, 16)]


def learn_quickly(target: ProfilingTarget, workspace: Workspace, **options: Any) -> LearnReport:
    """``learn_target`` on the fake target with quick settings (an hour's budget on its
    clock, 2 rounds, 3 folds, small models); ``options`` add or replace arguments."""
    settings = {
        "minutes": 60,
        "settings": QUICK,
        "folds": 3,
        "model_params": FAST,
        "progress": False,
        "clock": target.clock,
    }
    return learn_target(target, workspace=workspace, **{**settings, **options})


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, ProfilingTarget, Any]:
    """One workspace learned from the training networks (shared: training takes seconds)."""
    workspace = Workspace.at(tmp_path_factory.mktemp("learned"))
    target = ProfilingTarget()
    report = learn_quickly(target, workspace, networks=TRAINING)
    return workspace, target, report


def test_learned_predictor_estimates_unseen_networks_close_to_the_truth(
    learned: tuple[Workspace, ProfilingTarget, Any], tmp_path: Path
) -> None:
    workspace, target, report = learned
    estimator = Estimator.load(workspace, target)  # what `prmodel estimate` loads
    assert estimator.calibration is not None
    paths = build_networks(UNSEEN, tmp_path)
    for path in paths:
        truth = target.true_total_us(path)
        estimate = estimator.predict(path)
        assert not estimate.partial
        assert abs(estimate.total_us - truth) / truth < 0.10, path.stem
    assert report.mape is not None and report.mape < 10
    assert len(report.checks) == len(TRAINING)


def test_learn_measures_every_network_once_and_writes_the_data_set(
    learned: tuple[Workspace, ProfilingTarget, Any],
) -> None:
    workspace, target, report = learned
    assert sorted(report.measured) == sorted(spec.name for spec in TRAINING)
    assert report.reused == () and report.skipped == ()
    assert sum(target.calls) == len(TRAINING)
    assert max(target.calls) <= 8  # batches of at most MAX_BATCH networks
    frame = read_profiles(profiles_path(workspace, target.target_id))
    assert set(frame["network"]) == {spec.name for spec in TRAINING}
    assert set(frame["target_id"]) == {target.target_id}
    assert set(frame["fingerprint_hash"]) == {fingerprint_hash(target.fingerprint())}
    protocol = json.loads(frame["protocol"].iloc[0])
    assert protocol["settings"]["rounds"] == QUICK.rounds
    assert frame.loc[frame["status"] == "timed", "measured_us"].notna().all()
    assert (frame["kind"] == "conv").any()
    assert report.measure_seconds == SECONDS_PER_NETWORK * len(TRAINING)


def test_model_cards_and_calibration_name_the_training_set(
    learned: tuple[Workspace, ProfilingTarget, Any],
) -> None:
    workspace, target, report = learned
    cards = list_model_cards(workspace, target.target_id)
    kinds = {card.kind for _, card in cards}
    assert {"conv", "dense"} <= kinds
    assert kinds == {k.kind.value for k in report.kinds}
    for _, card in cards:
        assert card.training_set["name"] == PROFILE_SET
        assert card.training_set["networks"] == [spec.name for spec in TRAINING]
        assert card.training_set["file"].endswith(f"{target.target_id}.parquet")
        assert card.fingerprint_hash == fingerprint_hash(target.fingerprint())
    saved = json.loads(calibration_path(workspace, target.target_id).read_text())
    assert saved["notes"]["training_set"]["name"] == PROFILE_SET
    assert tuple(saved["terms"]) in {
        ("scale",),
        ("scale", "offset"),
        ("scale", "kernels"),
        ("scale", "kernels", "offset"),
    }
    ops = {fit["op"] for fit in saved["unmodelled"]}
    assert "*" in ops  # kernels without a layer get a byte-cost fit


def test_a_rerun_reuses_what_was_measured(
    learned: tuple[Workspace, ProfilingTarget, Any],
) -> None:
    workspace, _, first = learned
    target = ProfilingTarget()
    report = learn_quickly(target, workspace, networks=TRAINING)
    assert target.calls == []
    assert report.measured == ()
    assert sorted(report.reused) == sorted(first.measured)
    assert report.measure_seconds == 0
    assert report.data_seconds == pytest.approx(first.data_seconds)


def test_the_time_budget_stops_measuring(tmp_path: Path) -> None:
    target = ProfilingTarget()
    report = learn_quickly(
        target,
        Workspace.at(tmp_path),
        networks=TRAINING,
        minutes=1.5,  # 90 s: four networks at 20 s each
        folds=2,
    )
    assert len(report.measured) in range(1, 5)
    assert report.measure_seconds <= 90
    assert len(report.skipped) == len(TRAINING) - len(report.measured)
    assert any("left" in note and "unmeasured" in note for note in report.notes)


def test_a_zero_budget_with_nothing_measured_is_refused(tmp_path: Path) -> None:
    target = ProfilingTarget()
    with pytest.raises(LearnError, match="nothing was measured within 0 minutes"):
        learn_target(
            target,
            workspace=Workspace.at(tmp_path),
            networks=TRAINING[:3],
            minutes=0,
            settings=QUICK,
            progress=False,
            clock=target.clock,
        )
    assert target.calls == []


def test_held_out_networks_are_refused(tmp_path: Path) -> None:
    held_out = held_out_networks()[0]
    renamed = NetworkSpec("my_net", held_out.builder, {**held_out.kwargs, "seed": 3})
    for networks in ([held_out], [TRAINING[0], renamed]):
        with pytest.raises(LearnError, match="held-out"):
            learn_target(
                ProfilingTarget(),
                workspace=Workspace.at(tmp_path),
                networks=networks,
                progress=False,
            )


def test_a_target_that_cannot_run_networks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LearnError, match="cannot run whole networks"):
        learn_target(AnalyticTarget(), workspace=Workspace.at(tmp_path), progress=False)


def test_models_of_another_training_set_are_not_mixed_in(
    learned: tuple[Workspace, ProfilingTarget, Any], tmp_path: Path
) -> None:
    workspace, target, _ = learned
    other = Workspace.at(tmp_path)
    source = workspace.model_dir(target.target_id, "conv")
    folder = other.model_dir(target.target_id, "conv")
    folder.mkdir(parents=True)
    for file in source.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    card = json.loads((folder / "model_card.json").read_text())
    card["training_set"] = {}
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(LearnError, match="models trained on other sets \\(conv\\)"):
        learn_target(target, workspace=other, networks=TRAINING, progress=False)


def test_kinds_with_few_kernels_are_left_to_the_byte_cost_fits(
    learned: tuple[Workspace, ProfilingTarget, Any],
) -> None:
    _, _, report = learned
    for fitted in report.kinds:
        assert fitted.rows >= 8
        assert fitted.transform in fitted.errors_pct
        assert np.isfinite(fitted.errors_pct[fitted.transform])
    assert LayerKind.CONV in {k.kind for k in report.kinds}


# -- the command line --------------------------------------------------------------------------


def _run(
    args: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prmodel", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_learn_command_reports_what_it_learned_in_80_columns(
    learned: tuple[Workspace, ProfilingTarget, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(learned[0].root, tmp_path / "ws")  # the shared workspace stays as it is
    workspace = Workspace.at(tmp_path / "ws")
    target = ProfilingTarget()
    monkeypatch.setattr("prmodel.cli._learn.get_target", lambda spec: target)
    monkeypatch.setattr(
        "prmodel.workflows.learn.learning_tiers", lambda: [LearningTier("all", tuple(TRAINING))]
    )
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run(
        [
            *("learn", "-t", "analytic", "-w", str(workspace.root), "--minutes", "0"),
            *("--rounds", "2", "--max-rounds", "0"),  # the protocol the workspace was measured with
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert target.calls == []  # every network is reused: nothing measured
    assert f"learned from {len(TRAINING)} networks ({len(TRAINING)} reused" in out
    assert "nothing measured now" in out
    assert "calibration:" in out and "MAPE" in out and "within ±10 %" in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
    assert "e+0" not in out  # no scientific notation


def test_learn_command_refuses_a_target_without_whole_networks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["learn", "-t", "analytic", "-w", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert "cannot run whole networks" in " ".join(err.split())
    assert "Traceback" not in err


def test_learn_help_shows_an_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["learn", "--help"], monkeypatch, capsys)
    assert code == 0
    assert "Example: prmodel learn" in out


def test_a_pr_file_gives_the_models_its_architecture_features(tmp_path: Path) -> None:
    target = ProfilingTarget()
    workspace = Workspace.at(tmp_path)
    steps = (
        ParameterSteps(LayerKind.CONV, "out_channels", True, period=16),
        ParameterSteps(LayerKind.CONV, "channels", True, period=8),
    )
    pr_path = RepresentativeSet(target.target_id, steps).save(
        workspace.representatives_path(target.target_id)
    )
    notes: list[str] = []
    report = learn_quickly(target, workspace, networks=TRAINING[:9], on_note=notes.append)
    assert report.features == f"PR file {pr_path.name}"
    (conv,) = [
        card for _, card in list_model_cards(workspace, target.target_id) if card.kind == "conv"
    ]
    assert "out_channels_plateau" in conv.feature_schema
    assert conv.representatives_sha256 == file_sha256(pr_path)
    assert not conv.plateau_mapping  # in-network kernels sit anywhere on a plateau
    assert not any("no PR file" in note for note in notes)


# -- tiers and the stop rule -------------------------------------------------------------------

EXTRA = [_spec("resnet", 44, 16), _spec("mobilenet", 36, 24), _spec("vgg", 32, 8, 2)]
TIERS = [
    LearningTier("first", tuple(TRAINING[:9])),
    LearningTier("second", tuple(TRAINING[9:])),
    LearningTier("third", tuple(EXTRA)),
]


def _learn_tiers(tmp_path: Path, stop_pct: float, **options: Any) -> tuple[Any, ProfilingTarget]:
    target = ProfilingTarget()
    options.setdefault("tiers", TIERS)
    report = learn_quickly(target, Workspace.at(tmp_path), stop_pct=stop_pct, **options)
    return report, target


def test_learning_stops_after_a_tier_predicted_within_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prmodel.workflows.tier_checks.CHECK_MIN_NETWORKS", 9)
    report, target = _learn_tiers(tmp_path, stop_pct=1000)
    (check,) = report.tier_checks
    assert (check.tier, check.networks, check.trained_on) == ("second", 9, 9)
    assert report.stopped_after == "second"
    assert sum(target.calls) == 18  # the third tier was never measured
    assert sorted(report.skipped) == sorted(spec.name for spec in EXTRA)
    assert len(report.networks) == 18
    assert report.to_dict()["stopped_after"] == "second"


def test_a_tier_predicted_worse_than_the_threshold_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prmodel.workflows.tier_checks.CHECK_MIN_NETWORKS", 9)
    report, target = _learn_tiers(tmp_path, stop_pct=1e-9)
    (check,) = report.tier_checks
    assert check.mape > 1e-9 and check.tier == "second"
    assert report.stopped_after is None
    assert sum(target.calls) == 21 and report.skipped == ()


def test_no_check_below_the_threshold_of_zero_or_too_few_networks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, target = _learn_tiers(tmp_path / "zero", stop_pct=0)
    assert report.tier_checks == () and sum(target.calls) == 21
    report, target = _learn_tiers(tmp_path / "few", stop_pct=1000)  # 9 < CHECK_MIN_NETWORKS
    assert report.tier_checks == () and sum(target.calls) == 21


def test_networks_measured_before_are_used_whatever_the_checks_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _learn_tiers(tmp_path, stop_pct=0)  # every tier measured
    monkeypatch.setattr("prmodel.workflows.tier_checks.CHECK_MIN_NETWORKS", 9)
    report, target = _learn_tiers(tmp_path, stop_pct=1000)
    assert target.calls == [] and report.tier_checks == ()
    assert len(report.reused) == 21


def test_the_stop_rule_and_the_tiers_are_checked(tmp_path: Path) -> None:
    with pytest.raises(LearnError, match="stop threshold"):
        _learn_tiers(tmp_path, stop_pct=-1)
    with pytest.raises(LearnError, match="not both"):
        _learn_tiers(tmp_path, stop_pct=3, networks=TRAINING)


def test_profiled_rows_are_predicted_as_the_estimator_predicts_the_network(
    learned: tuple[Workspace, ProfilingTarget, Any], tmp_path: Path
) -> None:
    _, target, report = learned
    rows = read_profiles(report.data_set)
    first = [spec.name for spec in TRAINING[:12]]
    predictor = learn_from_profiles(
        rows[rows["network"].isin(first)], target, folds=3, model_params=FAST
    )
    rest = TRAINING[12:]
    predicted = predict_profiled(
        predictor, rows[rows["network"].isin(s.name for s in rest)], target
    )
    estimator = predictor.estimator(target)
    for path in build_networks(rest, tmp_path):
        assert predicted[path.stem] == pytest.approx(estimator.predict(path).total_us, rel=1e-9)
