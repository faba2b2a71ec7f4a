"""A new target is one class in one file: select -> train -> estimate on a plug-in.

:class:`StaircaseAccelerator` lives here, outside the package, and touches nothing in
prmodel. It is loaded by its dotted spec like any user's device and then goes through the
public API only: the selection finds its staircase from its own hardware profile, the
models trained on its PRs estimate small networks close to its own latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

import prmodel
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.frames import layers_from_frame
from prmodel.targets import TargetError, Timings
from prmodel.targets.profiles import HardwareProfile, StepHint
from prmodel.zoo import tiny_mobilenet, tiny_resnet

BLOCK = 12
"""The plug-in's output block: neither the 8 nor the 16 of a CPU, so nothing is borrowed."""


@dataclass(frozen=True)
class StaircaseAccelerator:
    """A made-up deterministic accelerator: output channels fill ``block``-wide units.

    Conv and dense latency is a launch cost plus the work with the output channels padded
    to a multiple of ``block`` (a staircase in ``out_channels``); every other kind costs
    its activation bytes.
    """

    block: int = BLOCK
    name: str = "staircase"
    deterministic: bool = True

    @classmethod
    def from_options(cls, options: dict[str, str]) -> StaircaseAccelerator:
        unknown = sorted(set(options) - {"block"})
        if unknown:
            raise TargetError(f"staircase target has no option {unknown[0]!r}")
        return cls(block=int(options.get("block", BLOCK)))

    @property
    def target_id(self) -> str:
        return f"staircase-b{self.block}"

    def fingerprint(self) -> dict[str, object]:
        return {"target": "staircase", "block": self.block}

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        return None

    def prepare(self, layer: LayerConfig) -> _Replay:
        return _Replay(layer, self.latency_us(layer))

    def hardware_profile(self) -> HardwareProfile:
        hint = StepHint((self.block,), note=f"outputs fill {self.block}-wide units")
        return HardwareProfile(
            name=self.target_id,
            family="accelerator",
            description="test plug-in",
            architecture={"block": self.block},
            hints={LayerKind.CONV: {"out_channels": hint}, LayerKind.DENSE: {"out_channels": hint}},
        )

    def latency_us(self, layer: LayerConfig) -> float:
        padded = math.ceil(layer.out_channels / self.block) * self.block
        if layer.kind is LayerKind.CONV:
            window = (layer.channels // layer.groups) * layer.kernel_h * layer.kernel_w
            work = layer.batch * padded * layer.output_height * layer.output_width * window
        elif layer.kind is LayerKind.DENSE:
            work = layer.batch * padded * layer.channels
        else:
            work = layer.activation_bytes
        return 1.0 + work / 1000.0


class _Replay:
    """Every call takes exactly the modelled latency."""

    def __init__(self, layer: LayerConfig, latency_us: float) -> None:
        self.layer = layer
        self._latency_us = latency_us
        self._calls = 0

    def run(self, calls: int) -> list[float]:
        self._calls += calls
        return [self._latency_us] * calls

    def finish(self) -> Timings:
        times = (self._latency_us,) * max(self._calls, 1)
        return Timings(kernel_us=times, wall_us=times)

    def close(self) -> None:
        self._calls = 0


SPEC = f"{__name__}.StaircaseAccelerator:block={BLOCK}"


def test_the_plugin_loads_by_its_dotted_spec_and_supplies_its_profile() -> None:
    target = prmodel.get_target(SPEC)
    assert target == StaircaseAccelerator()
    assert isinstance(target, prmodel.Target)
    assert prmodel.profile_for(target) == target.hardware_profile()
    with pytest.raises(TargetError, match="no option 'rows'"):
        prmodel.get_target(f"{__name__}.StaircaseAccelerator:rows=2")


def test_select_train_estimate_on_the_plugin(workspace: prmodel.Workspace) -> None:
    target = prmodel.get_target(SPEC)
    kinds = ("conv", "dense")

    selection = prmodel.run_selection(
        target, workspace=workspace, kinds=kinds, progress=False, plots=False
    )
    steps = {(s.kind.value, s.parameter): s for s in selection.representatives.steps}
    for kind in kinds:
        out = steps[(kind, "out_channels")]
        assert out.has_steps and (out.period, out.offset % BLOCK) == (BLOCK, 0)
        # one PR per plateau, at its top: the last value before the next block starts
        assert out.representatives[:4] == (BLOCK, 2 * BLOCK, 3 * BLOCK, 4 * BLOCK)
        assert all(value % BLOCK == 0 for value in out.representatives)
        assert not steps[(kind, "channels")].has_steps  # linear in the inputs

    sampler = prmodel.PRSampler(selection.representatives)
    layers = [layer for kind in kinds for layer in sampler.sample(kind, 60, seed=0)]
    with prmodel.MeasurementStore(workspace.store_path) as store:
        rows = prmodel.measure_layers(layers, target, store=store, progress=False, plan_name="pr")
    report = prmodel.train_models(
        rows,
        target_id=target.target_id,
        fingerprint=target.fingerprint(),
        settings=prmodel.TrainSettings(trials=0),
        representatives=selection.representatives,
        workspace=workspace,
        progress=False,
    )
    assert {result.kind.value for result in report.results} == set(kinds)

    # Partial: only some kinds are trained; the modelled kernels are what is checked.
    estimator = prmodel.Estimator.load(workspace, target, calibrated=False, partial=True)
    for network in (tiny_resnet(), tiny_mobilenet()):
        estimate = estimator.predict(network)
        modelled = estimate.layers[estimate.layers["status"] == "modelled"]
        assert set(modelled["kind"]) == set(kinds)
        truth = sum(target.latency_us(layer) for layer in layers_from_frame(modelled))
        assert modelled["predicted_us"].sum() == pytest.approx(truth, rel=0.10)
