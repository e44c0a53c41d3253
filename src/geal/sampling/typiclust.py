"""TypiClust: the most typical image of the largest uncovered cluster.

Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
and Low Budgets", ICML 2022. At low budgets, labelling typical (dense-region) examples of
distinct clusters beats labelling the uncertain ones. TypiClust clusters the pool into
``n_labeled + budget`` clusters (at most 500), then repeatedly takes the cluster with the
fewest labeled or selected images (largest first among equals) and picks its most typical
unlabeled image, typicality being ``1 / (mean distance to the k = 20 nearest neighbours
within the cluster + 1e-5)``, k shrinking to half the cluster for small ones.

Kept: the cluster count rule and its cap, skipping clusters too small to estimate density
(as the released code: a cluster is used only if it holds more than ``min_cluster_size``
= 5 images), the cluster order, typicality among the cluster's not yet picked images, the
1e-5 guard. Simplified: the clustering is our Lloyd k-means with k-means++ seeding on the
global features (the paper uses self-supervised SimCLR features and scikit-learn's KMeans,
MiniBatchKMeans above 50 clusters); for cosine the neighbour distance is 1 - cos, which on
unit vectors is half the squared L2 distance the released code averages, for euclidean it
is the Euclidean distance of the paper's formula. The cluster order is re-evaluated after
every pick (the released code sorts once and cycles, which agrees when all clusters start
with equal labeled counts). If every cluster is too small, all clusters are used. Not
nested: the cluster count depends on the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geal.errors import SelectionError
from geal.internal.validation import check_scalar
from geal.kmeans import kmeans
from geal.sampling.base import BankShape, Ranking, RunSettings, register_sampler
from geal.sampling.features import (
    KMeansSettings,
    blocks_bytes,
    global_pool,
    knn_mean_dist,
    rows_bytes,
)

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)


def typicality(x: np.ndarray, k: int, metric: str, *, chunk: int) -> np.ndarray:
    """TypiClust's typicality: ``1 / (mean distance to the k nearest other rows + 1e-5)``."""
    return 1.0 / (knn_mean_dist(x, k, metric, chunk=chunk) + 1e-5)


@dataclass(frozen=True)
class TypiClustParams(KMeansSettings):
    """Hyperparameters of ``typiclust`` (and its k-means, see ``KMeansSettings``).

    Attributes:
        max_clusters: cap on the cluster count (>= 1; the paper's 500).
        min_cluster_size: clusters of at most this many images are skipped (>= 0).
        knn: neighbours in the typicality (>= 1).
    """

    max_clusters: int = 500
    min_cluster_size: int = 5
    knn: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        check_scalar(self.max_clusters, "max_clusters", int, min_val=1, error=SelectionError)
        check_scalar(
            self.min_cluster_size, "min_cluster_size", int, min_val=0, error=SelectionError
        )
        check_scalar(self.knn, "knn", int, min_val=1, error=SelectionError)


def _memory(shape: BankShape, budget: int, params: TypiClustParams, run: RunSettings) -> int:
    k = min(budget + shape.labeled, params.max_clusters)
    return (
        rows_bytes(shape)
        # k-NN blocks within a cluster
        + blocks_bytes(min(run.chunk, shape.n), min(run.chunk, shape.n))
        + 24 * k * shape.dim
        + 24 * shape.n
    )


@register_sampler("typiclust", TypiClustParams, memory=_memory)
def typiclust(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: TypiClustParams,
    run: RunSettings,
) -> Ranking:
    """TypiClust selection on the global features (not nested)."""
    pool = global_pool(bank, budget, labeled, distance)
    chunk = run.chunk
    max_clusters, min_size, knn = params.max_clusters, params.min_cluster_size, params.knn
    kmo = params.kmeans_kwargs()
    n_lab = int(pool.labeled.sum())
    k = min(n_lab + budget, max_clusters)
    rng = np.random.default_rng([int(seed), 0x5459504943])
    km = kmeans(pool.x, k, rng, **kmo, chunk=chunk, progress=run.progress)
    labels = km.labels
    sizes = np.bincount(labels, minlength=k)
    taken = np.bincount(labels[pool.labeled], minlength=k)
    left = np.bincount(labels[pool.pickable], minlength=k)
    large = sizes > min_size
    if not large.any():
        log.warning("typiclust: every cluster holds %d images or fewer; using them all", min_size)
        large[:] = True
    by_cluster = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[by_cluster], np.arange(k + 1))
    free = pool.pickable.copy()
    order = np.empty(budget, dtype=np.int64)
    for t in range(budget):
        ok = large & (left > 0)
        if not ok.any():
            ok = left > 0
        cand = np.flatnonzero(ok)
        c = int(cand[np.lexsort((cand, -sizes[cand], taken[cand]))[0]])
        rows = by_cluster[starts[c] : starts[c + 1]]
        rows = rows[free[rows]]
        kk = min(knn, rows.size // 2)
        if kk < 1:
            pick = int(rows[0])
        else:
            typ = typicality(pool.x[rows], kk, pool.metric, chunk=chunk)
            pick = int(rows[int(np.argmax(typ))])
        order[t] = pick
        free[pick] = False
        taken[c] += 1
        left[c] -= 1
    log.info("typiclust: %d clusters, %d picks", k, budget)
    ranked = {
        "distance": distance,
        "max_clusters": max_clusters,
        "min_cluster_size": min_size,
        "knn": knn,
        **kmo,
    }
    return Ranking(
        pool.index[order],
        np.full(budget, np.nan, np.float32),
        "typiclust",
        seed,
        ranked,
        nested=False,
        why_not_nested="the pool is clustered into as many clusters as the budget (at most "
        "max_clusters), so every budget is solved afresh",
    )
