"""Whole networks on ONNX Runtime: the graph its optimizer makes, and timed, profiled runs.

:func:`optimized_graph` saves the graph ORT runs for a network (NCHWc convs with fused
activations and residual "Sum" inputs, ``FusedConv``/``FusedGemm``, layout reorders, batch-norm
folded), from which the estimator reads the kernels; :func:`nchwc_block_size` probes the
channel block that ORT pads NCHWc tensors to (16 with AVX-512, 8 with AVX2).

:func:`measure_networks` runs networks with a target's own session options (warm-up, rounds of
plain and profiled runs, rounds interleaved across networks) and returns each network's latency
and per-kernel profiled times. :class:`~prmodel.targets.onnxruntime.target.OnnxRuntimeTarget`
offers these as its :class:`~prmodel.targets.base.GraphOptimizer` and
:class:`~prmodel.targets.base.NetworkRunner` capabilities.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from prmodel.errors import first_line
from prmodel.networks import (
    KERNEL_TIME_COLUMNS,
    Network,
    NetworkError,
    NetworkMeasurement,
    NetworkMeasureSettings,
    load_network,
    median_uncertainty_pct,
)

_NCHWC = "com.microsoft.nchwc"


class SessionTarget(Protocol):
    """What these functions need from a target: its identity and its ORT sessions."""

    @property
    def target_id(self) -> str: ...

    @property
    def bind_device(self) -> str: ...

    def session_options(
        self, *, profile: bool, profile_prefix: str | Path | None = None
    ) -> ort.SessionOptions: ...

    def providers(self) -> list[str]: ...


# -- the optimized graph --------------------------------------------------------------------


def optimized_graph(network: Network, target: SessionTarget) -> onnx.ModelProto:
    """The graph ORT runs for ``network`` on ``target`` (weights stay out of memory).

    Raises:
        NetworkError: ONNX Runtime cannot load or optimize the model.
    """
    with tempfile.TemporaryDirectory(prefix="prmodel-ort-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        options = target.session_options(profile=False)
        options.optimized_model_filepath = str(path)
        options.log_severity_level = 3  # ORT warns that NCHWc graphs are machine specific
        # Weights go to a side file that is never read back: only their shapes matter here.
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "weights.bin"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "4096"
        )
        # Pre-packing weights for the kernels comes after optimization: not needed here,
        # and it doubles session creation time for weight-heavy networks (VGG).
        options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            ort.InferenceSession(network.model_source(), options, providers=target.providers())
        except Exception as exc:
            raise NetworkError(
                f"ONNX Runtime cannot load {network.source}: {first_line(exc, period=False)}"
            ) from None
        return onnx.load(str(path), load_external_data=False)


_BLOCK_SIZES: dict[str, int] = {}


def nchwc_block_size(target: SessionTarget) -> int:
    """The NCHWc channel block of ``target`` (16 with AVX-512, 8 with AVX2), probed once.

    A 1-to-1 channel 1x1 conv is optimized; ORT pads its weight to one block.
    """
    key = target.target_id
    if key not in _BLOCK_SIZES:
        weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="probe")],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
            [weight],
        )
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        probe.ir_version = 8
        optimized = optimized_graph(load_network(probe), target)
        dims = {t.name: tuple(t.dims) for t in optimized.graph.initializer}
        blocks = [
            dims[n.input[1]][0]
            for n in optimized.graph.node
            if n.domain == _NCHWC and n.op_type == "Conv" and n.input[1] in dims
        ]
        _BLOCK_SIZES[key] = blocks[0] if blocks else 1
    return _BLOCK_SIZES[key]


# -- timed runs ----------------------------------------------------------------------------


def measure_networks(
    networks: Sequence[Network],
    target: SessionTarget,
    *,
    settings: NetworkMeasureSettings | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[NetworkMeasurement]:
    """Measure several networks with their rounds interleaved, as the sweep runner does layers.

    Uses the target's own session options and providers, so each network runs exactly as its
    layers were measured. Plain runs (``run_with_iobinding``, inputs bound once) give the
    latency; profiled runs in a second session give per-kernel times.

    Round *r* of every network runs before round *r + 1* of any, so each network's rounds
    are spread over the whole measurement and every network sees the same mix of the
    machine's fast and slow moments. On a shared machine whose speed drifts over seconds,
    this cuts the noise of one network's latency against another's: on the development VM,
    three back-to-back measurements of the 15 reference networks moved against each other
    by 3.2 % (RMS per network, the common speed factor removed; minimum of round medians)
    with 2 passes of 5 consecutive rounds per network, by 1.8 % with 10 interleaved rounds,
    and by 0.8 % with the median of those rounds (``total_us``).

    Every network's sessions stay open for the whole measurement: two per network (plain
    and profiled), each with its own copy of the weights. Each round starts with one
    untimed run, since the network before it left its own data in the caches.

    Args:
        networks: The loaded networks.
        target: The ONNX Runtime target to run them on.
        settings: How to time each network (rounds, runs per round, profiled runs).
        on_round: Called with the number of each round done (1, 2, ...), for progress.

    Raises:
        NetworkError: ORT cannot run a model.
    """
    settings = settings or NetworkMeasureSettings()
    with tempfile.TemporaryDirectory(prefix="prmodel-measure-") as tmp:
        bound = []
        for index, network in enumerate(networks):
            plain = _BoundNetwork(network, target, settings=settings, profile_dir=None)
            profiled = None
            if settings.profiled_runs:
                profile_dir = Path(tmp) / str(index)  # ORT names profiles by the second
                profile_dir.mkdir()
                profiled = _BoundNetwork(
                    network, target, settings=settings, profile_dir=profile_dir
                )
            bound.append((plain, profiled))
        round_medians: list[list[float]] = [[] for _ in networks]
        all_runs: list[list[float]] = [[] for _ in networks]
        taking = list(range(len(networks)))
        number = 0
        while taking:
            number += 1
            for index in taking:
                plain, profiled = bound[index]
                plain.run()
                times = [plain.timed_run() for _ in range(settings.runs)]
                round_medians[index].append(statistics.median(times))
                all_runs[index].extend(times)
                for _ in range(settings.profiled_runs if profiled else 0):
                    profiled.run()  # type: ignore[union-attr]
            if on_round is not None:
                on_round(number)
            taking = _still_measuring(round_medians, settings, number)
        kernels = [
            profiled.kernel_times() if profiled else _empty_kernels() for _, profiled in bound
        ]
    return [
        _measurement(network, target, settings, medians, runs, found)
        for network, medians, runs, found in zip(
            networks, round_medians, all_runs, kernels, strict=True
        )
    ]


def _still_measuring(
    round_medians: Sequence[Sequence[float]], settings: NetworkMeasureSettings, done: int
) -> list[int]:
    """The networks that get another round after ``done`` rounds: all of them up to
    ``settings.rounds``; then, up to ``max_rounds``, those whose latency is not yet known
    within ``settle_pct``."""
    if done < settings.rounds:
        return list(range(len(round_medians)))
    return [
        index
        for index, medians in enumerate(round_medians)
        if len(medians) < settings.max_rounds
        and median_uncertainty_pct(medians) > settings.settle_pct
    ]


def _measurement(
    network: Network,
    target: SessionTarget,
    settings: NetworkMeasureSettings,
    round_medians: Sequence[float],
    all_runs: Sequence[float],
    kernels: pd.DataFrame,
) -> NetworkMeasurement:
    p10, p90 = np.percentile(all_runs, [10, 90])
    return NetworkMeasurement(
        network=network.name,
        target_id=target.target_id,
        total_us=float(statistics.median(round_medians)),
        median_us=float(statistics.median(all_runs)),
        p10_us=float(p10),
        p90_us=float(p90),
        round_medians_us=tuple(float(m) for m in round_medians),
        runs=len(all_runs),
        kernels=kernels,
        settings=settings,
    )


class _BoundNetwork:
    """One session of a network with random inputs bound once (and optionally profiled)."""

    def __init__(
        self,
        network: Network,
        target: SessionTarget,
        *,
        settings: NetworkMeasureSettings,
        profile_dir: Path | None,
    ) -> None:
        if profile_dir is None:
            options = target.session_options(profile=False)
        else:
            options = target.session_options(profile=True, profile_prefix=profile_dir / "profile")
        try:
            self.session = ort.InferenceSession(
                network.model_source(), options, providers=target.providers()
            )
        except Exception as exc:
            raise NetworkError(
                f"ONNX Runtime cannot load {network.source}: {str(exc).splitlines()[0]}"
            ) from None
        self.device = target.bind_device
        self.binding = self.session.io_binding()
        self._values = _bind(self.binding, network, self.device, settings.seed)
        self.profiled = profile_dir is not None
        self.warmup = settings.warmup
        for _ in range(settings.warmup):
            self.run()

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)
        if self.device != "cpu":
            self.binding.synchronize_outputs()

    def timed_run(self) -> float:
        start = time.perf_counter_ns()
        self.run()
        return (time.perf_counter_ns() - start) / 1e3

    def kernel_times(self) -> pd.DataFrame:
        path = Path(self.session.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        return _kernel_times(events, skip_runs=self.warmup)


def _bind(binding: Any, network: Network, device: str, seed: int) -> list[Any]:
    """Bind seeded random inputs and preallocated outputs; returns what must stay alive."""
    rng = np.random.default_rng(seed)
    values = []
    for name, shape in network.input_shapes.items():
        dtype = helper.tensor_dtype_to_np_dtype(network.dtypes.get(name, 1))
        if np.issubdtype(dtype, np.floating):
            array = rng.standard_normal(shape).astype(dtype)
        else:
            array = np.zeros(shape, dtype=dtype)  # ids and indices: zeros are always valid
        value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
        binding.bind_ortvalue_input(name, value)
        values.append(value)
    for output in network.model.graph.output:
        out_shape = network.shapes.get(output.name)
        if out_shape is None:
            binding.bind_output(output.name, device)
            continue
        dtype = helper.tensor_dtype_to_np_dtype(network.dtypes.get(output.name, 1))
        value = ort.OrtValue.ortvalue_from_shape_and_type(list(out_shape), dtype, device, 0)
        binding.bind_ortvalue_output(output.name, value)
        values.append(value)
    return values


# -- profiles ------------------------------------------------------------------------------


def _kernel_times(events: Sequence[Mapping[str, Any]], *, skip_runs: int) -> pd.DataFrame:
    """Median per-run time of every kernel in a profiler trace, warm-up runs skipped."""
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[skip_runs:]
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(runs))
    info: dict[str, tuple[str, str, str]] = {}
    order: list[str] = []
    starts = [start for start, _ in runs]
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        index = int(np.searchsorted(starts, int(event["ts"]), side="right")) - 1
        if index < 0 or int(event["ts"]) > runs[index][1]:
            continue
        node = name.removesuffix("_kernel_time")
        if node not in info:
            args = event.get("args", {})
            info[node] = (
                str(args.get("op_name", "")),
                str(args.get("provider", "")),
                _shape_text(args.get("output_type_shape")),
            )
            order.append(node)
        per_run[node][index] += float(event["dur"])
    rows = [
        {
            "node": node,
            "op": info[node][0],
            "measured_us": float(statistics.median(per_run[node])) if runs else float("nan"),
            "provider": info[node][1],
            "output_shape": info[node][2],
        }
        for node in order
    ]
    return pd.DataFrame(rows, columns=list(KERNEL_TIME_COLUMNS))


def _shape_text(shapes: Any) -> str:
    """``1x16x56x56`` from a profiler's ``[{"float": [1, 16, 56, 56]}]``."""
    if not shapes or not isinstance(shapes, list) or not isinstance(shapes[0], dict):
        return ""
    dims: list[int] = next(iter(shapes[0].values()), [])
    return "x".join(str(d) for d in dims)


def _empty_kernels() -> pd.DataFrame:
    return pd.DataFrame(columns=list(KERNEL_TIME_COLUMNS))


__all__ = [
    "SessionTarget",
    "measure_networks",
    "nchwc_block_size",
    "optimized_graph",
]
