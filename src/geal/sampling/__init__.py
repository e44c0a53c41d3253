"""Samplers: turn a pattern bank into a ranking of the pool.

Every sampler is a plain function registered by name in :data:`SAMPLERS` with the
frozen dataclass of its hyperparameters; :func:`select` looks one up, validates the
hyperparameters and runs it under :class:`RunSettings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geal.defaults import DEFAULT_STRATEGY
from geal.sampling import activeft as _activeft  # noqa: F401  (baselines on global features)
from geal.sampling import geal as _geal  # noqa: F401  (registers fds, prob)
from geal.sampling import kcenter as _kcenter  # noqa: F401
from geal.sampling import kernelcover as _kernelcover  # noqa: F401
from geal.sampling import kmeans as _kmeans  # noqa: F401
from geal.sampling import probcover as _probcover  # noqa: F401
from geal.sampling import random as _random  # noqa: F401
from geal.sampling import strata as _strata  # noqa: F401
from geal.sampling import typiclust as _typiclust  # noqa: F401
from geal.sampling.base import (
    SAMPLERS,
    Ranking,
    RunSettings,
    Sampler,
    SamplerParams,
    register_sampler,
)

if TYPE_CHECKING:
    from geal.bank import PatternBank


__all__ = [
    "DEFAULT_STRATEGY",
    "SAMPLERS",
    "Ranking",
    "RunSettings",
    "Sampler",
    "SamplerParams",
    "register_sampler",
    "select",
]


def select(
    bank: PatternBank,
    budget: int,
    strategy: str = DEFAULT_STRATEGY,
    *,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    run: RunSettings | None = None,
    **params: Any,
) -> Ranking:
    """Rank the pool with the named sampler.

    Args:
        bank: the pattern bank.
        budget: images to pick (labeled images not counted).
        strategy: a name of :data:`SAMPLERS`.
        seed: seeds every random choice.
        labeled: pool indices already labeled (never picked; they count as covered).
        distance: ``cosine`` or ``euclidean``.
        run: how the selection runs (device, chunk, pruning, progress, journal).
        params: the sampler's hyperparameters (see its parameter dataclass); an unknown
            one is a :class:`~geal.errors.SelectionError`.
    """
    return SAMPLERS[strategy](
        bank, budget, seed=seed, labeled=labeled, distance=distance, run=run, **params
    )
