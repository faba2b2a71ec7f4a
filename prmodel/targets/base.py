"""The target protocol: what prmodel needs from an accelerator to benchmark it.

A target turns a :class:`~prmodel.layers.LayerConfig` into a prepared benchmark and times
it, and says what it knows about its own architecture (its
:class:`~prmodel.targets.profiles.HardwareProfile`). Everything else (rounds, stability,
canaries, storage) is the sweep runner's job, so adding a device means writing one module
with a ``Target`` and a ``Benchmark``; :mod:`prmodel.targets.registry` loads it by a dotted
spec (``package.module.Class:key=value``) without touching prmodel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig
from prmodel.targets.profiles import HardwareProfile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import onnx

    from prmodel.networks import Network, NetworkMeasurement, NetworkMeasureSettings


class TargetError(PrmodelError, ValueError):
    """A target that cannot be created (unknown name, bad option, missing provider)."""


class UnknownTargetError(TargetError):
    """A target name that a target class does not know; ``known`` are the names it does."""

    def __init__(self, message: str, *, known: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.known = known


class LayerBuildError(PrmodelError, RuntimeError):
    """A layer that the target cannot build or run (one sentence says why)."""


@dataclass(frozen=True)
class TargetInfo:
    """A target name that ``get_target`` accepts and whether it can run here."""

    name: str
    description: str
    available: bool
    note: str = ""


@dataclass(frozen=True)
class Timings:
    """Per-call timings of every call made on a benchmark, in call order, in microseconds.

    ``kernel_us`` is the layer's own kernel time (the quantity prmodel models);
    ``wall_us`` the caller-side time of a whole run; ``reorder_us`` the layout
    conversions that a lone layer gets around it but a network mostly does not (empty
    where the target has none). ``extra`` carries target-specific facts (e.g. cycles).
    """

    kernel_us: tuple[float, ...]
    wall_us: tuple[float, ...]
    reorder_us: tuple[float, ...] = ()
    extra: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Benchmark(Protocol):
    """One layer built and loaded on a target, ready to be timed repeatedly."""

    @property
    def layer(self) -> LayerConfig:
        """The layer this benchmark times."""
        ...

    def run(self, calls: int) -> list[float]:
        """Run the layer ``calls`` times; returns the wall time of each call in µs."""
        ...

    def finish(self) -> Timings:
        """Stop timing and return the timings of every call made so far."""
        ...

    def close(self) -> None:
        """Release the layer's resources (safe to call twice)."""
        ...


@runtime_checkable
class Target(Protocol):
    """An accelerator (or simulator) that prmodel can benchmark."""

    @property
    def name(self) -> str:
        """Short name used on the command line, e.g. ``cpu`` or ``scalesim``."""
        ...

    @property
    def deterministic(self) -> bool:
        """True where one call gives the exact latency (simulators): no repeats needed."""
        ...

    @property
    def target_id(self) -> str:
        """Readable identity: hardware and settings that change kernels, e.g.
        ``ort-cpu-avx2-3f9c-t1-all`` (see :mod:`prmodel.targets.identity`)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """Everything that identifies the hardware and software measured."""
        ...

    def unsupported_reason(self, layer: LayerConfig) -> str | None:
        """Why ``layer`` cannot run on this target, or None where it can."""
        ...

    def prepare(self, layer: LayerConfig) -> Benchmark:
        """Build and load ``layer``. Raises :class:`LayerBuildError` when it cannot."""
        ...

    def hardware_profile(self) -> HardwareProfile:
        """What the target knows of its architecture: facts and where latency steps.

        Step detection starts from its hints and GEMM features from its blocks; a target
        that knows nothing returns :func:`prmodel.targets.profiles.generic_profile`.
        """
        ...


# -- optional capabilities: whole networks -----------------------------------------------------


@runtime_checkable
class GraphOptimizer(Protocol):
    """A target whose runtime rewrites a network before running it (an optional capability).

    The estimator maps the kernels of the rewritten graph (fused convs, blocked layouts,
    layout reorders) instead of fusing the exported graph itself.
    """

    @property
    def runtime_name(self) -> str:
        """The runtime that rewrites the graph, e.g. ``onnxruntime`` (estimates name it)."""
        ...

    def optimized_graph(self, network: Network) -> onnx.ModelProto:
        """The graph the runtime runs for ``network``; raises ``NetworkError`` if it cannot."""
        ...

    def nchwc_block(self) -> int:
        """The channel block the runtime pads blocked (NCHWc) tensors to; 1 where none."""
        ...


@runtime_checkable
class NetworkRunner(Protocol):
    """A target that can run and profile whole networks (an optional capability)."""

    def measure_networks(
        self,
        networks: Sequence[Network],
        settings: NetworkMeasureSettings | None = None,
        *,
        on_round: Callable[[int], None] | None = None,
    ) -> list[NetworkMeasurement]:
        """Time ``networks`` on this target, their rounds interleaved, with kernel profiles.

        ``on_round`` is called with the number of each round done (1, 2, ...).
        """
        ...


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short stable digest of a fingerprint (measurements are keyed on it)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_target_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and its options.

    Raises:
        TargetError: an option without ``=``.
    """
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TargetError(f"target option {item!r} in {spec!r} is not of the form key=value")
        options[key.strip().replace("-", "_")] = value.strip()
    return name.strip().lower(), options
