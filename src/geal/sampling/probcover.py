"""ProbCover: greedy maximum coverage of delta-balls.

Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens", NeurIPS
2022. In a good embedding, a small ball around a labeled image mostly holds images of
its class; ProbCover therefore picks the images whose delta-balls cover as much of the
pool as possible. It builds the graph with an edge x -> y whenever ``d(x, y) < delta``,
then repeatedly picks the image whose ball holds the most uncovered images and marks
them covered. Images covered by the labeled set count as covered from the start.

Kept: the strict ``d < delta`` ball, the sparse edge list built in blocks, the greedy
rule (first image on ties, as ``argmax`` in the released code), the labeled set's balls
covering from the start, and the paper's choice of delta: the largest delta whose ball
purity is at least alpha = 0.95, purity being the fraction of images whose ball holds
only images of their own k-means pseudo-label, with k the expected number of classes
(option ``n_clusters``, default 10). Purity is exact: an image's ball is pure for every
delta up to its distance to the nearest image with another pseudo-label, so one pass
gives the purity of every candidate delta. Added: once no ball covers a new image, the
remaining picks are seeded random draws among the pickable images (the released code
would return image 0 again). Simplified: the features are the frozen model's global
vectors (the paper uses SimCLR/DINO embeddings); distance is 1 - cos on unit vectors
(a monotone map of the L2 distance the paper thresholds: 1 - cos = L2^2 / 2) or
Euclidean. Nested: the greedy
picks for a budget are the first picks of any larger budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.coverage import step_rng
from geal.errors import SelectionError
from geal.internal.validation import check_scalar
from geal.kmeans import kmeans, sq_norms
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler
from geal.sampling.features import blocks_bytes, global_pool, rows_bytes

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)

GRID_STEPS = 200


def _blocks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


def purity_margins(x: np.ndarray, labels: np.ndarray, metric: str, *, chunk: int) -> np.ndarray:
    """Distance of every row to the nearest row with another label (inf if none).

    A row's delta-ball is pure exactly when this margin is at least delta. Rows are
    visited sorted by label, so only blocks where labels meet need a mask, and the
    distance being symmetric, only the upper blocks are computed.
    """
    n = x.shape[0]
    order = np.argsort(labels, kind="stable")
    xs = np.ascontiguousarray(x[order])
    ls = labels[order]
    sq = sq_norms(xs)
    best = np.full(n, -np.inf, dtype=np.float32)  # largest "closeness" to another label
    blocks = _blocks(n, chunk)
    for i, (a, b) in enumerate(blocks):
        for c, e in blocks[i:]:
            dot = xs[a:b] @ xs[c:e].T
            if ls[c] <= ls[b - 1]:  # sorted labels: the two ranges may share a label
                dot[ls[a:b, None] == ls[None, c:e]] = -np.inf
            if metric == "cosine":  # closeness = cos
                np.maximum(best[a:b], dot.max(1), out=best[a:b])
                if c != a:
                    np.maximum(best[c:e], dot.max(0), out=best[c:e])
            else:  # closeness of row i to j = 2 x_i.x_j - |x_j|^2 = |x_i|^2 - d^2
                dot *= 2.0
                np.maximum(best[a:b], (dot - sq[None, c:e]).max(1), out=best[a:b])
                if c != a:
                    np.maximum(best[c:e], (dot - sq[a:b, None]).max(0), out=best[c:e])
    cos = metric == "cosine"
    m = np.maximum(1.0 - best, 0.0) if cos else np.sqrt(np.maximum(sq - best, 0.0))
    out = np.empty(n, dtype=np.float32)
    out[order] = m
    return out


def ball_purity(margins: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Fraction of rows whose ``d < delta`` ball is pure, for every delta."""
    srt = np.sort(margins)
    return 1.0 - np.searchsorted(srt, deltas, side="left") / max(srt.size, 1)


def default_deltas(x: np.ndarray, metric: str) -> np.ndarray:
    """Candidate deltas: 200 even steps up to the largest possible distance."""
    top = (
        2.0
        if metric == "cosine"
        else 2.0 * float(np.sqrt((x.astype(np.float64) ** 2).sum(1).max()))
    )
    return top * np.arange(1, GRID_STEPS + 1) / GRID_STEPS


def choose_delta(
    x: np.ndarray,
    metric: str,
    *,
    n_clusters: int,
    alpha: float,
    deltas: np.ndarray,
    rng: np.random.Generator,
    chunk: int,
    progress: bool | None = None,
) -> tuple[float, float]:
    """The largest candidate delta with ball purity >= alpha, and its purity."""
    k = max(1, min(n_clusters, x.shape[0]))
    pseudo = kmeans(x, k, rng, chunk=chunk, progress=progress).labels
    purity = ball_purity(purity_margins(x, pseudo, metric, chunk=chunk), deltas)
    ok = np.flatnonzero(purity >= alpha)
    if ok.size == 0:
        log.warning("probcover: no candidate delta reaches purity %.2f; using the smallest", alpha)
        j = int(np.argmin(deltas))
    else:
        j = int(ok[np.argmax(deltas[ok])])
    return float(deltas[j]), float(purity[j])


