"""Hardware profiles: what prmodel knows about a target's architecture and where it expects steps.

A :class:`HardwareProfile` holds the architecture facts of one target (vector lanes, NCHWc block,
GEMM panel widths and caches of a CPU; processing-element array, dataflow, buffers and clock of a
systolic accelerator) and, derived from them, a :class:`StepHint` per (layer kind, parameter):
the step periods the hardware suggests, where another kernel takes over, and the alignment that
the fast kernel needs. Hints only propose: :func:`prmodel.select.steps.detect_steps` lets the
measured sweep overrule them.

Profile files are YAML (schema 1)::

    schema: 1
    name: ort-cpu-avx512            # free text identifier
    family: cpu                     # cpu | accelerator | analytic | generic
    description: ONNX Runtime CPU execution provider (MLAS) with AVX-512F
    architecture:                   # facts: numbers, strings or null, documented per family
      vector_lanes_fp32: 16
      nchwc_block: 16
      l2_bytes: null                # null: filled in from the local CPU when auto-detected
    steps:                          # hints per layer kind and parameter
      conv:
        out_channels:
          periods: [16]             # candidate step periods, most likely first
          starts: []                # values up to a start run another kernel (own plateaus)
          step: 1                   # sweep stride above the start (alignment of the fast kernel)
          note: filters are padded to the NCHWc block

Every target supplies its own profile (``Target.hardware_profile()``); :func:`profile_for`
asks it, or reads a profile file that overrides it. Built-in profiles live in
``prmodel/targets/builtin_profiles/*.yaml`` (ONNX Runtime CPU per ISA family, picked by
:func:`cpu_profile` from the CPU that :mod:`prmodel.targets.cpu` detects); accelerator and
analytic targets derive theirs from their own attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from prmodel.errors import PrmodelError, first_line
from prmodel.layers import PARAMETERS, LayerKind
from prmodel.targets.cpu import CpuInfo

SCHEMA_VERSION = 1
FAMILIES = ("cpu", "accelerator", "analytic", "generic")

ArchValue = int | float | str | None


class ProfileError(PrmodelError, ValueError):
    """A hardware profile file that cannot be read (one sentence names the file and field)."""


@dataclass(frozen=True)
class StepHint:
    """What the architecture suggests about one parameter's latency steps.

    Attributes:
        periods: Candidate step periods, most likely first (empty: the profile has no idea).
        starts: Values up to which another kernel runs without steps (e.g. the NCHW-input
            convolution for fewer input channels than the NCHWc block).
        step: Stride of the sweep values above the start: the alignment the fast kernel needs
            (ONNX Runtime only blocks conv inputs whose channel count is a multiple of 4).
        note: Why the hardware steps there (copied into the representatives' evidence).
    """

    periods: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()
    step: int = 1
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"periods": list(self.periods)}
        if self.starts:
            data["starts"] = list(self.starts)
        if self.step != 1:
            data["step"] = self.step
        if self.note:
            data["note"] = self.note
        return data


_NO_HINT = StepHint()

REDUCTIONS = ("window", "channels")


@dataclass(frozen=True)
class GemmBlocks:
    """How the hardware tiles a conv or dense layer seen as a GEMM.

    The GEMM view of a layer: ``M`` output pixels (batch * output height * width), ``K`` the
    reduction (input channels per group * kernel height * width) and ``N`` outputs (output
    channels per group), ``groups`` GEMMs one after another. A dimension mapped onto hardware
    of size ``p`` is padded to a multiple of ``p``; a block of 1 means it streams in time.

    Attributes:
        m: Block size of the output pixels.
        k: Block size of the reduction.
        n: Block size of the outputs.
        reduction: ``window``: the whole ``K`` is folded (a systolic array's rows hold
            channels * kernel taps); ``channels``: only the input channels are padded and the
            kernel window is looped (CPU NCHWc kernels, the analytic target).
        fill: Fixed cost per tile in streamed steps (a systolic array's fill and drain; 0
            where tiles pipeline).
    """

    m: int = 1
    k: int = 1
    n: int = 1
    reduction: str = "window"
    fill: int = 0

    def __post_init__(self) -> None:
        if min(self.m, self.k, self.n) < 1 or self.fill < 0:
            raise ProfileError(f"GEMM blocks must be positive and fill >= 0, got {self}")
        if self.reduction not in REDUCTIONS:
            raise ProfileError(
                f"GEMM reduction must be one of {', '.join(REDUCTIONS)}, got {self.reduction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the feature spec in a model card)."""
        return {
            "m": self.m,
            "k": self.k,
            "n": self.n,
            "reduction": self.reduction,
            "fill": self.fill,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GemmBlocks:
        """Inverse of :meth:`to_dict`."""
        return cls(
            m=int(data.get("m", 1)),
            k=int(data.get("k", 1)),
            n=int(data.get("n", 1)),
            reduction=str(data.get("reduction", "window")),
            fill=int(data.get("fill", 0)),
        )


@dataclass(frozen=True)
class HardwareProfile:
    """Architecture facts of one target and the step hints derived from them.

    ``hints`` maps a layer kind to its parameters' :class:`StepHint`; parameters without an
    entry get an empty hint (every period is searched). ``source`` says where the profile came
    from: ``built-in:<file>``, ``derived`` (from the target's attributes) or a file path.
    """

    name: str
    family: str
    description: str = ""
    architecture: Mapping[str, ArchValue] = field(default_factory=dict)
    hints: Mapping[LayerKind, Mapping[str, StepHint]] = field(default_factory=dict)
    source: str = "derived"

    def hint(self, kind: LayerKind | str, parameter: str) -> StepHint:
        """The hint for ``parameter`` of ``kind`` (an empty hint where the profile has none)."""
        return self.hints.get(LayerKind(kind), {}).get(parameter, _NO_HINT)

    def candidate_periods(self, kind: LayerKind | str, parameter: str) -> tuple[int, ...]:
        """The step periods the profile proposes for ``parameter`` of ``kind``."""
        return self.hint(kind, parameter).periods

    def gemm_blocks(self, kind: LayerKind | str) -> GemmBlocks | None:
        """How the hardware tiles ``kind`` (conv or dense) as a GEMM, None where unknown.

        Derived from the architecture facts: a systolic array's rows and columns under its
        dataflow (``ws``: K on rows, N on columns, M streams; ``os``: M on rows, N on columns;
        ``is``: K on rows, M on columns), with the fill and drain of each fold; a CPU's NCHWc
        block (conv outputs and input channels) and SGEMM kernel columns (dense outputs); the
        analytic target's ``block`` (outputs) and ``lanes`` (input channels).
        """
        kind = LayerKind(kind)
        if kind not in (LayerKind.CONV, LayerKind.DENSE):
            return None
        arch = self.architecture
        if self.family == "accelerator":
            return _systolic_blocks(arch)
        if self.family == "analytic":
            block, lanes = _arch_int(arch, "block"), _arch_int(arch, "lanes")
            if block is None or lanes is None:
                return None
            return GemmBlocks(k=lanes, n=block, reduction="channels")
        if self.family == "cpu":
            return _cpu_blocks(arch, kind)
        return None

    def channel_block(self) -> int | None:
        """The channel block of the hardware's blocked layout (a CPU's NCHWc block), if any."""
        if self.family != "cpu":
            return None
        return _arch_int(self.architecture, "nchwc_block")

    # -- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data in the file schema."""
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "architecture": dict(self.architecture),
            "steps": {
                kind.value: {name: hint.to_dict() for name, hint in params.items()}
                for kind, params in self.hints.items()
            },
        }

    def save(self, path: str | Path) -> Path:
        """Write the profile as YAML (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# prmodel hardware profile (schema {SCHEMA_VERSION}); "
            "see prmodel/targets/profiles.py\n"
        )
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        path.write_text(header + text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HardwareProfile:
        """Read a profile file.

        Raises:
            ProfileError: unreadable file, bad YAML, missing or malformed field.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ProfileError(f"cannot read hardware profile {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ProfileError(f"hardware profile {path} is not UTF-8 text") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProfileError(
                f"hardware profile {path} is not valid YAML: {first_line(exc)}"
            ) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data") -> HardwareProfile:
        """Validate plain data in the file schema (``source`` names it in errors).

        Raises:
            ProfileError: a missing or malformed field.
        """
        return _ProfileParser(source).parse(data)


def _arch_int(arch: Mapping[str, ArchValue], name: str) -> int | None:
    value = arch.get(name)
    return int(value) if isinstance(value, int | float) and value >= 1 else None


def _systolic_blocks(arch: Mapping[str, ArchValue]) -> GemmBlocks | None:
    rows, cols = _arch_int(arch, "rows"), _arch_int(arch, "cols")
    if rows is None or cols is None:
        return None
    dataflow = str(arch.get("dataflow", "ws"))
    # Each fold fills and drains the array: the stationary operand is loaded over the rows
    # (ws, is) and partial sums skew across rows and columns.
    if dataflow == "os":
        return GemmBlocks(m=rows, n=cols, fill=rows + cols - 2)
    if dataflow == "is":
        return GemmBlocks(k=rows, m=cols, fill=2 * rows + cols - 2)
    return GemmBlocks(k=rows, n=cols, fill=2 * rows + cols - 2)


def _cpu_blocks(arch: Mapping[str, ArchValue], kind: LayerKind) -> GemmBlocks | None:
    if kind is LayerKind.DENSE:
        columns = _arch_int(arch, "gemm_kernel_columns") or _arch_int(arch, "gemm_panel_width")
        return GemmBlocks(n=columns) if columns else None
    block = _arch_int(arch, "nchwc_block")
    return GemmBlocks(k=block, n=block, reduction="channels") if block else None


class _ProfileParser:
    """Validates profile data once, at the file edge, with errors naming file and field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_path: str, problem: str) -> ProfileError:
        return ProfileError(f"hardware profile {self.source}: field '{field_path}' {problem}")

    def parse(self, data: Any) -> HardwareProfile:
        if not isinstance(data, dict):
            raise ProfileError(f"hardware profile {self.source} must be a YAML mapping")
        unknown = set(data) - {"schema", "name", "family", "description", "architecture", "steps"}
        if unknown:
            raise self.fail(sorted(unknown)[0], "is not a profile field")
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise self.fail("schema", f"must be {SCHEMA_VERSION}, got {schema!r}")
        for name in ("name", "family"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise self.fail(name, "is missing or not a string")
        if data["family"] not in FAMILIES:
            raise self.fail(
                "family", f"must be one of {', '.join(FAMILIES)}, got {data['family']!r}"
            )
        return HardwareProfile(
            name=data["name"],
            family=data["family"],
            description=str(data.get("description") or ""),
            architecture=self.architecture(data.get("architecture") or {}),
            hints=self.steps(data.get("steps") or {}),
            source=self.source,
        )

    def architecture(self, data: Any) -> dict[str, ArchValue]:
        if not isinstance(data, dict):
            raise self.fail("architecture", "must be a mapping of names to values")
        for key, value in data.items():
            if value is not None and not isinstance(value, int | float | str):
                raise self.fail(f"architecture.{key}", f"must be a number or string, got {value!r}")
        return {str(k): v for k, v in data.items()}

    def steps(self, data: Any) -> dict[LayerKind, dict[str, StepHint]]:
        if not isinstance(data, dict):
            raise self.fail("steps", "must map layer kinds to parameters")
        hints: dict[LayerKind, dict[str, StepHint]] = {}
        for kind_name, params in data.items():
            try:
                kind = LayerKind(str(kind_name))
            except ValueError:
                raise self.fail(f"steps.{kind_name}", "is not a layer kind") from None
            if not isinstance(params, dict):
                raise self.fail(f"steps.{kind_name}", "must map parameters to hints")
            hints[kind] = {}
            for param, hint in params.items():
                where = f"steps.{kind_name}.{param}"
                if param not in PARAMETERS[kind]:
                    raise self.fail(where, f"is not a parameter of a {kind.value} layer")
                hints[kind][str(param)] = self.hint(where, hint)
        return hints

    def hint(self, where: str, data: Any) -> StepHint:
        if not isinstance(data, dict):
            raise self.fail(where, "must be a mapping with 'periods'")
        unknown = set(data) - {"periods", "starts", "step", "note"}
        if unknown:
            raise self.fail(f"{where}.{sorted(unknown)[0]}", "is not a hint field")
        periods = self.positive_ints(f"{where}.periods", data.get("periods", []))
        starts = self.positive_ints(f"{where}.starts", data.get("starts", []))
        step = data.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise self.fail(f"{where}.step", f"must be a positive integer, got {step!r}")
        return StepHint(periods, starts, step, str(data.get("note") or ""))

    def positive_ints(self, where: str, values: Any) -> tuple[int, ...]:
        if not isinstance(values, list) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
        ):
            raise self.fail(where, f"must be a list of positive integers, got {values!r}")
        return tuple(values)


# -- profiles for targets ---------------------------------------------------------------------


def builtin_profile(name: str) -> HardwareProfile:
    """A profile shipped in ``prmodel/targets/builtin_profiles`` (``name`` without ``.yaml``).

    Raises:
        ProfileError: no such built-in profile.
    """
    folder = resources.files("prmodel.targets") / "builtin_profiles"
    entry = folder / f"{name}.yaml"
    if not entry.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.is_file())
        raise ProfileError(f"no built-in hardware profile {name!r} (known: {', '.join(known)})")
    data = yaml.safe_load(entry.read_text())
    return HardwareProfile.from_dict(data, source=f"built-in:{name}.yaml")


def profile_for(target: object, *, override: Path | str | None = None) -> HardwareProfile:
    """The hardware profile of ``target``: read from ``override``, else the target's own.

    Every target supplies its profile through ``hardware_profile()`` (see
    :class:`prmodel.targets.base.Target`); a plug-in without that method gets the generic
    profile, whose empty hints let step detection search every period.

    Raises:
        ProfileError: ``override`` is unreadable or malformed.
    """
    if override is not None:
        return HardwareProfile.load(override)
    supply = getattr(target, "hardware_profile", None)
    if callable(supply):
        profile: HardwareProfile = supply()
        return profile
    return generic_profile(str(getattr(target, "name", "") or "target"))


def generic_profile(name: str) -> HardwareProfile:
    """A profile without architecture knowledge for the target ``name``: every period is
    searched."""
    return HardwareProfile(
        name=f"generic-{name}",
        family="generic",
        description="no architecture knowledge: every period is searched",
    )


def cpu_profile(cpu: CpuInfo, *, opt_level: str = "all") -> HardwareProfile:
    """The ONNX Runtime CPU profile for ``cpu``'s ISA family, with its cache sizes."""
    family = {"avx512": "ort-cpu-avx512", "avx2": "ort-cpu-avx2", "avx": "ort-cpu-avx2"}.get(
        cpu.isa, "ort-cpu-sse" if cpu.isa == "sse" else "ort-cpu-generic"
    )
    profile = builtin_profile(family)
    architecture = {**profile.architecture, "cpu_model": cpu.model, **cpu.caches}
    hints = profile.hints
    if opt_level != "all":
        # Below ORT_ENABLE_ALL no NCHWc transform runs: conv and pooling use NCHW kernels.
        blocked = (LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.AVGPOOL)
        hints = {kind: params for kind, params in hints.items() if kind not in blocked}
    return replace(
        profile,
        name=f"{profile.name}-{opt_level}" if opt_level != "all" else profile.name,
        architecture=architecture,
        hints=hints,
        source=f"{profile.source} + detected {cpu.model}",
    )


__all__ = [
    "FAMILIES",
    "REDUCTIONS",
    "GemmBlocks",
    "HardwareProfile",
    "ProfileError",
    "StepHint",
    "builtin_profile",
    "cpu_profile",
    "generic_profile",
    "profile_for",
]
