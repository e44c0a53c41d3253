"""Uniform random selection: the baseline every other sampler must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geal.coverage import check_budget
from geal.sampling.base import Ranking, RunSettings, SamplerParams, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


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
    order = np.random.default_rng([int(seed), 0x52414E44]).permutation(left)[:budget]
    return Ranking(order, np.full(budget, np.nan, np.float32), "random", seed, {})
