"""Models of in-network kernel times, cross-validated by network (prmodel.train.in_network)."""

from __future__ import annotations

import numpy as np

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets.analytic import AnalyticTarget
from prmodel.train.in_network import fit_in_network_models, network_folds

FAST = {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.2}


def _rows() -> tuple[list[LayerConfig | None], np.ndarray, list[str]]:
    """Convs of eight networks (analytic times), a reorder without a layer in each, and
    three max-pools found in one network only."""
    target = AnalyticTarget()
    rng = np.random.default_rng(0)
    layers: list[LayerConfig | None] = []
    networks: list[str] = []
    for n in range(8):
        for _ in range(12):
            size = int(rng.integers(7, 57))
            layers.append(
                LayerConfig.create(
                    LayerKind.CONV,
                    channels=int(rng.integers(8, 257)),
                    out_channels=int(rng.integers(8, 257)),
                    height=size,
                    width=size,
                    kernel=int(rng.choice([1, 3])),
                    padding=1,
                )
            )
            networks.append(f"net{n}")
        layers.append(None)
        networks.append(f"net{n}")
    for _ in range(3):
        layers.append(LayerConfig.create(LayerKind.MAXPOOL, channels=64, height=56, width=56))
        networks.append("net0")
    times = np.array([target.latency_us(x) if x is not None else 5.0 for x in layers])
    return layers, times, networks


def test_folds_split_networks_the_same_way_every_time() -> None:
    names = [f"net{i}" for i in range(7)] * 3
    folds = network_folds(names, 3, seed=0)
    assert folds == network_folds(list(reversed(names)), 3, seed=0)
    assert sorted(set(folds.values())) == [0, 1, 2]
    assert network_folds(["a", "b"], 5)["a"] != network_folds(["a", "b"], 5)["b"]


def test_out_of_fold_predictions_come_from_models_without_the_network() -> None:
    layers, times, networks = _rows()
    profile = AnalyticTarget().hardware_profile()  # its GEMM blocks allow log-relative
    fit = fit_in_network_models(
        layers, times, networks, profile=profile, folds=4, min_rows=8, params=FAST
    )
    conv = np.array([x is not None and x.kind is LayerKind.CONV for x in layers])
    assert set(fit.models) == {LayerKind.CONV}  # three max-pools are too few for a model
    assert np.isfinite(fit.out_of_fold_us[conv]).all()
    assert np.isnan(fit.out_of_fold_us[~conv]).all()
    in_sample = fit.models[LayerKind.CONV].predict([x for x in layers if x is not None][:96])
    out_of_fold = fit.out_of_fold_us[conv]
    # the final model saw every row, the out-of-fold ones did not: they differ
    assert not np.allclose(in_sample, out_of_fold)
    (chosen,) = fit.kinds
    assert chosen.rows == 96 and chosen.networks == 8
    assert set(chosen.errors_pct) == {"log", "log-relative"}
    assert chosen.transform == min(chosen.errors_pct, key=lambda t: chosen.errors_pct[t])
    assert chosen.error_pct is not None and chosen.error_pct < 50


def test_a_kind_in_one_network_only_gets_a_model_but_no_out_of_fold_prediction() -> None:
    layers, times, networks = _rows()
    fit = fit_in_network_models(layers, times, networks, folds=4, min_rows=3, params=FAST)
    pools = np.array([x is not None and x.kind is LayerKind.MAXPOOL for x in layers])
    assert LayerKind.MAXPOOL in fit.models
    assert np.isnan(fit.out_of_fold_us[pools]).all()
    pool_fit = next(k for k in fit.kinds if k.kind is LayerKind.MAXPOOL)
    assert pool_fit.errors_pct == {} and pool_fit.error_pct is None
