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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.errors import SelectionError
from geal.internal.device import resolve_device
from geal.sampling._coverage import Coverage
from geal.sampling._loop import greedy
from geal.sampling._pruned import PrunedCoverage
from geal.sampling.base import Ranking, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


PRUNE_MIN_PATTERNS = 25_000  # below this a plain pass is as fast as the bookkeeping


def make_coverage(
    blocks: list[np.ndarray],
    counts: np.ndarray,
    *,
    distance: str = "cosine",
    device: str = "cpu",
    chunk: int = 65536,
    prune: str | bool = "auto",
    release: Callable[[int], None] | None = None,
) -> Coverage | PrunedCoverage:
    """The coverage state for ``blocks``: exact plain passes, or exact pruned ones.

    ``prune``: ``auto`` prunes on the CPU with the cosine distance from
    :data:`PRUNE_MIN_PATTERNS` patterns up; ``on``/``off`` force it. Both give the same
    ranking (see ``_pruned``); pruning only changes the time.
    """
    m = int(np.asarray(counts).sum())
    dev = resolve_device(device)
    if prune in (True, "on"):
        if distance != "cosine" or dev.type != "cpu":
            raise SelectionError("--prune on works with the cosine distance on the CPU")
        use = True
    elif prune in (False, "off"):
        use = False
    elif prune == "auto":
        use = distance == "cosine" and dev.type == "cpu" and m >= PRUNE_MIN_PATTERNS
    else:
        raise SelectionError(f"--prune takes auto, on or off, not {prune!r}")
    if use:
        return PrunedCoverage(blocks, counts, chunk=chunk, release=release)
    return Coverage(
        blocks, counts, distance=distance, device=str(dev), chunk=chunk, release=release
    )


def pattern_coverage(
    bank: PatternBank,
    *,
    distance: str = "cosine",
    device: str = "cpu",
    chunk: int = 65536,
    prune: str | bool = "auto",
) -> Coverage | PrunedCoverage:
    """Coverage state over the bank's patterns, read shard by shard."""
    return make_coverage(
        bank.pattern_blocks(), bank.counts, distance=distance, device=device, chunk=chunk,
        prune=prune, release=bank.release_block,
    )  # fmt: skip


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
        prune=options.get("prune", "auto"),
    )
    if name == "fds":

        def step(c: Any, t: int, rng: np.random.Generator) -> int:
            return int(c.farthest())
    else:

        def step(c: Any, t: int, rng: np.random.Generator) -> int:
            return int(c.draw(rng))

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
