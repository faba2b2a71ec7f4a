"""Whole-network calibration: from the sum of per-kernel predictions to the network's latency.

Layers measured alone run with hot caches; inside a network their weights must be fetched
again, and the runtime adds a little work between kernels (docs/calibration.md: the layer sum
underestimates whole networks by 3-13 %, mostly in weight-heavy layers). A calibration
fitted from measured networks corrects the total::

    total_us = scale * sum_us + capped_scale * capped_sum_us + us_per_cached_mb * cached_mb
               + us_per_weight_mb * hot_weight_mb + us_per_kernel * kernels + offset_us

``sum_us`` is the sum of the kernel predictions. ``capped_sum_us`` sums every kernel's
prediction capped at ``us_cap``: inside a network a short kernel slows down by a larger share
than a long one (profiled in-network / lone time of the reference networks' kernels: 1.28 at
20-50 µs, 1.19 at 100-300 µs, 1.08 above 1 ms), so the extra cost of a kernel grows with its
time only up to a point; the cap is chosen from :data:`CAP_CHOICES_US` by leave-one-network-out
error. ``cached_mb`` sums each kernel's weights up to the per-core cache
(``core_cache_bytes``, the L2): a kernel measured alone finds that much of its weights in
L2, while inside a network they were evicted by the kernels before it and are fetched again
(beyond that size they stream from memory either way). ``hot_weight_mb`` is the weights of
the kernels whose weights fit in the last-level cache (``weight_cap_bytes``), ``kernels``
the number of kernels that run (not the free ones). ``us_per_kernel`` and ``offset_us`` are
the signed coefficients (:data:`SIGNED_TERMS`): a layer's own time comes from the profiler,
which adds a few µs of bookkeeping to every kernel it times, while a network's plain run has
none of it but pays the runtime's step from kernel to kernel and a fixed cost per run; the
fit decides the signs.

Which terms are used depends on how many networks were measured. From :data:`FULL_FORM_MIN_NETWORKS`
on, the total always uses :data:`FULL_FORM`: the scale, the capped term, the cached weights (12-56
µs per MB on the twelve recorded runs of the 15 reference networks, archived in
benchmarks/results/archive-2026-11.tar.gz) and the offset, which comes out negative (-300 to -730
µs): the small networks (SqueezeNet 1.1, MobileNet V3 small, 2-5 ms) run closer to their layers'
lone times than the proportional terms say. On the ten runs recorded before this form, left-out MAPE
was 2.8-5.2 % (mean 3.95 %, 147 of 150 network estimates within ±10 %) with it, 3.0-5.0 % (mean 4.09
%, 140 of 150) without the cached weights, and 4.0-4.8 % (mean 4.42 %, 133 of 150) with a per-kernel
term in place of both. Of the two runs measured after this form was chosen, one has every network
within ±10 % (3.1 %), the other all but MobileNet V3 small (+17 %; 5.0 %). On fourteen later runs
that measured the networks with their rounds interleaved
(:func:`prmodel.workflows.calibrate.measure_networks`), far less noisy, it scored 2.5-4.1 % with
every network within ±10 %. Choosing terms by leave-one-out error instead flipped between forms from
one left-out network to the next and did worse still (4.3-5.8 % on five runs). With fewer networks
the terms are chosen by leave-one-network-out error among the scale alone and the scale plus one
other term, so a term is only kept when it predicts networks it was not fitted on better. The fit
minimises relative errors, the unsigned coefficients non-negative. A kernel's calibrated time is
never below zero. A network whose kernel sum is below every calibration network's gets the offset
in proportion to its sum (a network far smaller than the calibration networks would otherwise get
a negative offset larger than its own context cost), and its estimate says so. (Until 2026-12 a
total was never below the plain kernel sum instead; that undid the fitted offset for every small
network, whatever the calibration networks showed: on the two development held-out sets of
``prmodel learn`` it made 7.2 % MAPE of 4.4 %.) A network whose kernel sum is more than 3x off its
measurement (a model extrapolating far outside its training set) is left out of the fit and named,
since it alone would decide every coefficient.

Unmodelled kernels (Softmax, Concat, layout reorders, ...) get a fitted cost too: per op,
``fixed_us + us_per_mb * MB moved``, fitted on their profiled times in the same networks
less the profiler's own cost per kernel (:func:`in_network_us`).
Everything is saved as JSON in ``trained_models/<target_id>/calibration.json`` with the
networks and figures it was fitted from. :func:`last_level_cache_bytes` and
:func:`core_cache_bytes` read the two cache sizes from the target's fingerprint.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.errors import PrmodelError
from prmodel.estimate.op_costs import (
    BandwidthFit,
    CalibrationSample,
    bandwidth_fit_from_dict,
    fit_unmodelled,
    in_network_us,
)
from prmodel.targets.base import Target
from prmodel.targets.identity import FROM_OTHER_MACHINE, MachineWarning, check_recorded
from prmodel.workspace import Workspace

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 1
DEFAULT_WEIGHT_CAP_BYTES = 32 * 2**20
"""Cache size assumed where the target does not report its last-level cache."""
DEFAULT_CORE_CACHE_BYTES = 2 * 2**20
"""Per-core cache (L2) assumed where the target does not report it."""

MAX_SUM_RATIO = 3.0
"""Networks whose kernel sum is more than this factor off their measured latency are left
out of the total's fit: a model that far off (extrapolating) needs fixing, and one such
network would otherwise decide every coefficient."""
TERMS: tuple[str, ...] = ("scale", "weights", "offset", "kernels", "capped", "cached")
SIGNED_TERMS: tuple[str, ...] = ("kernels", "offset")
"""Terms whose coefficient may be negative (see the module doc)."""
MAX_EXTRA_TERMS = 1
"""Terms besides the scale that a calibration from few networks may choose."""
FULL_FORM: tuple[str, ...] = ("scale", "capped", "offset", "cached")
"""The terms of every calibration from :data:`FULL_FORM_MIN_NETWORKS` networks or more."""
FULL_FORM_MIN_NETWORKS = 8
"""Networks from which the calibration uses :data:`FULL_FORM` instead of choosing terms."""
CAP_CHOICES_US: tuple[float, ...] = (250.0, 500.0, 1000.0, 2000.0, 4000.0)
"""Caps tried for the ``capped`` term (µs); the fit keeps the one that predicts best."""
_MB = 1e6


class CalibrationError(PrmodelError, ValueError):
    """A calibration that cannot be fitted, read or used (one sentence says why)."""


@dataclass(frozen=True)
class NetworkFit:
    """One calibration network: what was measured, predicted and corrected."""

    name: str
    measured_us: float
    sum_us: float
    hot_weight_mb: float
    calibrated_us: float
    loo_us: float | None = None

    @property
    def sum_error_pct(self) -> float:
        return 100 * (self.sum_us - self.measured_us) / self.measured_us

    @property
    def error_pct(self) -> float:
        return 100 * (self.calibrated_us - self.measured_us) / self.measured_us


@dataclass(frozen=True)
class Calibration:
    """A fitted correction of one target's network totals (see the module docstring)."""

    target_id: str
    scale: float = 1.0
    us_per_weight_mb: float = 0.0
    offset_us: float = 0.0
    us_per_kernel: float = 0.0
    capped_scale: float = 0.0
    us_cap: float = 0.0
    """Each kernel adds ``capped_scale * min(prediction, us_cap)`` (0: no such term)."""
    us_per_cached_mb: float = 0.0
    """Each kernel adds this per MB of its weights up to ``core_cache_bytes``."""
    weight_cap_bytes: int = DEFAULT_WEIGHT_CAP_BYTES
    core_cache_bytes: int = DEFAULT_CORE_CACHE_BYTES
    terms: tuple[str, ...] = ("scale",)
    unmodelled: tuple[BandwidthFit, ...] = ()
    networks: tuple[NetworkFit, ...] = ()
    excluded: tuple[str, ...] = ()
    """Networks left out of the total's fit (kernel sum off by more than MAX_SUM_RATIO)."""
    loo_mape: float | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    notes: Mapping[str, Any] = field(default_factory=dict)

    # -- use --------------------------------------------------------------------------------
    def cached_weight_bytes(self, weight_bytes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Each kernel's weights up to the per-core cache: cached when it runs alone, fetched
        again inside a network (beyond that size they stream from memory either way)."""
        return np.minimum(np.asarray(weight_bytes, dtype=np.float64), self.core_cache_bytes)

    def hot_weight_bytes(self, weight_bytes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Weights that were cache-resident alone and cold in a network (0 above the cap)."""
        weights = np.asarray(weight_bytes, dtype=np.float64)
        return np.where(weights <= self.weight_cap_bytes, weights, 0.0)

    def kernel_us(
        self, predicted_us: npt.ArrayLike, weight_bytes: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Per-kernel calibrated times, at least 0 (the network's ``offset_us`` is not spread,
        so they sum to the total less the offset).

        Pass the kernels that run (not the free ones): each gets ``us_per_kernel``.
        """
        predicted = np.asarray(predicted_us, dtype=np.float64)
        hot_mb = self.hot_weight_bytes(weight_bytes) / _MB
        cached_mb = self.cached_weight_bytes(weight_bytes) / _MB
        capped = self.capped_scale * np.minimum(predicted, self.us_cap)
        calibrated = (
            self.scale * predicted
            + capped
            + self.us_per_weight_mb * hot_mb
            + self.us_per_cached_mb * cached_mb
            + self.us_per_kernel
        )
        return np.maximum(calibrated, 0.0)

    def total_us(self, predicted_us: npt.ArrayLike, weight_bytes: npt.ArrayLike) -> float:
        """The calibrated network latency from its kernels' predictions and weights.

        Within the networks the calibration was fitted on it applies in full. A network whose
        kernel sum is below the smallest of theirs (:attr:`smallest_sum_us`) gets the fixed
        ``offset_us`` in proportion to its sum (continuous at that sum, zero at an empty
        network), so a negative offset never exceeds what the calibration networks showed
        for their size; :meth:`beyond_networks` says so in words. Never below zero.
        """
        predicted = np.asarray(predicted_us, dtype=np.float64)
        total = float(predicted.sum())
        offset = self.offset_us
        smallest = self.smallest_sum_us
        if smallest is not None and total < smallest:
            offset *= total / smallest
        return max(float(self.kernel_us(predicted, weight_bytes).sum() + offset), 0.0)

    @property
    def smallest_sum_us(self) -> float | None:
        """The smallest kernel sum among the networks the total's fit used (None: unknown)."""
        sums = [n.sum_us for n in self.networks if n.name not in self.excluded and n.sum_us > 0]
        return min(sums) if sums else None

    def beyond_networks(self, sum_us: float) -> str | None:
        """Why the calibration extrapolates for a network of this kernel sum, or None."""
        smallest = self.smallest_sum_us
        if smallest is None or sum_us >= smallest or self.offset_us == 0:
            return None
        return (
            f"this network's kernel sum ({sum_us / 1e3:.3g} ms) is below every network the "
            f"calibration was fitted on (smallest {smallest / 1e3:.3g} ms): its fixed cost "
            f"({self.offset_us:+.1f} us) was scaled down in proportion, an extrapolation"
        )

    def unmodelled_fit(self, op: str) -> BandwidthFit | None:
        """The bandwidth fit for ``op``, else the all-ops fit, else None."""
        by_op = {fit.op: fit for fit in self.unmodelled}
        return by_op.get(op) or by_op.get("*")

    @property
    def formula(self) -> str:
        """The fitted formula in words, e.g. ``1.041 x sum + 18.2 us/MB hot weights``."""
        parts = [f"{self.scale:.3f} x sum"]
        if "capped" in self.terms:
            parts.append(f"{self.capped_scale:.3f} x min(kernel, {self.us_cap:g} us)")
        if "weights" in self.terms:
            parts.append(f"{self.us_per_weight_mb:.1f} us/MB hot weights")
        if "cached" in self.terms:
            parts.append(
                f"{self.us_per_cached_mb:.1f} us/MB of each kernel's weights up to "
                f"{self.core_cache_bytes / 2**20:g} MiB"
            )
        if "kernels" in self.terms:
            parts.append(f"{self.us_per_kernel:.2f} us per kernel")
        if "offset" in self.terms:
            parts.append(f"{self.offset_us:.1f} us")
        return " + ".join(parts).replace("+ -", "- ")

    # -- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = CALIBRATION_FORMAT
        data["formula"] = self.formula
        data["networks"] = [
            {**asdict(n), "sum_error_pct": n.sum_error_pct, "error_pct": n.error_pct}
            for n in self.networks
        ]
        data["unmodelled"] = [{**asdict(f), "gbps": f.gbps} for f in self.unmodelled]
        return data

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON (parent folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by :meth:`save`.

        Raises:
            CalibrationError: an unreadable or malformed file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(
                target_id=str(data["target_id"]),
                scale=float(data["scale"]),
                us_per_weight_mb=float(data["us_per_weight_mb"]),
                offset_us=float(data["offset_us"]),
                us_per_kernel=float(data.get("us_per_kernel", 0.0)),
                capped_scale=float(data.get("capped_scale", 0.0)),
                us_cap=float(data.get("us_cap", 0.0)),
                us_per_cached_mb=float(data.get("us_per_cached_mb", 0.0)),
                weight_cap_bytes=int(data["weight_cap_bytes"]),
                core_cache_bytes=int(data.get("core_cache_bytes", DEFAULT_CORE_CACHE_BYTES)),
                terms=tuple(data["terms"]),
                unmodelled=tuple(bandwidth_fit_from_dict(f) for f in data.get("unmodelled", ())),
                networks=tuple(_network_fit(n) for n in data.get("networks", ())),
                excluded=tuple(str(name) for name in data.get("excluded", ())),
                loo_mape=data.get("loo_mape"),
                created=str(data.get("created", "")),
                notes=dict(data.get("notes", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(f"calibration file {path} is unreadable ({exc})") from None


def calibration_path(workspace: Workspace, target_id: str) -> Path:
    """Where a target's calibration lives: ``trained_models/<target_id>/calibration.json``."""
    return workspace.models_dir / target_id / CALIBRATION_FILE


def load_calibration(
    workspace: Workspace,
    target_id: str,
    *,
    running: Mapping[str, Any] | None = None,
    on_purpose: bool = False,
) -> Calibration | None:
    """The target's saved calibration, or None where there is none.

    Args:
        workspace: Holds ``trained_models/<target_id>/calibration.json``.
        target_id: The target whose calibration is wanted.
        running: The running target's fingerprint: refuse a calibration measured on another
            machine (its ``notes.fingerprint``; files of earlier versions record none).
        on_purpose: Use one of another machine anyway, with a
            :class:`~prmodel.targets.identity.MachineWarning`.

    Raises:
        CalibrationError: the file exists but is malformed or belongs to another target.
        OtherMachineError: it was measured on another machine, not on purpose.
    """
    path = calibration_path(workspace, target_id)
    if not path.is_file():
        return None
    calibration = Calibration.load(path)
    if calibration.target_id != target_id:
        raise CalibrationError(
            f"calibration file {path} is for target {calibration.target_id}, not {target_id}"
        )
    recorded = calibration.notes.get("fingerprint")
    if running is not None and isinstance(recorded, Mapping):
        inside = path.is_relative_to(workspace.root)
        label = str(path.relative_to(workspace.root)) if inside else str(path)
        notes = check_recorded(
            label,
            recorded,
            running,
            verb="calibrated",
            on_purpose=on_purpose,
            remedy=f"run `prmodel calibrate` here, or estimate with {FROM_OTHER_MACHINE} "
            f"{target_id} to use it on purpose",
        )
        for note in notes:
            warnings.warn(note, MachineWarning, stacklevel=2)
    return calibration


# -- fitting ----------------------------------------------------------------------------------


def fit_calibration(
    samples: Sequence[CalibrationSample],
    *,
    target_id: str,
    weight_cap_bytes: int = DEFAULT_WEIGHT_CAP_BYTES,
    core_cache_bytes: int = DEFAULT_CORE_CACHE_BYTES,
    notes: Mapping[str, Any] | None = None,
    forms: Sequence[tuple[str, ...]] | None = None,
) -> Calibration:
    """Fit the unmodelled-op costs and the network-total correction from measured networks.

    Args:
        samples: One per measured network.
        target_id: The target the networks were measured on.
        weight_cap_bytes: Largest weight block that stays cached when a layer runs alone
            (the last-level cache size).
        core_cache_bytes: The per-core cache (L2): each kernel's weights up to this size
            are cached when it runs alone.
        notes: Free-form facts saved with the calibration (settings, machine).
        forms: The term sets to choose among by leave-one-network-out error, each starting
            with ``"scale"`` (None: :data:`FULL_FORM` from :data:`FULL_FORM_MIN_NETWORKS`
            networks on, else the scale with at most one other term). Models trained on
            in-network kernel times need other terms than models of lone layers.

    Networks whose kernel sum is more than :data:`MAX_SUM_RATIO` off their measurement are
    left out of the total's fit and named in ``excluded``.

    Raises:
        CalibrationError: no networks, a network without a positive measured time, or no
            network whose kernel sum is within MAX_SUM_RATIO of its measurement.
    """
    if not samples:
        raise CalibrationError("calibration needs at least one measured network")
    for sample in samples:
        if not sample.measured_us > 0:
            raise CalibrationError(f"network {sample.name} has no positive measured latency")
    unmodelled = fit_unmodelled(samples)
    base = Calibration(
        target_id=target_id,
        weight_cap_bytes=weight_cap_bytes,
        core_cache_bytes=core_cache_bytes,
        unmodelled=unmodelled,
    )
    by_cap = _features_by_cap(base, samples)
    measured = np.array([s.measured_us for s in samples])
    ratio = by_cap[CAP_CHOICES_US[0]][:, 0] / measured
    kept = (ratio >= 1 / MAX_SUM_RATIO) & (ratio <= MAX_SUM_RATIO)
    if not kept.any():
        ratios = ", ".join(f"{s.name} {r:.2f}x" for s, r in zip(samples, ratio, strict=True))
        raise CalibrationError(
            f"every network's kernel sum is more than {MAX_SUM_RATIO:g}x off its measured "
            f"latency ({ratios}): the layer models need fixing before a calibration can help"
        )
    terms, cap, loo = _select_terms({c: f[kept] for c, f in by_cap.items()}, measured[kept], forms)
    features = by_cap[cap]
    coefficients = _fit(features[kept], measured[kept], terms)
    loo_each = np.full(len(samples), np.nan)
    if kept.sum() > len(terms):
        loo_each[kept] = _leave_one_out(features[kept], measured[kept], terms)
    calibration = Calibration(
        target_id=target_id,
        scale=coefficients[0],
        us_per_weight_mb=coefficients[1],
        offset_us=coefficients[2],
        us_per_kernel=coefficients[3],
        capped_scale=coefficients[4],
        us_cap=cap if "capped" in terms else 0.0,
        us_per_cached_mb=coefficients[5],
        weight_cap_bytes=weight_cap_bytes,
        core_cache_bytes=core_cache_bytes,
        terms=terms,
        unmodelled=unmodelled,
        loo_mape=loo,
        excluded=tuple(s.name for s, keep in zip(samples, kept, strict=True) if not keep),
        notes=dict(notes or {}),
    )
    networks = tuple(
        NetworkFit(
            name=sample.name,
            measured_us=float(measured[i]),
            sum_us=float(features[i, 0]),
            hot_weight_mb=float(features[i, 1]),
            calibrated_us=float(features[i] @ np.array(coefficients)),
            loo_us=float(loo_each[i]) if np.isfinite(loo_each[i]) else None,
        )
        for i, sample in enumerate(samples)
    )
    return replace(calibration, networks=networks)


def _features_by_cap(
    base: Calibration, samples: Sequence[CalibrationSample]
) -> dict[float, np.ndarray]:
    """Each sample's features, one row per sample, for every cap of :data:`CAP_CHOICES_US`.

    Columns follow :data:`TERMS`: the sum of predictions with the unmodelled kernels priced by
    ``base``'s bandwidth fits, the hot weight MB, 1, the kernels that run, the sum of the
    predictions capped at the cap, and the MB of weights up to the per-core cache per kernel.
    """
    rows: dict[float, list[list[float]]] = {cap: [] for cap in CAP_CHOICES_US}
    for sample in samples:
        kernels = sample.kernels
        predicted = kernels["predicted_us"].to_numpy(dtype=np.float64).copy()
        unmodelled = (kernels["status"] == "unmodelled").to_numpy()
        for index in np.flatnonzero(unmodelled):
            fit = base.unmodelled_fit(str(kernels["op"].iloc[index]))
            if fit is not None:
                predicted[index] = float(fit.predict(kernels["bytes_moved"].iloc[index]))
        active = (kernels["status"] != "free").to_numpy()
        weights = kernels["weight_bytes"].to_numpy(dtype=np.float64)[active]
        hot = base.hot_weight_bytes(weights)
        cached = float(base.cached_weight_bytes(weights).sum() / _MB)
        common = [float(predicted.sum()), float(hot.sum() / _MB), 1.0, float(active.sum())]
        for cap, found in rows.items():
            found.append([*common, float(np.minimum(predicted[active], cap).sum()), cached])
    return {cap: np.array(found) for cap, found in rows.items()}


def _select_terms(
    by_cap: Mapping[float, np.ndarray],
    measured: np.ndarray,
    forms: Sequence[tuple[str, ...]] | None = None,
) -> tuple[tuple[str, ...], float, float | None]:
    """The term set (and cap) with the lowest leave-one-network-out MAPE.

    Among ``forms`` where given; else from :data:`FULL_FORM_MIN_NETWORKS` networks on, the
    set is :data:`FULL_FORM` and only its cap is chosen. Ties go to fewer terms, then to the
    smaller cap. Returns the terms, the cap of the ``capped`` term (the first choice where it
    is not used) and the MAPE.
    """
    first = next(iter(by_cap))
    if forms is not None:
        candidates = [tuple(terms) for terms in forms]
    elif len(measured) >= FULL_FORM_MIN_NETWORKS:
        candidates = [FULL_FORM]
    else:
        candidates = [
            ("scale", *c)
            for r in range(MAX_EXTRA_TERMS + 1)
            for c in itertools.combinations(TERMS[1:], r)
        ]
    usable = [terms for terms in candidates if len(measured) > len(terms)]
    if not usable:
        return ("scale",), first, None
    scored = []
    for terms in usable:
        for cap in by_cap if "capped" in terms else (first,):
            loo = _leave_one_out(by_cap[cap], measured, terms)
            error = float(100 * np.mean(np.abs(loo - measured) / measured))
            scored.append((error, len(terms), cap, terms))
    error, _, cap, terms = min(scored)
    return terms, cap, error


def _leave_one_out(
    features: np.ndarray, measured: np.ndarray, terms: tuple[str, ...]
) -> np.ndarray:
    predictions = np.empty(len(measured))
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        coefficients = _fit(features[keep], measured[keep], terms)
        predictions[i] = features[i] @ np.array(coefficients)
    return predictions


def _fit(
    features: np.ndarray, measured: np.ndarray, terms: tuple[str, ...]
) -> tuple[float, float, float, float, float, float]:
    """Least squares on relative errors over the chosen terms (signed ones as +/- pairs)."""
    from scipy.optimize import nnls  # 0.2 s to import: only fitting needs it, never estimating

    columns = [TERMS.index(t) for t in terms]
    signed = [TERMS.index(t) for t in terms if t in SIGNED_TERMS]
    design = features[:, columns + signed] / measured[:, None]
    design[:, len(columns) :] *= -1
    solution, _ = nnls(design, np.ones(len(measured)))
    coefficients = [0.0] * len(TERMS)
    for column, value in zip(columns, solution[: len(columns)], strict=True):
        coefficients[column] += float(value)
    for column, value in zip(signed, solution[len(columns) :], strict=True):
        coefficients[column] -= float(value)
    return (
        coefficients[0],
        coefficients[1],
        coefficients[2],
        coefficients[3],
        coefficients[4],
        coefficients[5],
    )


def _network_fit(data: Mapping[str, Any]) -> NetworkFit:
    loo = data.get("loo_us")
    return NetworkFit(
        name=str(data["name"]),
        measured_us=float(data["measured_us"]),
        sum_us=float(data["sum_us"]),
        hot_weight_mb=float(data["hot_weight_mb"]),
        calibrated_us=float(data["calibrated_us"]),
        loo_us=float(loo) if loo is not None else None,
    )


# -- the target's caches --------------------------------------------------------------------------


def last_level_cache_bytes(target: Target) -> int:
    """The target's last-level cache in bytes, from its fingerprint (default 32 MiB)."""
    return _cache_bytes(target, ("l3_kib", "l2_kib"), DEFAULT_WEIGHT_CAP_BYTES)


def core_cache_bytes(target: Target) -> int:
    """The target's per-core (L2) cache in bytes, from its fingerprint (default 2 MiB)."""
    return _cache_bytes(target, ("l2_kib",), DEFAULT_CORE_CACHE_BYTES)


def _cache_bytes(target: Target, keys: tuple[str, ...], default: int) -> int:
    """The first of the fingerprint's cache sizes ``keys`` (KiB) that is known, in bytes."""
    try:
        fingerprint = target.fingerprint()
    except Exception:  # a fingerprint is informative here, never a reason to fail
        return default
    for key in keys:
        value = fingerprint.get(key)
        if isinstance(value, int) and value > 0:
            return value * 1024
    return default


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_CORE_CACHE_BYTES",
    "DEFAULT_WEIGHT_CAP_BYTES",
    "MAX_SUM_RATIO",
    "BandwidthFit",
    "Calibration",
    "CalibrationError",
    "CalibrationSample",
    "NetworkFit",
    "calibration_path",
    "core_cache_bytes",
    "fit_calibration",
    "fit_unmodelled",
    "in_network_us",
    "last_level_cache_bytes",
    "load_calibration",
]
