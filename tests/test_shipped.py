"""The reference artifacts the repository ships load and predict: a guard against a fingerprint,
card or adapter change that would silently break them for every user."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from prmodel import zoo
from prmodel.estimate.estimator import Estimator
from prmodel.estimate.kernels import network_kernels
from prmodel.layers import LayerKind
from prmodel.networks import load_network
from prmodel.targets import get_target
from prmodel.workspace import Workspace

REPO = Workspace(Path(__file__).resolve().parents[1])
REFERENCE_CPU = "ort-cpu-avx512-a68b-t1-all"


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_the_shipped_scalesim_predictors_match_the_simulator(dataflow: str) -> None:
    pytest.importorskip("scalesim")
    target = get_target(f"scalesim:rows=32,cols=32,dataflow={dataflow}")
    assert (REPO.root / "trained_models" / target.target_id).is_dir()
    estimator = Estimator.load(REPO, target, partial=True)  # SCALE-Sim has no pools
    network = load_network(zoo.tiny_resnet())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny layers sit below the trained ranges
        estimate = estimator.predict(network)
    kernels = network_kernels(network, target, strict=False).kernels
    layers = [k.layer for k in kernels if k.layer is not None]
    modelled = [x for x in layers if x.kind in (LayerKind.CONV, LayerKind.DENSE)]
    truth = 0.0
    for layer in modelled:
        bench = target.prepare(layer)
        bench.run(1)
        truth += bench.finish().kernel_us[0]  # deterministic: one call is the truth
        bench.close()
    priced = estimate.layers[estimate.layers["source"] != "unpriced"]
    assert estimate.partial
    assert float(np.nansum(priced["predicted_us"])) == pytest.approx(truth, rel=0.05)


def test_the_shipped_cpu_predictor_loads_as_another_machine_s_reference() -> None:
    target = get_target("cpu")
    folder = REPO.root / "trained_models" / REFERENCE_CPU
    assert {p.name for p in folder.iterdir() if p.is_dir()} >= {"conv", "dense", "relu"}
    estimator = Estimator.load(REPO, target, from_other_machine=REFERENCE_CPU)
    estimate = estimator.predict(zoo.tiny_resnet())
    assert not estimate.partial and estimate.total_us > 0