def ball_graph(
    x: np.ndarray, delta: float, metric: str, *, chunk: int, max_edges: int
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric ``d < delta`` graph in CSR form ``(indptr, indices)``, self-loops included."""
    n = x.shape[0]
    sq = sq_norms(x)
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    count = n
    blocks = _blocks(n, chunk)
    for i, (a, b) in enumerate(blocks):
        for c, e in blocks[i:]:  # symmetric: upper blocks only, mirrored below
            dot = x[a:b] @ x[c:e].T
            if metric == "cosine":  # 1 - cos < delta
                close = dot > 1.0 - delta
            else:  # |a|^2 + |b|^2 - 2 a.b < delta^2
                dot *= -2.0
                dot += sq[None, c:e]
                close = dot < (delta * delta - sq[a:b])[:, None]
            if c == a:
                close = np.triu(close, 1)
            r, s = np.nonzero(close)
            count += 2 * r.size
            if count > max_edges:
                raise SelectionError(
                    f"the delta={delta:g} ball graph has over {max_edges} edges; "
                    "give a smaller delta or a larger max_edges"
                )
            src.append((r + a).astype(np.int32))
            dst.append((s + c).astype(np.int32))
    self_loops = np.arange(n, dtype=np.int32)
    rows = np.concatenate([*src, *dst, self_loops])
    cols = np.concatenate([*dst, *src, self_loops])
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order]


def _neighbours(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated neighbour lists of ``rows``."""
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=indices.dtype)
    first = np.cumsum(lens) - lens
    return indices[np.repeat(starts - first, lens) + np.arange(total)]


@dataclass(frozen=True)
class ProbCoverParams(SamplerParams):
    """Hyperparameters of ``probcover``.

    Attributes:
        delta: ball radius (> 0); None chooses it by ball purity.
        alpha: purity the chosen delta must reach, in (0, 1].
        n_clusters: pseudo-label clusters for the purity (>= 1; the classes expected).
        deltas: candidate deltas (each > 0); None: 200 even steps up to the largest
            distance, i.e. 0.01 apart for cosine.
        max_edges: refuse a graph with more edges than this (>= 1).
    """

    delta: float | None = None
    alpha: float = 0.95
    n_clusters: int = 10
    deltas: tuple[float, ...] | None = None
    max_edges: int = 25_000_000

    def __post_init__(self) -> None:
        if self.delta is not None:
            check_scalar(
                self.delta, "delta", float, min_val=0, min_inclusive=False, error=SelectionError
            )
        check_scalar(
            self.alpha,
            "alpha",
            float,
            min_val=0,
            max_val=1,
            min_inclusive=False,
            error=SelectionError,
        )
        check_scalar(self.n_clusters, "n_clusters", int, min_val=1, error=SelectionError)
        check_scalar(self.max_edges, "max_edges", int, min_val=1, error=SelectionError)
        if self.deltas is not None:
            object.__setattr__(self, "deltas", tuple(float(d) for d in self.deltas))
            if not self.deltas or min(self.deltas) <= 0:
                raise SelectionError("probcover: candidate deltas must be positive")


def _memory(shape: BankShape, budget: int, params: ProbCoverParams, run: RunSettings) -> int:
    # pool x pool blocks (purity, graph) and, at most, the graph's max_edges edges
    # (two int32 lists, their concatenations and the sort order: about 24 bytes an edge)
    return (
        rows_bytes(shape)
        + blocks_bytes(min(run.chunk, shape.n), min(run.chunk, shape.n))
        + 24 * params.max_edges
        + 32 * shape.n
    )


@register_sampler("probcover", ProbCoverParams, memory=_memory)
def probcover(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: ProbCoverParams,
    run: RunSettings,
) -> Ranking:
    """ProbCover on the global features (nested)."""
    pool = global_pool(bank, budget, labeled, distance)
    chunk = run.chunk
    ranked: dict[str, Any] = {"distance": distance}
    delta = params.delta
    if delta is None:
        deltas = (
            default_deltas(pool.x, pool.metric)
            if params.deltas is None
            else np.asarray(params.deltas, dtype=np.float64)
        )
        rng = np.random.default_rng([int(seed), 0x50524F42])
        delta, purity = choose_delta(
            pool.x,
            pool.metric,
            n_clusters=params.n_clusters,
            alpha=params.alpha,
            deltas=deltas,
            rng=rng,
            chunk=chunk,
            progress=run.progress,
        )
        log.info("probcover: delta %.4g has ball purity %.3f", delta, purity)
        ranked.update(alpha=params.alpha, n_clusters=params.n_clusters, purity=purity)
    delta = float(delta)
    ranked["delta"] = delta
    indptr, indices = ball_graph(
        pool.x, delta, pool.metric, chunk=chunk, max_edges=params.max_edges
    )
    log.info("probcover: %d edges, mean ball size %.1f", indices.size, indices.size / pool.n)

    gain = np.diff(indptr)  # uncovered images in each ball
    covered = np.zeros(pool.n, dtype=bool)

    def cover(rows: np.ndarray) -> None:
        new = np.unique(_neighbours(indptr, indices, rows))
        new = new[~covered[new]]
        covered[new] = True
        # the graph is symmetric: the balls holding a new image are its neighbours
        gain[:] -= np.bincount(_neighbours(indptr, indices, new), minlength=pool.n)

    cover(np.flatnonzero(pool.labeled))
    free = pool.pickable.copy()
    order = np.empty(budget, dtype=np.int64)
    random_from = -1
    for t in range(budget):
        score = np.where(free, gain, -1)
        i = int(np.argmax(score))
        if score[i] <= 0:
            if random_from < 0:
                random_from = t
            left = np.flatnonzero(free)
            i = int(left[step_rng(seed, t, 0x50524F42).integers(left.size)])
        else:
            cover(np.array([i]))
        order[t] = i
        free[i] = False
    if random_from >= 0:
        log.info("probcover: every ball covered after %d picks; the rest are random", random_from)
    log.info("probcover: %.1f%% of the pool covered", 100.0 * covered.mean())
    return Ranking(
        pool.index[order], np.full(budget, np.nan, np.float32), "probcover", seed, ranked
    )
