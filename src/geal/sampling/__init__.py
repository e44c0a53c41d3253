"""Samplers: turn a pattern bank into a ranking of the pool.

Every sampler is a plain function ``(bank, budget, *, seed, labeled, distance, **options)
-> Ranking`` registered by name in :data:`SAMPLERS`; :func:`select` looks one up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geal.errors import SelectionError
from geal.sampling import activeft as _activeft  # noqa: F401  (baselines on global features)
from geal.sampling import geal as _geal  # noqa: F401  (registers fds, prob)
from geal.sampling import kcenter as _kcenter  # noqa: F401
from geal.sampling import kernelcover as _kernelcover  # noqa: F401
from geal.sampling import kmeans as _kmeans  # noqa: F401
from geal.sampling import probcover as _probcover  # noqa: F401
from geal.sampling import random as _random  # noqa: F401
from geal.sampling import strata as _strata  # noqa: F401
from geal.sampling import typiclust as _typiclust  # noqa: F401
from geal.sampling.base import SAMPLERS, Ranking, Sampler, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank

DEFAULT_STRATEGY = "strata"

__all__ = ["DEFAULT_STRATEGY", "SAMPLERS", "Ranking", "Sampler", "register_sampler", "select"]


def select(
    bank: PatternBank,
    budget: int,
    strategy: str = DEFAULT_STRATEGY,
    *,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    **options: Any,
) -> Ranking:
    """Rank the pool with the named sampler."""
    if strategy not in SAMPLERS:
        raise SelectionError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[strategy](
        bank, budget, seed=seed, labeled=labeled, distance=distance, **options
    )
