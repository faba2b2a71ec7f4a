"""Tests of prmodel.workflows.evaluation: the whole evaluation on the analytic target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prmodel.estimate.estimator import mapped_layers
from prmodel.layers import LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.store import MeasurementStore
from prmodel.select.representatives import RepresentativeSet
from prmodel.select.spaces import ParameterSpace, default_space
from prmodel.targets import get_target
from prmodel.workflows._curves import subsets as _subsets
from prmodel.workflows.datasets import network_layers_by_kind
from prmodel.workflows.evaluation import evaluate
from prmodel.workflows.evaluation_results import (
    CURVE_COLUMNS,
    NETWORK_COLUMNS,
    EvaluationError,
    EvaluationResult,
    EvaluationSettings,
    budget_to_reach,
)
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet, tiny_vgg

# Compute-bound analytic target: latency is an exact staircase in the blocked dimensions.
SPEC = "analytic:gbps=100000"
BUDGETS = (30, 100, 300)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResult, Workspace]:
    workspace = Workspace.at(tmp_path_factory.mktemp("evaluation")).create()
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV, LayerKind.DENSE),
        budgets=BUDGETS,
        samplers=("pr", "random", "adaptive"),
        seeds=1,
        test_size=60,
    )
    result = evaluate(
        get_target(SPEC),
        workspace=workspace,
        settings=settings,
        networks=[tiny_resnet(), tiny_mobilenet()],
        progress=False,
    )
    return result, workspace


def test_curves_have_one_row_per_kind_sampler_budget_seed_and_test_set(
    run: tuple[EvaluationResult, Workspace],
) -> None:
    result, _ = run
    curves = result.curves
    assert tuple(curves.columns) == CURVE_COLUMNS
    random_rows = curves[curves["test_set"] == "random"]
    assert len(random_rows) == 2 * 3 * len(BUDGETS)
    assert set(curves["test_set"]) == {
        "random",
        "networks",
        "random-depthwise",
        "networks-depthwise",
    }
    assert (curves["train_rows"] <= curves["budget"]).all()
    assert curves["mape"].notna().all() and (curves["mape"] >= 0).all()


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_noise_floor_is_zero_on_a_deterministic_target(
    run: tuple[EvaluationResult, Workspace], kind: str
) -> None:
    result, _ = run
    assert result.noise_floor(kind) == 0.0


def test_pr_beats_random_on_conv_and_whole_networks(
    run: tuple[EvaluationResult, Workspace],
) -> None:
    result, _ = run
    summary = result.summary()
    conv = summary[(summary["kind"] == "conv") & (summary["test_set"] == "random")]
    mape = conv.set_index(["sampler", "budget"])["mape"]
    # With the GEMM work estimate both samplers converge by 300 samples; PR gets there first.
    assert mape[("pr", 100)] < mape[("random", 100)]
    dense = summary[(summary["kind"] == "dense") & (summary["test_set"] == "random")]
    dense_mape = dense.set_index(["sampler", "budget"])["mape"]
    assert dense_mape[("pr", 300)] < dense_mape[("random", 300)]
    networks = result.network_summary().set_index("sampler")["network_mape"]
    assert networks["pr"] < networks["random"]


def test_whole_network_truth_is_the_sum_of_the_layers(
    run: tuple[EvaluationResult, Workspace],
) -> None:
    result, _ = run
    assert tuple(result.networks.columns) == NETWORK_COLUMNS
    assert set(result.networks["network"]) == {"tiny_resnet", "tiny_mobilenet"}
    assert set(result.networks["truth"]) == {"layer sum"}
    assert (result.networks["budget"] == max(BUDGETS)).all()
    row = result.networks.iloc[0]
    expected = 100 * (row["predicted_us"] - row["measured_us"]) / row["measured_us"]
    assert row["error_pct"] == pytest.approx(expected)


def test_test_layers_are_stored_apart_and_never_trained_on(
    run: tuple[EvaluationResult, Workspace],
) -> None:
    _, workspace = run
    with MeasurementStore(workspace.store_path) as store:
        for kind in ("conv", "dense"):
            test_keys = set(store.frame(plan=f"test-{kind}")["layer_key"])
            test_keys |= set(store.frame(plan=f"testnet-{kind}")["layer_key"])
            assert len(test_keys) >= 60
            for sampler in ("pr", "random", "adaptive"):
                trained = set(store.frame(plan=f"{sampler}-{kind}")["layer_key"])
                assert trained and not trained & test_keys


def test_costs_count_every_sampled_layer(run: tuple[EvaluationResult, Workspace]) -> None:
    result, _ = run
    costs = result.costs.set_index(["kind", "sampler"])
    assert len(costs) == 6
    assert (costs["layers"] >= min(BUDGETS)).all()
    assert (costs["bench_seconds"] > 0).all()


def test_the_pr_set_is_selected_once_and_saved(run: tuple[EvaluationResult, Workspace]) -> None:
    result, workspace = run
    path = workspace.representatives_path(result.target_id)
    assert result.representatives_path == path and path.is_file()
    steps = RepresentativeSet.load(path).for_kind("conv")["out_channels"]
    assert steps.period == 16


def test_a_rerun_reuses_every_measurement(run: tuple[EvaluationResult, Workspace]) -> None:
    _, workspace = run
    with MeasurementStore(workspace.store_path) as store:
        before = len(store.frame())
    again = evaluate(
        get_target(SPEC),
        workspace=workspace,
        settings=EvaluationSettings(
            kinds=(LayerKind.DENSE,),
            budgets=(30,),
            samplers=("pr", "random"),
            seeds=1,
            test_size=60,
        ),
        progress=False,
    )
    with MeasurementStore(workspace.store_path) as store:
        assert len(store.frame()) == before
    assert len(again.curves) == 2


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"samplers": ("pr", "grid")}, "grid"),
        ({"budgets": (2,)}, "budget 2"),
        ({"seeds": 0}, "seeds"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(EvaluationError, match=fragment):
        EvaluationSettings(**options)  # type: ignore[arg-type]


def test_conv_test_sets_report_depthwise_and_other_grouped_convs_apart() -> None:
    rows = pd.DataFrame(
        {"groups": [1, 32, 4, 1], "channels": [16, 32, 32, 8], "latency_us": [1.0, 2.0, 3.0, 4.0]}
    )
    subsets = dict(_subsets("random", rows, LayerKind.CONV))
    assert list(subsets) == ["random", "random-depthwise", "random-grouped"]
    assert subsets["random-depthwise"]["groups"].tolist() == [32]
    assert subsets["random-grouped"]["groups"].tolist() == [4]
    without = dict(_subsets("networks", rows.iloc[[0, 1]], LayerKind.CONV))
    assert list(without) == ["networks", "networks-depthwise"]  # no grouped rows: no subset


# -- the network prior, held-out test networks and a bounded space ------------------------------

CAP = 500_000  # MACs: tiny_resnet has conv layers on both sides of it (33k to 590k)


def _bounded(kind: LayerKind) -> ParameterSpace:
    space = default_space(kind)
    return replace(space, limits=replace(space.limits, max_macs=CAP))


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResult, Workspace]:
    workspace = Workspace.at(tmp_path_factory.mktemp("prior")).create()
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV,),
        budgets=(30, 60),
        samplers=("pr", "random", "networks"),
        seeds=1,
        test_size=30,
        spaces={LayerKind.CONV: _bounded(LayerKind.CONV)},
        whole_networks=False,
    )
    result = evaluate(
        get_target(SPEC),
        workspace=workspace,
        settings=settings,
        networks=[tiny_resnet()],
        prior_networks=[tiny_vgg(), tiny_mobilenet()],
        progress=False,
    )
    return result, workspace


def test_the_network_prior_joins_the_comparison(
    prior_run: tuple[EvaluationResult, Workspace],
) -> None:
    result, workspace = prior_run
    assert set(result.curves["sampler"]) == {"pr", "random", "networks"}
    assert result.networks.empty  # whole networks were not asked for
    prior_keys = {
        x.key for x in mapped_layers([tiny_vgg(), tiny_mobilenet()], get_target(SPEC))["tiny_vgg"]
    }
    with MeasurementStore(workspace.store_path) as store:
        trained = set(store.frame(plan="networks-conv")["layer_key"])
        tests = set(store.frame(plan="test-conv")["layer_key"])
        tests |= set(store.frame(plan="testnet-conv")["layer_key"])
    assert trained & prior_keys  # it draws the prior networks' own layers ...
    assert not trained & tests  # ... and never a test layer


def test_a_bounded_space_bounds_every_sampler_and_both_test_sets(
    prior_run: tuple[EvaluationResult, Workspace],
) -> None:
    result, workspace = prior_run
    with MeasurementStore(workspace.store_path) as store:
        for plan in ("pr-conv", "random-conv", "networks-conv", "test-conv", "testnet-conv"):
            macs = [x.macs for x in layers_from_frame(store.frame(plan=plan))]
            assert macs and max(macs) <= CAP, plan
    by_kind = network_layers_by_kind([tiny_resnet()], get_target(SPEC), (LayerKind.CONV,))
    layers = {x.key: x for x in by_kind["tiny_resnet"][LayerKind.CONV]}
    inside = [x for x in layers.values() if x.macs <= CAP]
    assert 0 < len(inside) < len(layers)
    assert result.test_sizes["conv"]["networks"] == len(inside)
    assert result.settings.as_dict()["spaces"]["conv"]["limits"]["max_macs"] == CAP


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"samplers": ("pr", "networks")}, "prior networks"),
        ({"prior_networks": [tiny_resnet()]}, "both a prior network and a test network"),
    ],
)
def test_prior_networks_are_required_and_kept_apart_from_test_networks(
    tmp_path: Path, options: dict[str, Any], fragment: str
) -> None:
    samplers = options.pop("samplers", ("random", "networks"))
    settings = EvaluationSettings(
        kinds=(LayerKind.CONV,), budgets=(30,), samplers=samplers, seeds=1, test_size=10
    )
    with pytest.raises(EvaluationError, match=fragment):
        evaluate(
            get_target(SPEC),
            workspace=Workspace.at(tmp_path).create(),
            settings=settings,
            networks=[tiny_resnet()],
            progress=False,
            **options,
        )


@pytest.mark.parametrize(
    ("mape", "expected"),
    [
        (20.0, (100.0, "=")),  # exactly the second point
        (15.0, (pytest.approx(10**2.5), "=")),  # half way down 100 -> 1000 on log budget
        (50.0, (30.0, "<=")),  # the first budget is already better
        (5.0, (None, "not reached")),
    ],
)
def test_budget_to_reach_interpolates_on_log_budget(
    mape: float, expected: tuple[float | None, str]
) -> None:
    curve = {30: 40.0, 100: 20.0, 1000: 10.0}
    assert budget_to_reach(curve, mape) == expected


def test_sample_ratios_compare_a_sampler_with_random_at_each_budget() -> None:
    rows = [
        {"kind": "conv", "test_set": "random", "sampler": s, "budget": b, "seed": seed, "mape": m}
        for s, curve in (
            ("random", {30: 40.0, 100: 30.0, 300: 20.0}),
            ("pr", {30: 30.0, 100: 20.0, 300: 19.0}),
        )
        for b, m in curve.items()
        for seed in (0, 1)
    ]
    result = EvaluationResult(
        target_id="t",
        fingerprint_hash="h",
        deterministic=True,
        settings=EvaluationSettings(
            kinds=("conv",), budgets=(30, 100, 300), samplers=("pr", "random")
        ),
        curves=pd.DataFrame(rows),
        networks=pd.DataFrame(),
        noise=pd.DataFrame(),
        costs=pd.DataFrame(),
        test_sizes={},
        representatives_path=None,
    )
    found = {r["baseline_budget"]: r for r in result.sample_ratios("conv", "random", "pr")}
    assert found[30]["bound"] == "<=" and found[30]["ratio"] == 1.0
    assert found[100]["budget"] == 30.0 and found[100]["ratio"] == pytest.approx(100 / 30)
    assert found[300]["budget"] == 100.0 and found[300]["ratio"] == 3.0
    assert result.sample_ratios("conv", "random", "networks") == []
