"""Tests of prmodel.workflows.evaluation: the whole evaluation on the analytic target."""

from __future__ import annotations

import pandas as pd
import pytest

from prmodel.layers import LayerKind
from prmodel.measure.store import MeasurementStore
from prmodel.select.representatives import RepresentativeSet
from prmodel.targets import get_target
from prmodel.workflows._curves import subsets as _subsets
from prmodel.workflows.evaluation import evaluate
from prmodel.workflows.evaluation_results import (
    CURVE_COLUMNS,
    NETWORK_COLUMNS,
    EvaluationError,
    EvaluationResult,
    EvaluationSettings,
)
from prmodel.workspace import Workspace
from prmodel.zoo import tiny_mobilenet, tiny_resnet

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
