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

from geal.coverage import (
    Coverage,
    CoverageState,
    PrunedCoverage,
    greedy,
    make_coverage,
    uses_pruning,
)
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler

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


def coverage_bytes(shape: BankShape, run: RunSettings, *, vectors: int | None = None) -> int:
    """Peak bytes of the coverage state over ``vectors`` (default: the patterns): the grid
    copy (2 bytes a component) and per-vector state, plain or pruned as
    :func:`geal.coverage.uses_pruning` decides (with the cosine distance, the larger)."""
    m = shape.patterns if vectors is None else vectors
    queries = max(1, shape.labeled) * max(1, m // max(shape.n, 1))  # labeled patterns
    blocks = min(run.chunk, m) * (4 * shape.dim + 8 * queries)  # rows against them
    pruned = uses_pruning(m, distance="cosine", device=run.device, prune=run.prune)
    per = 56 if pruned else 16  # d, norms or |p|^2 and e(p, c), order, owner, changes
    sample = 4 * shape.dim * min(m, 100_000) if pruned else 0
    return 2 * m * shape.dim + per * m + 16 * shape.n + blocks + sample


def _memory(shape: BankShape, budget: int, params: SamplerParams, run: RunSettings) -> int:
    return coverage_bytes(shape, run)


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


@register_sampler("fds", memory=_memory)
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


@register_sampler("prob", memory=_memory)
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
