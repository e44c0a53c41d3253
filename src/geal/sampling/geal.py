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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.sampling._coverage import Coverage
from geal.sampling._loop import greedy
from geal.sampling.base import Ranking, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


def pattern_coverage(
    bank: PatternBank, *, distance: str = "cosine", device: str = "cpu", chunk: int = 65536
) -> Coverage:
    """Coverage state over the bank's patterns (read shard by shard)."""
    return Coverage(
        (blk for _, blk in bank.iter_blocks()),
        bank.counts,
        distance=distance,
        device=device,
        chunk=chunk,
    )


def _run(
    name: str,
    bank: PatternBank,
    budget: int,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    options: dict[str, Any],
) -> Ranking:
    cov = pattern_coverage(
        bank,
        distance=distance,
        device=options.get("device", "cpu"),
        chunk=options.get("chunk", 65536),
    )
    if name == "fds":

        def step(c: Coverage, t: int, rng: np.random.Generator) -> int:
            return c.farthest()
    else:

        def step(c: Coverage, t: int, rng: np.random.Generator) -> int:
            return c.draw(rng)

    journal = options.get("journal")
    return greedy(
        cov,
        budget,
        step,
        strategy=name,
        seed=seed,
        labeled=labeled,
        params={"distance": distance},
        journal=Path(journal) if journal else None,
        journal_key=options.get("journal_key"),
        progress=options.get("progress"),
    )


@register_sampler("fds")
def fds(
    bank: PatternBank,
    budget: int,
    *,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    **options: Any,
) -> Ranking:
    """Pattern-level farthest distance sampling (GEAL FDS)."""
    return _run("fds", bank, budget, seed, labeled, distance, options)


@register_sampler("prob")
def prob(
    bank: PatternBank,
    budget: int,
    *,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    **options: Any,
) -> Ranking:
    """Pattern-level D^2 (k-means++-style) probabilistic sampling (GEAL prob)."""
    return _run("prob", bank, budget, seed, labeled, distance, options)
