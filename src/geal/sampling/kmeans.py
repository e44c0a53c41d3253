"""k-means centres as a selection: the image nearest each centre of ``budget`` clusters.

The plain representativeness baseline: cluster the pool into as many clusters as there
are images to label and label the image closest to each centre (Lloyd's k-means, seeded
by k-means++: Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding",
SODA 2007).

Kept: Lloyd's k-means with k-means++ seeding on the (L2-normalised, for cosine) global
features, then the nearest image to each centre, taken in order of cluster size (largest
first); an image already taken by a larger cluster is skipped for the next nearest.
Extension for a labeled set: the labeled images are fixed centres that take part in the
assignment but never move, so the ``budget`` free centres go where the labeled images do
not already cover the pool. Not nested: every budget is solved afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from geal.kmeans import kmeans
from geal.sampling.base import BankShape, Ranking, RunSettings, register_sampler
from geal.sampling.features import (
    KMeansSettings,
    blocks_bytes,
    global_pool,
    nearest_unused,
    rows_bytes,
)

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)


def _memory(shape: BankShape, budget: int, params: KMeansSettings, run: RunSettings) -> int:
    k = budget + shape.labeled
    return (
        rows_bytes(shape)
        + blocks_bytes(min(run.chunk, shape.n), min(run.chunk, k))  # rows x centres products
        + 24 * k * shape.dim  # centres (float32), their sums (float64), the previous ones
        + 24 * shape.n  # labels, distances
    )


@register_sampler("kmeans", KMeansSettings, memory=_memory)
def kmeans_sampler(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: KMeansSettings,
    run: RunSettings,
) -> Ranking:
    """Nearest readable, unlabeled image to each of ``budget`` k-means centres
    (hyperparameters: :class:`~geal.sampling.features.KMeansSettings`)."""
    pool = global_pool(bank, budget, labeled, distance)
    chunk = run.chunk
    kmo = params.kmeans_kwargs()
    rng = np.random.default_rng([int(seed), 0x4B4D45414E53])
    fixed = pool.x[pool.labeled]
    km = kmeans(
        pool.x,
        budget,
        rng,
        fixed=fixed,
        **kmo,
        chunk=chunk,
        progress=run.progress,
    )
    nf = fixed.shape[0]
    sizes = np.bincount(km.labels, minlength=km.centres.shape[0])[nf:]
    order = np.argsort(-sizes, kind="stable") + nf  # largest free cluster first
    rows = nearest_unused(pool.x, pool.pickable, km.centres, order, chunk=chunk)
    log.info("kmeans: %d clusters in %d iterations", budget, km.n_iter)
    return Ranking(
        pool.index[rows],
        np.full(budget, np.nan, np.float32),
        "kmeans",
        seed,
        {"distance": distance, **kmo},
        nested=False,
        why_not_nested="k-means is fit with as many centres as the budget, so every budget is "
        "solved afresh",
    )
