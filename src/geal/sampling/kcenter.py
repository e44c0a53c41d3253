"""Greedy k-center on one global feature per image (the Core-Set baseline).

Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018. Core-Set picks, again and again, the image farthest from
everything picked or labeled so far (their Algorithm 1, ``k-Center-Greedy``), which is
a 2-approximation of the minimax facility location (k-center) problem.

Kept: the greedy farthest-first rule, the labeled set as the initial centres, the
coverage radius after every pick. Simplified: the features are the frozen model's global
vector (not a task network's penultimate layer, since nothing is trained here); the
paper's mixed-integer refinement with an outlier budget (robust k-center) is not run. Without a labeled set the first pick is one seeded random image.
It is exactly ``fds`` with one vector per image instead of the image's patterns, and runs
on the same exact coverage engine (identical rankings across devices and chunk sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.sampling._coverage import Coverage
from geal.sampling._global import DEFAULT_CHUNK
from geal.sampling._loop import greedy
from geal.sampling.base import Ranking, register_sampler

if TYPE_CHECKING:
    from geal.bank import PatternBank


def global_coverage(
    bank: PatternBank, *, distance: str = "cosine", device: str = "cpu", chunk: int = DEFAULT_CHUNK
) -> Coverage:
    """Coverage state over one global vector per readable image."""
    valid = bank.valid
    feats = bank.global_features(np.float32)[valid]
    return Coverage([feats], valid.astype(np.int64), distance=distance, device=device, chunk=chunk)


@register_sampler("kcenter")
def kcenter(
    bank: PatternBank,
    budget: int,
    *,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    **options: Any,
) -> Ranking:
    """Greedy k-center (Core-Set) on the global features; nested, radius tracked.

    Options:
        device: ``cpu`` (default), ``cuda`` or ``auto``.
        chunk: rows per product when the labeled images are added (default 4096).
        journal, journal_key, progress: as for ``fds``.
    """
    cov = global_coverage(
        bank,
        distance=distance,
        device=options.get("device", "cpu"),
        chunk=int(options.get("chunk", DEFAULT_CHUNK)),
    )

    def step(c: Coverage, t: int, rng: np.random.Generator) -> int:
        return c.farthest()

    journal = options.get("journal")
    return greedy(
        cov,
        budget,
        step,
        strategy="kcenter",
        seed=seed,
        labeled=labeled,
        params={"distance": distance},
        journal=Path(journal) if journal else None,
        journal_key=options.get("journal_key"),
        progress=options.get("progress"),
    )
