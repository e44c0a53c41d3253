"""Uniform random selection: the baseline every other sampler must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geal.coverage import check_budget
from geal.sampling.base import Ranking, RunSettings, SamplerParams, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


STREAM = 0x52414E44  # the random sampler's own generator stream


def random_pick(candidates: int | np.ndarray, size: int, seed: int) -> np.ndarray:
    """A uniform random pick of ``size`` of ``candidates``, reproducible from ``seed``:
    the first ``size`` of a permutation drawn from the ``random`` sampler's generator,
    so on the readable, unlabeled images of a bank this is what ``--strategy random``
    picks (the report's and the demo's random baseline).

    Args:
        candidates: pool indices to pick from, or ``n`` for ``range(n)``.
        size: how many (all of them when there are fewer).
        seed: the seed.
    """
    pool = (
        np.arange(int(candidates))
        if isinstance(candidates, (int, np.integer))
        else np.asarray(candidates, np.int64)
    )
    order = np.random.default_rng([int(seed), STREAM]).permutation(pool)
    return order[: min(int(size), order.size)].astype(np.int64)


@register_sampler("random", memory=lambda shape, budget, params, run: 16 * shape.n)
def random(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: SamplerParams,
    run: RunSettings,
) -> Ranking:
    """A seeded random permutation of the readable, unlabeled images (nested budgets)."""
    ok = bank.valid.copy()
    ok[np.asarray(list(labeled or []), dtype=np.int64)] = False
    left = np.flatnonzero(ok)
    check_budget(left.size, budget)
    order = random_pick(left, budget, seed)
    return Ranking(order, np.full(budget, np.nan, np.float32), "random", seed, {})
