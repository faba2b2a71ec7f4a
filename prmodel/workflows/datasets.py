"""The named layer sets in the store: PR sets, test sets and network sets, with ONE test seed.

Every workflow measures through the store under a plan name that says what the layers are
for, so ``prmodel train``, ``prmodel quickstart`` and ``prmodel evaluate`` agree on what a
set holds:

- ``pr-<kind>``: layers the PR sampler drew for training (the evaluation's other training
  samples go to ``random-<kind>`` and ``adaptive-<kind>``);
- ``test-<kind>``: random held-out layers of the kind's default space, drawn with
  :data:`TEST_SEED`, a seed no sampler uses; random draws are sequential, so a smaller test
  set is the first part of a larger one (the quickstart's 50 are the evaluation's first 50);
- ``testnet-<kind>``: every layer of that kind in the evaluation's reference networks;
- ``net-<network>``: the modelled layers of one network, measured as its truth on targets
  that cannot run whole networks.

This module draws these sets, measures them (what the store already holds is reused) and
reads them back; it also computes the truth a network estimate is compared with: the
profiled time of its modelled kernels where the target runs whole networks, the sum of the
target's latency over its modelled layers elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from prmodel.errors import PrmodelError
from prmodel.estimate.compare import compare
from prmodel.estimate.estimator import mapped_layers
from prmodel.layers import LayerConfig, LayerKind, parse_kind
from prmodel.measure.runner import MeasureSettings, SweepReport, run_sweep
from prmodel.measure.store import MeasurementStore
from prmodel.select.dimensions import Limits
from prmodel.select.samplers import PRSampler, RandomSampler, SpaceArg, space_for

if TYPE_CHECKING:
    from prmodel.estimate.estimator import NetworkEstimate
    from prmodel.estimate.kernels import ModelInput
    from prmodel.networks import NetworkMeasurement
    from prmodel.select.representatives import RepresentativeSet
    from prmodel.targets.base import Target

TEST_SEED = 7_919_000
"""Seed of every random test set; samplers use seeds 0, 1, 2, ... so never draw the same."""

PR_SET = "pr"
"""Plan prefix of the PR training sets (``pr-<kind>``)."""
TEST_SET = "test"
"""Plan prefix of the random test sets (``test-<kind>``)."""
NETWORK_TEST_SET = "testnet"
"""Plan prefix of the reference networks' layers in the evaluation (``testnet-<kind>``)."""
NETWORK_SET = "net"
"""Plan prefix of one network's modelled layers (``net-<network>``)."""

Counts = tuple[int, int, int]
"""(measured, reused, failed) points of a set."""


class DatasetError(PrmodelError, ValueError):
    """A named layer set that the store does not hold (one sentence names the plan)."""


def plan_name(prefix: str, kind: LayerKind | str) -> str:
    """The plan of a per-kind set, e.g. ``plan_name("test", "conv") == "test-conv"``."""
    return f"{prefix}-{parse_kind(kind).value}"


def concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty frames one after the other (an empty frame if there are none)."""
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


# -- measuring a set ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MeasuredSet:
    """One named set measured through the store.

    Attributes:
        plan: The plan the layers were recorded under.
        keys: The layers' keys in the order they were asked for (duplicates once).
        rows: Their ok store rows in the store's order (by measurement time), with the
            columns of :data:`prmodel.measure.store.FRAME_COLUMNS`.
        report: What the sweep runner did.
    """

    plan: str
    keys: tuple[str, ...]
    rows: pd.DataFrame
    report: SweepReport

    @property
    def counts(self) -> Counts:
        """Points measured, reused from the store and failed."""
        return self.report.measured, self.report.skipped, self.report.failed

    def in_drawn_order(self) -> pd.DataFrame:
        """``rows`` in the order the layers were asked for (as ``measure_layers`` gives them)."""
        order = {key: i for i, key in enumerate(self.keys)}
        frame = self.rows.sort_values("layer_key", key=lambda s: s.map(order), kind="stable")
        return frame.reset_index(drop=True)


def measure_set(
    layers: Sequence[LayerConfig],
    target: Target,
    *,
    store: MeasurementStore,
    plan: str,
    measure: MeasureSettings | None = None,
    progress: bool = True,
) -> MeasuredSet:
    """Measure what the store lacks of ``layers`` under ``plan`` and read the set back.

    Args:
        layers: The set's layers (duplicates are measured once).
        target: Where to measure them.
        store: Where results go and where measured layers are reused from.
        plan: The plan name the layers are recorded under.
        measure: Runner settings for noisy targets (default: the runner's).
        progress: Show the runner's progress bar.

    Returns:
        The set's rows and the runner's report.
    """
    report = run_sweep(
        layers, target, store=store, settings=measure, progress=progress, plan_name=plan
    )
    keys = tuple(dict.fromkeys(layer.key for layer in layers))
    rows = store.frame(
        target_id=report.target_id, fingerprint_hash=report.fingerprint_hash, layer_keys=keys
    )
    return MeasuredSet(plan, keys, rows, report)


def measure_sets(
    drawn: Mapping[LayerKind, Sequence[LayerConfig]],
    target: Target,
    *,
    store: MeasurementStore,
    prefix: str,
    measure: MeasureSettings | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, Counts]:
    """Measure one set per kind (plans ``<prefix>-<kind>``); their rows one after the other.

    Returns:
        The ok store rows of every set, kind after kind (each in store order), and the
        points measured, reused and failed over all of them.
    """
    frames, measured, reused, failed = [], 0, 0, 0
    for kind, layers in drawn.items():
        one = measure_set(
            layers,
            target,
            store=store,
            plan=plan_name(prefix, kind),
            measure=measure,
            progress=progress,
        )
        frames.append(one.rows)
        measured, reused, failed = (
            measured + one.counts[0],
            reused + one.counts[1],
            failed + one.counts[2],
        )
    return concat_rows(frames), (measured, reused, failed)


# -- PR sets -----------------------------------------------------------------------------------


def draw_pr_layers(
    representatives: RepresentativeSet, kind: LayerKind, budget: int
) -> list[LayerConfig]:
    """``budget`` PR layers of ``kind`` (the PR sampler with seed 0), the ``pr-<kind>`` set."""
    return PRSampler(representatives).sample(kind, budget, seed=0)


def training_kinds(
    store: MeasurementStore, target_id: str, *, train_set: str = PR_SET
) -> list[LayerKind]:
    """The kinds with a training set ``<train_set>-<kind>`` of ``target_id`` in the store.

    Raises:
        DatasetError: the store has no such set.
    """
    prefix = f"{train_set}-"
    found = []
    for plan in store.plan_names(target_id=target_id):
        if plan.startswith(prefix):
            try:
                found.append(parse_kind(plan[len(prefix) :]))
            except PrmodelError:
                continue  # a plan like 'pr-conv-extra' is not a training set
    if not found:
        raise DatasetError(
            f"the store has no training set '{prefix}<kind>' for target {target_id!r}; "
            "measure one first (prmodel sweep, or the PR sampler)"
        )
    return found


def training_rows(
    store: MeasurementStore,
    target_id: str,
    fingerprint_hash: str,
    kind: LayerKind,
    *,
    train_set: str = PR_SET,
) -> pd.DataFrame:
    """The stored rows of the training set ``<train_set>-<kind>`` on this fingerprint.

    Raises:
        DatasetError: the set has no measurements with this fingerprint.
    """
    plan = plan_name(train_set, kind)
    rows = store.frame(target_id=target_id, fingerprint_hash=fingerprint_hash, kind=kind, plan=plan)
    if rows.empty:
        raise DatasetError(
            f"plan {plan!r} has no measurements of target {target_id!r} with this machine's "
            f"fingerprint {fingerprint_hash}"
        )
    return rows


# -- test sets ---------------------------------------------------------------------------------


def draw_test_layers(
    kind: LayerKind | str, size: int, *, space: SpaceArg = None
) -> list[LayerConfig]:
    """The ``size`` random test layers of ``kind`` (default space if None; :data:`TEST_SEED`)."""
    return RandomSampler(space).sample(kind, size, seed=TEST_SEED)


def measure_test_set(
    target: Target,
    kind: LayerKind,
    size: int,
    *,
    store: MeasurementStore,
    test_set: str = TEST_SET,
    measure: MeasureSettings | None = None,
    progress: bool = True,
    space: SpaceArg = None,
) -> MeasuredSet:
    """Draw the random test set of ``kind`` from ``space``; measure it (``<test_set>-<kind>``)."""
    return measure_set(
        draw_test_layers(kind, size, space=space),
        target,
        store=store,
        plan=plan_name(test_set, kind),
        measure=measure,
        progress=progress,
    )


def stored_or_new_test_rows(
    target: Target,
    kind: LayerKind,
    *,
    store: MeasurementStore,
    fingerprint_hash: str,
    size: int,
    test_set: str = TEST_SET,
    progress: bool = True,
    on_draw: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The rows of the test set ``<test_set>-<kind>``; drawn and measured first if missing.

    Args:
        target: The target whose test set is wanted.
        kind: Its layer kind.
        store: The store to read and measure into.
        fingerprint_hash: Only rows of this fingerprint count.
        size: Random layers to draw where the set is missing (0: draw none).
        test_set: The plan prefix.
        progress: Show the runner's progress bar.
        on_draw: Told, in one sentence, when a missing set is drawn.
    """
    plan = plan_name(test_set, kind)
    rows = store.frame(
        target_id=target.target_id, fingerprint_hash=fingerprint_hash, kind=kind, plan=plan
    )
    if not rows.empty or size <= 0:
        return rows
    if on_draw is not None:
        on_draw(
            f"test set {plan!r} does not exist yet: measuring {size} random {kind.value} "
            f"layers on {target.target_id} (seed {TEST_SEED})"
        )
    tests = measure_test_set(target, kind, size, store=store, test_set=test_set, progress=progress)
    return tests.rows


@dataclass(frozen=True, eq=False)
class TestSet:
    """The held-out layers of one kind and their measurements.

    ``random`` and ``networks`` are store rows in drawn order (``networks`` one row per
    distinct layer); ``network_layers`` lists, per network, every layer of the kind in
    execution order (repeats kept: a network's latency counts each of its layers).
    """

    kind: LayerKind
    random: pd.DataFrame
    networks: pd.DataFrame
    network_layers: Mapping[str, tuple[LayerConfig, ...]]

    @property
    def keys(self) -> set[str]:
        """Every test layer's key (training samples with these keys are dropped)."""
        return set(self.random["layer_key"]) | set(self.networks["layer_key"])


def build_test_sets(
    target: Target,
    *,
    store: MeasurementStore,
    kinds: Sequence[LayerKind],
    size: int,
    networks: Mapping[str, Mapping[LayerKind, Sequence[LayerConfig]]] | None = None,
    measure: MeasureSettings | None = None,
    progress: bool = True,
    spaces: SpaceArg = None,
) -> dict[LayerKind, TestSet]:
    """Measure the held-out layers of every kind (plans ``test-<kind>``, ``testnet-<kind>``).

    Args:
        target: The target to measure on.
        store: The store to measure into.
        kinds: The layer kinds.
        size: Random test layers per kind.
        networks: Per network, its layers by kind (see :func:`network_layers_by_kind`).
        measure: Runner settings for noisy targets.
        progress: Show the runner's progress bars.
        spaces: The spaces the random test layers are drawn from (default spaces if None).
            Where given, network layers beyond its limits (MACs, bytes) are left out too, so
            that both test sets lie within the same bound of work.
    """
    sets = {}
    for kind in kinds:
        random_rows = measure_test_set(
            target, kind, size, store=store, measure=measure, progress=progress, space=spaces
        ).in_drawn_order()
        limits = space_for(spaces, kind).limits if spaces is not None else Limits()
        per_network = {
            name: tuple(x for x in layers[kind] if limits.allows(x))
            for name, layers in (networks or {}).items()
        }
        distinct = list({x.key: x for ls in per_network.values() for x in ls}.values())
        net_rows = random_rows.iloc[0:0]
        if distinct:
            net_rows = measure_set(
                distinct,
                target,
                store=store,
                plan=plan_name(NETWORK_TEST_SET, kind),
                measure=measure,
                progress=progress,
            ).in_drawn_order()
        sets[kind] = TestSet(kind, random_rows, net_rows, per_network)
    return sets


# -- network sets and network truths -----------------------------------------------------------


def network_layers_by_kind(
    networks: Sequence[ModelInput], target: Target, kinds: Sequence[LayerKind]
) -> dict[str, dict[LayerKind, tuple[LayerConfig, ...]]]:
    """Per network (by name), its mapped layers of ``kinds`` that ``target`` supports.

    Layers come from the estimator's graph code
    (:func:`prmodel.estimate.estimator.mapped_layers`), so they are the kernels the target
    runs (fusion-aware on ONNX Runtime targets), in execution order.
    """
    found: dict[str, dict[LayerKind, tuple[LayerConfig, ...]]] = {}
    for name, layers in mapped_layers(networks, target).items():
        usable = [x for x in layers if target.unsupported_reason(x) is None]
        found[name] = {kind: tuple(x for x in usable if x.kind is kind) for kind in kinds}
    return found


@dataclass(frozen=True)
class NetworkTruth:
    """The modelled part of one network estimate next to its truth.

    Attributes:
        kernels: Kernels of the estimate.
        modelled: Kernels a trained model priced.
        compared: Modelled kernels that have a truth (the sums cover these).
        predicted_us: Their summed prediction.
        measured_us: Their summed truth.
    """

    kernels: int
    modelled: int
    compared: int
    predicted_us: float
    measured_us: float

    @property
    def error_pct(self) -> float | None:
        """Error of the prediction against the truth, in percent (None without a truth)."""
        if self.measured_us <= 0:
            return None
        return 100 * (self.predicted_us - self.measured_us) / self.measured_us


def profiled_truth(estimate: NetworkEstimate, measurement: NetworkMeasurement) -> NetworkTruth:
    """Truth on targets that run whole networks: the profiled time of the modelled kernels."""
    joined = compare(estimate, measurement).layers
    modelled = joined["status"] == "modelled"
    chosen = joined[modelled & joined["measured_us"].notna()]
    return NetworkTruth(
        kernels=len(joined),
        modelled=int(modelled.sum()),
        compared=len(chosen),
        predicted_us=float(chosen["predicted_us"].sum()),
        measured_us=float(chosen["measured_us"].sum()),
    )


def layer_sum_truth(
    layers: Sequence[LayerConfig],
    predicted: npt.ArrayLike,
    latency: Mapping[str, float],
    *,
    kernels: int | None = None,
) -> NetworkTruth:
    """Truth on other targets: the target's own latency summed over the modelled layers.

    Args:
        layers: The network's modelled layers in execution order (repeats kept).
        predicted: The prediction of each layer, in the same order.
        latency: The target's latency by layer key; layers without one are left out.
        kernels: Kernels of the whole estimate (default: ``len(layers)``).
    """
    values = np.asarray(predicted)  # summed in the models' own dtype, as they predict
    known = [i for i, layer in enumerate(layers) if layer.key in latency]
    return NetworkTruth(
        kernels=len(layers) if kernels is None else kernels,
        modelled=len(layers),
        compared=len(known),
        predicted_us=float(values[known].sum()),
        measured_us=float(sum(latency[layers[i].key] for i in known)),
    )


def measure_network_set(
    network: str,
    layers: Sequence[LayerConfig],
    target: Target,
    *,
    store: MeasurementStore,
    measure: MeasureSettings | None = None,
    progress: bool = True,
) -> tuple[dict[str, float], Counts]:
    """Measure one network's distinct layers (plan ``net-<network>``); latency by layer key."""
    distinct = list({layer.key: layer for layer in layers}.values())
    measured = measure_set(
        distinct,
        target,
        store=store,
        plan=f"{NETWORK_SET}-{network}",
        measure=measure,
        progress=progress,
    )
    rows = measured.rows
    latency = dict(zip(rows["layer_key"], rows["latency_us"], strict=True))
    return latency, measured.counts


__all__ = [
    "NETWORK_SET",
    "NETWORK_TEST_SET",
    "PR_SET",
    "TEST_SEED",
    "TEST_SET",
    "Counts",
    "DatasetError",
    "MeasuredSet",
    "NetworkTruth",
    "TestSet",
    "build_test_sets",
    "concat_rows",
    "draw_pr_layers",
    "draw_test_layers",
    "layer_sum_truth",
    "measure_network_set",
    "measure_set",
    "measure_sets",
    "measure_test_set",
    "network_layers_by_kind",
    "plan_name",
    "profiled_truth",
    "stored_or_new_test_rows",
    "training_kinds",
    "training_rows",
]
