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

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geal.coverage import DEFAULT_CHUNK, Coverage, CoverageState, greedy
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler
from geal.sampling.geal import coverage_bytes

if TYPE_CHECKING:
    from geal.bank import PatternBank


def global_coverage(
    bank: PatternBank, *, distance: str = "cosine", device: str = "cpu", chunk: int = DEFAULT_CHUNK
) -> Coverage:
    """Coverage state over one global vector per readable image."""
    valid = bank.valid
    feats = bank.global_features(np.float32)[valid]
    return Coverage([feats], valid.astype(np.int64), distance=distance, device=device, chunk=chunk)


def _memory(shape: BankShape, budget: int, params: SamplerParams, run: RunSettings) -> int:
    # the global features read as float32 (twice at the peak) and a coverage over them
    flat = BankShape(shape.n, shape.n, shape.dim, shape.labeled)
    return 8 * shape.n * shape.dim + coverage_bytes(flat, dataclasses.replace(run, prune="off"))


@register_sampler("kcenter", memory=_memory)
def kcenter(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: SamplerParams,
    run: RunSettings,
) -> Ranking:
    """Greedy k-center (Core-Set) on the global features; nested, radius tracked.

    No hyperparameters; runs on ``run.device`` with the exact coverage engine.
    """
    cov = global_coverage(bank, distance=distance, device=run.device, chunk=run.chunk)

    def step(c: CoverageState, t: int, rng: np.random.Generator) -> int:
        return c.farthest()

    ranked = {"distance": distance}
    picks = greedy(
        cov,
        budget,
        step,
        strategy="kcenter",
        seed=seed,
        labeled=labeled,
        params=ranked,
        journal=run.journal,
        journal_key=dict(run.journal_key or {}),
        progress=run.progress,
    )
    return Ranking(picks.order, picks.radius, "kcenter", seed, ranked)
