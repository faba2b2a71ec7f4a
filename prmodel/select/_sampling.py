"""The sampler interface that every sampler shares (PR, random, adaptive, networks).

Private to :mod:`prmodel.select`: :mod:`prmodel.select.samplers` re-exports the public
names. It sits below both :mod:`~prmodel.select.samplers` and
:mod:`~prmodel.select.network_prior`, so that ``samplers.make_sampler`` can build every
sampler without an import circle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from prmodel.errors import PrmodelError
from prmodel.layers import LayerConfig, LayerKind
from prmodel.select.spaces import ParameterSpace, default_space

SpaceArg = ParameterSpace | Mapping[LayerKind, ParameterSpace] | None
"""One space (for its kind only), spaces by kind (defaults for the others), or None."""


class SamplingError(PrmodelError, ValueError):
    """A sampler asked for something it cannot do (wrong kind for its space, bad budget)."""


class Sampler(Protocol):
    """Anything that proposes layers to benchmark under a budget."""

    def sample(self, kind: LayerKind | str, budget: int, *, seed: int = 0) -> list[LayerConfig]:
        """At most ``budget`` valid, unique layers of ``kind``."""
        ...


def space_for(spaces: SpaceArg, kind: LayerKind) -> ParameterSpace:
    """The space a sampler draws ``kind`` from (the default space where none is given).

    Raises:
        SamplingError: ``spaces`` is one space, for another kind.
    """
    if spaces is None:
        return default_space(kind)
    if isinstance(spaces, ParameterSpace):
        if spaces.kind is not kind:
            raise SamplingError(
                f"this sampler's space is for {spaces.kind.value} layers, not {kind.value}"
            )
        return spaces
    return spaces.get(kind) or default_space(kind)


def check_budget(budget: int) -> None:
    """Raise :class:`SamplingError` unless ``budget`` is a positive number of layers."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SamplingError(f"the budget must be a positive number of layers, got {budget!r}")


def random_layers(
    space: ParameterSpace, count: int, rng: np.random.Generator, exclude: Iterable[str] = ()
) -> list[LayerConfig]:
    """Up to ``count`` unique random layers of ``space`` whose keys are not in ``exclude``."""
    seen = set(exclude)
    layers: list[LayerConfig] = []
    for _ in range(count * 50):
        if len(layers) == count:
            break
        layer = space.random_layer(rng)
        if layer.key not in seen:
            seen.add(layer.key)
            layers.append(layer)
    return layers
