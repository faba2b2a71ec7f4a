"""SCALE-Sim v3 systolic-array accelerator as a deterministic prmodel target.

SCALE-Sim models a ``rows x cols`` array of MAC units fed from three double-buffered SRAMs
(ifmap, filter, ofmap) by a weight-, output- or input-stationary dataflow. Every layer is
seen through im2col as a GEMM: ``ofmap_px`` output pixels, each a dot product of a
``window = kernel_h * kernel_w * channels`` vector with each of ``filters`` filters. The
dataflow decides which two of these dimensions are laid over the array's rows and columns
and which one streams through it in time; a dimension larger than the array is folded.

How prmodel layers map onto SCALE-Sim:

- **conv**: the topology row ``H + 2*pad_h, W + 2*pad_w, kernel, channels, out_channels,
  stride``. SCALE-Sim takes already padded input sizes; padded borders are read like real
  pixels. Where the stride does not divide ``H + 2*pad_h - kernel_h``, SCALE-Sim would count
  one output row (or column) more than the conv has (it rounds up), so the padded input is
  trimmed to the rows the conv reads, ``(out_h - 1) * stride_h + kernel_h``. Dilation > 1 is
  refused (SCALE-Sim's address generation has no dilation).
- **grouped and depthwise conv**: SCALE-Sim has no groups. Its topology loader expands a
  depthwise layer (name containing ``DP``) into one single-channel layer per input channel
  and simulates them one after another; prmodel does the same for any ``groups``: ``groups``
  identical convs of ``channels/groups`` inputs and ``out_channels/groups`` filters, whose
  cycles add up. Identical layers simulate identically, so one group is simulated and its
  cycles are multiplied by ``groups``.
- **dense**: SCALE-Sim's GEMM mode (``M = batch, K = channels, N = out_channels``), i.e. the
  topology row ``batch, channels, 1, channels, 1, out_channels, 1``.
- **batch > 1**: SCALE-Sim 3.0.0 simulates one image. The images of a batch are streamed
  through the array as extra output pixels (the im2col GEMM gets ``batch`` times the rows,
  with distinct addresses per image): the mapping an accelerator uses to amortise the array's
  fill and drain over a batch.
- **fused activations and residual adds** are applied as the outputs drain from the array;
  SCALE-Sim models no post-processing unit, so they cost no cycles.
- Pooling and element-wise kinds are not modelled: :meth:`ScaleSimTarget.unsupported_reason`
  says so and the sweep runner skips them.

Modes:

- ``fast``: compute cycles only (no memory stalls), from the fold arithmetic of SCALE-Sim's
  compute system (``systolic_compute_{ws,os,is}``): the number of rows of its demand matrices
  minus one, which is exactly the "Total Cycles" that SCALE-Sim reports when no stall occurs.
  It is evaluated in closed form (microseconds a layer, any layer size) and the test suite
  checks it against SCALE-Sim's own demand matrices and full runs.
- ``full``: SCALE-Sim's memory system (double-buffered SRAMs, DRAM bandwidth) on top: total
  cycles = compute + stall cycles; 0.01 s to minutes a layer, growing with the layer size.

latency_us = total cycles / clock_mhz.

SCALE-Sim 3.0.0 does not run unpatched with numpy >= 2.4; full mode drives it in memory
through :mod:`prmodel.targets._scalesim_adapter`, which says how.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from prmodel.layers import LayerConfig, LayerKind
from prmodel.targets._scalesim_adapter import run_single_layer
from prmodel.targets.base import Benchmark, LayerBuildError, TargetError, TargetInfo, Timings
from prmodel.targets.profiles import ArchValue, HardwareProfile, StepHint

DATAFLOWS = ("ws", "os", "is")
MODES = ("fast", "full")
ADAPTER_VERSION = 1
"""Bumped whenever the layer mapping changes, so old measurements stop matching."""

_OPTION_TYPES: dict[str, type] = {
    "rows": int,
    "cols": int,
    "dataflow": str,
    "ifmap_kb": int,
    "filter_kb": int,
    "ofmap_kb": int,
    "bandwidth": int,
    "clock_mhz": float,
    "mode": str,
}
_INSTALL_HINT = "pip install 'prmodel[scalesim]'"


def scalesim_version() -> str | None:
    """The installed SCALE-Sim version, or None where it is not installed."""
    try:
        return metadata.version("scalesim")
    except metadata.PackageNotFoundError:
        return None


# -- layers as SCALE-Sim sees them ----------------------------------------------------------


@dataclass(frozen=True)
class GemmView:
    """One layer as SCALE-Sim simulates it: a conv topology row and its im2col GEMM.

    ``ifmap_h``/``ifmap_w`` are the padded input rows and columns that the conv reads (the
    padded size, less any trailing rows no window reaches); ``channels`` and ``filters`` are per
    group; ``groups`` identical GEMMs run one after another; ``batch`` images stream as
    extra output pixels.
    """

    ifmap_h: int
    ifmap_w: int
    kernel_h: int
    kernel_w: int
    channels: int
    filters: int
    stride_h: int
    stride_w: int
    batch: int = 1
    groups: int = 1

    @property
    def ofmap_px(self) -> int:
        """Output pixels per filter over the whole batch (the GEMM's M)."""
        out_h = (self.ifmap_h - self.kernel_h) // self.stride_h + 1
        out_w = (self.ifmap_w - self.kernel_w) // self.stride_w + 1
        return self.batch * out_h * out_w

    @property
    def window(self) -> int:
        """Multiply-accumulates per output value (the GEMM's K)."""
        return self.kernel_h * self.kernel_w * self.channels

    @property
    def macs(self) -> int:
        return self.groups * self.ofmap_px * self.window * self.filters

    def topology_row(self) -> list[str | int]:
        """One group of one image as SCALE-Sim's topology row (name, dims, N:M sparsity)."""
        return [
            "layer",
            self.ifmap_h,
            self.ifmap_w,
            self.kernel_h,
            self.kernel_w,
            self.channels,
            self.filters,
            self.stride_h,
            self.stride_w,
            1,
            1,
        ]


_MODELLED = (LayerKind.CONV, LayerKind.DENSE)


def unsupported_reason(layer: LayerConfig) -> str | None:
    """Why SCALE-Sim cannot model ``layer``, or None where it can."""
    if layer.kind not in _MODELLED:
        return (
            f"scalesim target models conv, depthwise conv and dense layers; "
            f"{layer.kind.value} is not modelled"
        )
    if layer.kind is LayerKind.CONV and (layer.dilation_h, layer.dilation_w) != (1, 1):
        return (
            f"scalesim target does not model dilated convolutions "
            f"(dilation {layer.dilation_h}x{layer.dilation_w} in {layer.label})"
        )
    return None


def gemm_view(layer: LayerConfig) -> GemmView:
    """The SCALE-Sim view of ``layer`` (see the module docstring for the mapping).

    Raises:
        LayerBuildError: a kind or setting that SCALE-Sim does not model.
    """
    reason = unsupported_reason(layer)
    if reason is not None:
        raise LayerBuildError(reason)
    if layer.kind is LayerKind.DENSE:
        return GemmView(
            ifmap_h=layer.batch,
            ifmap_w=layer.channels,
            kernel_h=1,
            kernel_w=layer.channels,
            channels=1,
            filters=layer.out_channels,
            stride_h=1,
            stride_w=1,
        )
    # SCALE-Sim counts ceil((H - k) / s) + 1 output rows, one more than the conv has when the
    # stride does not divide H - k; so pass only the padded rows the conv reads.
    return GemmView(
        ifmap_h=(layer.output_height - 1) * layer.stride_h + layer.kernel_h,
        ifmap_w=(layer.output_width - 1) * layer.stride_w + layer.kernel_w,
        kernel_h=layer.kernel_h,
        kernel_w=layer.kernel_w,
        channels=layer.channels // layer.groups,
        filters=layer.out_channels // layer.groups,
        stride_h=layer.stride_h,
        stride_w=layer.stride_w,
        batch=layer.batch,
        groups=layer.groups,
    )


# -- compute cycles in closed form ----------------------------------------------------------


@dataclass(frozen=True)
class FoldPlan:
    """How one GEMM folds onto the array under a dataflow (SCALE-Sim's compute system).

    ``spatial_rows``/``spatial_cols`` are the GEMM dimensions laid over the array's rows
    and columns, ``temporal`` the one streamed in time.
    """

    spatial_rows: int
    spatial_cols: int
    temporal: int
    row_folds: int
    col_folds: int
    cycles_per_fold: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def compute_cycles(self) -> int:
        """Rows of SCALE-Sim's demand matrices minus one: its cycle count without stalls."""
        return self.folds * self.cycles_per_fold - 1


def fold_plan(view: GemmView, *, rows: int, cols: int, dataflow: str) -> FoldPlan:
    """Fold one group of ``view`` onto a ``rows x cols`` array.

    Per fold SCALE-Sim streams ``temporal`` operands plus the array's fill and drain:
    ``2*rows + cols + T - 2`` cycles for ws and is (weights or inputs are loaded first),
    ``T + rows + cols - 2`` for os.
    """
    if dataflow == "ws":
        sr, sc, t = view.window, view.filters, view.ofmap_px
        per_fold = 2 * rows + cols + t - 2
    elif dataflow == "os":
        sr, sc, t = view.ofmap_px, view.filters, view.window
        per_fold = t + rows + cols - 2
    elif dataflow == "is":
        sr, sc, t = view.window, view.ofmap_px, view.filters
        per_fold = 2 * rows + cols + t - 2
    else:
        raise TargetError(
            f"scalesim dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}"
        )
    return FoldPlan(sr, sc, t, math.ceil(sr / rows), math.ceil(sc / cols), per_fold)


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationResult:
    """Cycles of one layer (all groups and images) and how well it used the array.

    ``total_cycles`` (compute + stall) is what latency is made of. ``mapping_efficiency``
    is SCALE-Sim's average share of MAC units holding an operand per fold, and
    ``utilization`` the share of MAC-unit cycles doing useful work, both in percent.
    ``memory`` holds full-mode facts (cycles incl. DRAM prefetch, DRAM accesses); it is
    empty in fast mode.
    """

    compute_cycles: int
    stall_cycles: int
    folds: int
    mapping_efficiency: float
    utilization: float
    memory: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_cycles(self) -> int:
        return self.compute_cycles + self.stall_cycles

    def extra(self) -> dict[str, float]:
        """Everything as a flat ``name -> number`` dict (a :class:`Timings` ``extra``)."""
        return {
            "compute_cycles": float(self.compute_cycles),
            "stall_cycles": float(self.stall_cycles),
            "total_cycles": float(self.total_cycles),
            "folds": float(self.folds),
            "mapping_efficiency": self.mapping_efficiency,
            "utilization": self.utilization,
            **self.memory,
        }


def _fast_result(view: GemmView, plan: FoldPlan, *, rows: int, cols: int) -> SimulationResult:
    compute = view.groups * plan.compute_cycles
    # Folds form a grid, so the mean used share is the product of the mean row and col use.
    mapping = (plan.spatial_rows / (plan.row_folds * rows)) * (
        plan.spatial_cols / (plan.col_folds * cols)
    )
    return SimulationResult(
        compute_cycles=compute,
        stall_cycles=0,
        folds=view.groups * plan.folds,
        mapping_efficiency=round(100 * mapping, 6),
        utilization=round(100 * view.macs / (rows * cols * compute), 6),
    )


# -- the target -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleSimTarget:
    """A SCALE-Sim systolic array: geometry, dataflow, SRAMs, DRAM bandwidth and clock.

    SRAM sizes are in KB of 1-byte words and ``bandwidth`` in words per cycle, SCALE-Sim's
    conventions; ``bandwidth`` applies to the ifmap and filter DRAM reads and to the ofmap
    DRAM writes. Both only matter in ``full`` mode. Defaults are SCALE-Sim's own (256/256/128
    KB, 10 words/cycle) on a 32x32 weight-stationary array clocked at 1 GHz.
    """

    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"
    ifmap_kb: int = 256
    filter_kb: int = 256
    ofmap_kb: int = 128
    bandwidth: int = 10
    clock_mhz: float = 1000.0
    mode: str = "fast"
    name: str = "scalesim"
    deterministic: bool = True

    def __post_init__(self) -> None:
        for key in ("rows", "cols", "ifmap_kb", "filter_kb", "ofmap_kb", "bandwidth"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TargetError(
                    f"scalesim option {key} must be a positive integer, got {value!r}"
                )
        if not self.clock_mhz > 0:
            raise TargetError(f"scalesim option clock_mhz must be positive, got {self.clock_mhz!r}")
        if self.dataflow not in DATAFLOWS:
            raise TargetError(
                f"scalesim option dataflow must be one of {', '.join(DATAFLOWS)}, "
                f"got {self.dataflow!r}"
            )
        if self.mode not in MODES:
            raise TargetError(
                f"scalesim option mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )
        if self.mode == "full" and scalesim_version() is None:
            raise TargetError(f"scalesim mode=full needs the scalesim package: {_INSTALL_HINT}")

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> ScaleSimTarget:
        """Build from ``key=value`` options (see :data:`_OPTION_TYPES`) and ``profile=FILE``.

        ``profile`` names a YAML file with the same keys; options given explicitly win.

        Raises:
            TargetError: unknown option, unreadable profile, or a bad value (named).
        """
        merged: dict[str, Any] = {}
        if "profile" in options:
            merged.update(_read_profile(Path(options["profile"])))
        merged.update({k: v for k, v in options.items() if k != "profile"})
        values = {key: _parse_option(key, value) for key, value in merged.items()}
        return cls(**values)

    @classmethod
    def target_infos(cls) -> list[TargetInfo]:
        """The ``scalesim`` entry of :func:`prmodel.targets.list_targets`."""
        description = "SCALE-Sim systolic array (rows, cols, dataflow=ws|os|is, mode=fast|full)"
        installed = scalesim_version()
        if installed is None:
            note = f"scalesim is not installed ({_INSTALL_HINT}); mode=fast still works"
            return [TargetInfo("scalesim", description, available=False, note=note)]
        return [TargetInfo("scalesim", description, available=True, note=f"scalesim {installed}")]

    # -- identity -------------------------------------------------------------------------
    @property
    def target_id(self) -> str:
        """``scalesim-<rows>x<cols>-<dataflow>-<mode>`` plus any non-default memory/clock."""
        parts = [f"scalesim-{self.rows}x{self.cols}-{self.dataflow}-{self.mode}"]
        default = ScaleSimTarget()
        sram = (self.ifmap_kb, self.filter_kb, self.ofmap_kb)
        if sram != (default.ifmap_kb, default.filter_kb, default.ofmap_kb):
            parts.append("sram{}-{}-{}".format(*sram))
        if self.bandwidth != default.bandwidth:
            parts.append(f"bw{self.bandwidth}")
        if self.clock_mhz != default.clock_mhz:
            parts.append(f"{self.clock_mhz:g}mhz")
        return "-".join(parts)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "target": "scalesim",
            "scalesim": scalesim_version(),
            "adapter": ADAPTER_VERSION,
            "rows": self.rows,
            "cols": self.cols,
            "dataflow": self.dataflow,
            "ifmap_kb": self.ifmap_kb,
            "filter_kb": self.filter_kb,
            "ofmap_kb": self.ofmap_kb,
            "bandwidth": self.bandwidth,
            "clock_mhz": self.clock_mhz,
            "mode": self.mode,
        }

    # -- benchmarking ---------------------------------------------------------------------
    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        return unsupported_reason(layer)

    def prepare(self, layer: LayerConfig) -> Benchmark:
        """Simulate ``layer`` now; the benchmark replays its (deterministic) latency.

        Raises:
            LayerBuildError: a layer that SCALE-Sim does not model.
        """
        return _SimulatedBenchmark(layer, self.simulate(layer), self.clock_mhz)

    def simulate(self, layer: LayerConfig) -> SimulationResult:
        """Cycles of ``layer`` on this array (cached: a layer is simulated once).

        Raises:
            LayerBuildError: a layer that SCALE-Sim does not model.
        """
        return _simulate(self, layer)

    def latency_us(self, layer: LayerConfig) -> float:
        """Latency of ``layer`` in microseconds: total cycles / clock."""
        return self.simulate(layer).total_cycles / self.clock_mhz

    def hardware_profile(self) -> HardwareProfile:
        """The array's profile: where compute cycles step under its dataflow.

        SCALE-Sim maps a conv onto a GEMM with ``Sr`` = output pixels, ``Sc`` = filters (output
        channels) and ``T`` = kernel_h * kernel_w * input channels. Weight-stationary (ws) puts
        ``T`` on the rows and ``Sc`` on the columns, output-stationary (os) ``Sr`` on the rows
        and ``Sc`` on the columns, input-stationary (is) ``T`` on the rows and ``Sr`` on the
        columns; the remaining dimension streams in time. A dimension mapped onto the array
        folds in multiples of its size, which is where compute cycles step. Spatially mapped
        output pixels step in ``height * width``, so the height period is only exact for a
        given width.
        """
        rows, cols, dataflow = self.rows, self.cols, self.dataflow
        t_rows = StepHint((rows,), note=f"kernel*channels fold over the {rows} array rows")
        filters = StepHint((cols,), note=f"filters fold over the {cols} array columns")
        pixels_rows = StepHint((rows,), note=f"output pixels fold over the {rows} array rows")
        pixels_cols = StepHint((cols,), note=f"output pixels fold over the {cols} array columns")
        conv: dict[str, StepHint]
        if dataflow == "os":
            conv = {"out_channels": filters, "height": pixels_rows}
        elif dataflow == "is":
            conv = {"channels": t_rows, "height": pixels_cols}
        else:
            conv = {"out_channels": filters, "channels": t_rows}
        dense = {k: v for k, v in conv.items() if k in ("channels", "out_channels")}
        architecture: dict[str, ArchValue] = {"rows": rows, "cols": cols, "dataflow": dataflow}
        for attr in ("ifmap_kb", "filter_kb", "ofmap_kb", "bandwidth", "clock_mhz", "mode"):
            architecture[attr] = getattr(self, attr)
        return HardwareProfile(
            name=f"scalesim-{rows}x{cols}-{dataflow}",
            family="accelerator",
            description=f"{rows}x{cols} systolic array, {dataflow} dataflow (SCALE-Sim)",
            architecture=architecture,
            hints={LayerKind.CONV: conv, LayerKind.DENSE: dense},
        )


def _parse_option(key: str, value: Any) -> Any:
    if key not in _OPTION_TYPES:
        raise TargetError(
            f"scalesim target has no option {key!r} (options: {', '.join(_OPTION_TYPES)}, profile)"
        )
    kind = _OPTION_TYPES[key]
    text = str(value).strip()
    if kind is str:
        return text.lower()
    try:
        return kind(text)
    except ValueError:
        raise TargetError(
            f"scalesim option {key}={text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None


def _read_profile(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TargetError(f"cannot read scalesim profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise TargetError(f"scalesim profile {path} must be a mapping of option: value")
    for key in data:
        if key not in _OPTION_TYPES:
            raise TargetError(
                f"scalesim profile {path} has unknown key {key!r} "
                f"(keys: {', '.join(_OPTION_TYPES)})"
            )
    return {str(k): v for k, v in data.items()}


@functools.lru_cache(maxsize=65536)
def _simulate(target: ScaleSimTarget, layer: LayerConfig) -> SimulationResult:
    view = gemm_view(layer)
    plan = fold_plan(view, rows=target.rows, cols=target.cols, dataflow=target.dataflow)
    fast = _fast_result(view, plan, rows=target.rows, cols=target.cols)
    if target.mode == "fast":
        return fast
    return _full_result(target, layer, view, fast)


class _SimulatedBenchmark:
    """Replays a simulated latency: every call takes exactly the simulated time."""

    def __init__(self, layer: LayerConfig, result: SimulationResult, clock_mhz: float) -> None:
        self.layer = layer
        self._result = result
        self._latency_us = result.total_cycles / clock_mhz
        self._calls = 0

    def run(self, calls: int) -> list[float]:
        self._calls += calls
        return [self._latency_us] * calls

    def finish(self) -> Timings:
        times = (self._latency_us,) * max(self._calls, 1)
        return Timings(kernel_us=times, wall_us=times, extra=self._result.extra())

    def close(self) -> None:
        self._calls = 0


# -- full mode: SCALE-Sim's memory system ---------------------------------------------------


def _full_result(
    target: ScaleSimTarget, layer: LayerConfig, view: GemmView, fast: SimulationResult
) -> SimulationResult:
    # SCALE-Sim prints progress and diagnostics on stdout; a library must not.
    with contextlib.redirect_stdout(io.StringIO()):
        sim = run_single_layer(target, view.topology_row(), view.batch)
    memory = sim.memory_system
    compute = int(sim.compute_system.get_ifmap_demand_mat().shape[0]) - 1
    stall = int(memory.get_stall_cycles())
    total = int(memory.get_total_compute_cycles())
    expected = fast.compute_cycles // view.groups
    if not compute == expected == total - stall:
        raise LayerBuildError(
            f"scalesim {scalesim_version()} disagrees with this adapter (written for 3.0.0) "
            f"on {layer.label}: its demand matrices take {compute} compute cycles, the fold "
            f"arithmetic {expected}, its memory system {total} cycles with {stall} stalls"
        )
    details = sim.get_detail_report_items()
    prefetch = sim.get_compute_report_items()[0]
    groups = view.groups
    return SimulationResult(
        compute_cycles=groups * compute,
        stall_cycles=groups * stall,
        folds=fast.folds,
        mapping_efficiency=fast.mapping_efficiency,
        utilization=round(100 * view.macs / (target.rows * target.cols * groups * total), 6),
        memory={
            "cycles_incl_prefetch": float(groups * int(prefetch)),
            "ifmap_dram_reads": float(groups * int(details[11])),
            "filter_dram_reads": float(groups * int(details[14])),
            "ofmap_dram_writes": float(groups * int(details[17])),
        },
    )


__all__ = [
    "DATAFLOWS",
    "MODES",
    "FoldPlan",
    "GemmView",
    "ScaleSimTarget",
    "SimulationResult",
    "fold_plan",
    "gemm_view",
    "scalesim_version",
    "unsupported_reason",
]
