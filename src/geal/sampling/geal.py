"""GEAL's samplers over knowledge clusters, as published (arXiv 2112.07963, Sec. 3.3).

Each image is represented by its knowledge clusters (patterns). The distance of a
pattern to the selected set is its distance to the nearest pattern of a selected image;
an image is as far from the set as its farthest pattern.

- ``fds`` (farthest distance sampling): pick the image owning the pattern farthest from
  the selected set (k-center greedy at pattern level).
- ``prob``: draw a pattern with probability proportional to its squared distance (the
  k-means++ seeding rule) and pick its image.

Both start from the labeled images, or from one seeded random image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geal.coverage import Coverage, CoverageState, PrunedCoverage, greedy, make_coverage
from geal.sampling.base import Ranking, RunSettings, SamplerParams, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


def pattern_coverage(
    bank: PatternBank, *, distance: str = "cosine", run: RunSettings | None = None
) -> Coverage | PrunedCoverage:
    """Coverage state over the bank's patterns, read shard by shard."""
    run = run or RunSettings()
    return make_coverage(
        bank.pattern_blocks(), bank.counts, distance=distance, device=run.device,
        chunk=run.chunk, prune=run.prune, release=bank.release_block,
    )  # fmt: skip


def _run(
    name: str,
    bank: PatternBank,
    budget: int,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    run: RunSettings,
) -> Ranking:
    cov = pattern_coverage(bank, distance=distance, run=run)
    if name == "fds":

        def step(c: CoverageState, t: int, rng: np.random.Generator) -> int:
            return int(c.farthest())
    else:

        def step(c: CoverageState, t: int, rng: np.random.Generator) -> int:
            return int(c.draw(rng))

    ranked = {"distance": distance}
    picks = greedy(
        cov,
        budget,
        step,
        strategy=name,
        seed=seed,
        labeled=labeled,
        params=ranked,
        journal=run.journal,
        journal_key=dict(run.journal_key or {}),
        progress=run.progress,
    )
    return Ranking(picks.order, picks.radius, name, seed, ranked)


@register_sampler("fds")
def fds(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: SamplerParams,
    run: RunSettings,
) -> Ranking:
    """Pattern-level farthest distance sampling (GEAL FDS)."""
    return _run("fds", bank, budget, seed, labeled, distance, run)


@register_sampler("prob")
def prob(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: SamplerParams,
    run: RunSettings,
) -> Ranking:
    """Pattern-level D^2 (k-means++-style) probabilistic sampling (GEAL prob)."""
    return _run("prob", bank, budget, seed, labeled, distance, run)
