"""What the samplers on one global feature per image share.

The baselines (k-means, TypiClust, ProbCover, ActiveFT) and ``strata`` work on
``bank.global_features()``. This module turns a bank into the rows they may use, holds
the chunked primitives they share (pairwise distances, nearest unused image to a set of
centres, mean distance to the k nearest neighbours) and the k-means settings they
accept (the k-means itself is :mod:`geal.kmeans`). No pool x pool or pool x centres
matrix is ever held whole: every product works on ``chunk`` x ``chunk`` blocks, so
memory does not grow with the pool beyond the features themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.coverage import DEFAULT_CHUNK, DISTANCES, check_budget
from geal.errors import SelectionError
from geal.internal.validation import check_scalar
from geal.kmeans.rows import sq_dist, sq_norms
from geal.sampling.base import BankShape, SamplerParams

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)


@dataclass
class GlobalPool:
    """The readable images of a bank as feature rows.

    Attributes:
        x: float32 ``[n, D]`` features of the readable images, unit length for cosine.
        index: int64 ``[n]`` pool index of each row.
        labeled: bool ``[n]`` rows already labeled (never picked).
        metric: ``cosine`` or ``euclidean``.
    """

    x: np.ndarray
    index: np.ndarray
    labeled: np.ndarray
    metric: str

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def pickable(self) -> np.ndarray:
        return ~self.labeled


def global_pool(
    bank: PatternBank,
    budget: int,
    labeled: Sequence[int] | None,
    distance: str,
    *,
    normalise: bool | None = None,
) -> GlobalPool:
    """Rows a baseline works on; checks the distance, labeled indices and budget.

    Args:
        bank: the pattern bank (its global features are used).
        budget: images to pick; more than the readable unlabeled images is an error.
        labeled: pool indices already labeled; unreadable ones are ignored.
        distance: ``cosine`` (features are L2-normalised) or ``euclidean``.
        normalise: force normalisation on or off (default: only for cosine).
    """
    if distance not in DISTANCES:
        raise SelectionError(f"unknown distance {distance!r}; use {' or '.join(DISTANCES)}")
    lab = np.asarray(sorted({int(i) for i in labeled or []}), dtype=np.int64)
    bad = lab[(lab < 0) | (lab >= bank.n)]
    if bad.size:
        raise SelectionError(f"labeled index {int(bad[0])} is outside the pool (0..{bank.n - 1})")
    index = np.flatnonzero(bank.valid).astype(np.int64)
    x = np.ascontiguousarray(bank.global_features(np.float32)[index])
    if not np.isfinite(x).all():
        raise SelectionError("the bank's global features hold NaN or infinite values")
    if normalise is None:
        normalise = distance == "cosine"
    if normalise:
        x = unit(x)
    row = np.full(bank.n, -1, dtype=np.int64)
    row[index] = np.arange(index.size)
    is_lab = np.zeros(index.size, dtype=bool)
    lab_rows = row[lab]
    is_lab[lab_rows[lab_rows >= 0]] = True
    check_budget(int(index.size - is_lab.sum()), budget)
    return GlobalPool(x, index, is_lab, distance)


def rows_bytes(shape: BankShape) -> int:
    """Peak bytes of the rows a global-feature sampler works on: the float16 shards read
    into float32, the readable rows' copy and their unit-length copy (3 x N x D x 4)."""
    return 12 * shape.n * shape.dim + 16 * shape.n


def blocks_bytes(chunk: int, cols: int, width: int = 4, alive: int = 3) -> int:
    """Bytes of ``alive`` blocks of ``chunk`` x ``cols`` products of ``width`` bytes."""
    return alive * width * chunk * max(1, cols)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    return x / np.where(norms > 0, norms, 1.0)[:, None]


def pair_dist(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances ``[len(a), len(b)]``: 1 - cos for unit rows, or Euclidean."""
    if metric == "cosine":
        d = a @ b.T
        np.subtract(1.0, d, out=d)
        return np.maximum(d, 0.0, out=d)
    return np.sqrt(sq_dist(a, b, sq_norms(a), sq_norms(b)))


@dataclass(frozen=True)
class KMeansSettings(SamplerParams):
    """The k-means settings of the samplers that fit k-means on the global features.

    Attributes:
        n_init: k-means runs, the one of lowest inertia kept (>= 1).
        max_iter: Lloyd iterations at most (>= 1).
        tol: relative centre-shift tolerance (>= 0).
        init_size: rows the k-means++ seeding sees (default ``max(3 k, 10000)``).
    """

    n_init: int = 1
    max_iter: int = 100
    tol: float = 1e-4
    init_size: int | None = None

    def __post_init__(self) -> None:
        check_scalar(self.n_init, "n_init", int, min_val=1, error=SelectionError)
        check_scalar(self.max_iter, "max_iter", int, min_val=1, error=SelectionError)
        check_scalar(self.tol, "tol", float, min_val=0, error=SelectionError)
        if self.init_size is not None:
            check_scalar(self.init_size, "init_size", int, min_val=1, error=SelectionError)

    def kmeans_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`geal.kmeans.kmeans`."""
        return {
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "init_size": self.init_size,
        }


def nearest_unused(
    x: np.ndarray,
    allowed: np.ndarray,
    centres: np.ndarray,
    order: Sequence[int] | np.ndarray,
    *,
    chunk: int = DEFAULT_CHUNK,
    candidates: int = 8,
) -> np.ndarray:
    """For each centre in ``order``, the nearest allowed row not taken by an earlier centre.

    Squared Euclidean distance; ties go to the lower row. Each centre's few nearest rows
    are found in one chunked pass; a centre whose candidates were all taken falls back
    to a full pass of its own.

    Returns:
        int64 row numbers, one per entry of ``order``.
    """
    ok = np.flatnonzero(allowed)
    order = np.asarray(order, dtype=np.int64)
    if order.size > ok.size:
        raise SelectionError(f"{order.size} centres but only {ok.size} images to pick from")
    k = centres.shape[0]
    m = max(1, min(candidates, ok.size))
    x2 = sq_norms(x)
    c2 = sq_norms(centres)
    best_d = np.full((k, m), np.inf, dtype=np.float32)
    best_i = np.full((k, m), np.iinfo(np.int64).max, dtype=np.int64)
    for a in range(0, ok.size, chunk):
        rows = ok[a : a + chunk]
        xr = x[rows]
        for ca in range(0, k, chunk):
            cb = min(ca + chunk, k)
            d = sq_dist(centres[ca:cb], xr, c2[ca:cb], x2[rows])  # [kc, r]
            r = min(m, rows.size)
            part = (
                np.argpartition(d, r - 1, axis=1)[:, :r]
                if r < rows.size
                else np.tile(np.arange(rows.size), (cb - ca, 1))
            )
            cand_d = np.concatenate([best_d[ca:cb], np.take_along_axis(d, part, 1)], axis=1)
            cand_i = np.concatenate([best_i[ca:cb], rows[part]], axis=1)
            keep = np.lexsort((cand_i, cand_d), axis=-1)[:, :m]
            best_d[ca:cb] = np.take_along_axis(cand_d, keep, 1)
            best_i[ca:cb] = np.take_along_axis(cand_i, keep, 1)
    used = np.zeros(x.shape[0], dtype=bool)
    out = np.empty(order.size, dtype=np.int64)
    for t, c in enumerate(order):
        pick = -1
        for r in best_i[c]:
            if r < x.shape[0] and not used[r]:
                pick = int(r)
                break
        if pick < 0:
            left = ok[~used[ok]]
            cc = centres[c : c + 1]
            parts = [
                sq_dist(cc, x[rows], c2[c : c + 1], x2[rows])[0]
                for rows in np.array_split(left, max(1, -(-left.size // chunk)))
            ]
            pick = int(left[int(np.argmin(np.concatenate(parts)))])
        used[pick] = True
        out[t] = pick
    return out


def knn_mean_dist(x: np.ndarray, k: int, metric: str, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Mean distance of every row to its ``k`` nearest other rows (float64 ``[n]``)."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}], got {k}")
    out = np.empty(n, dtype=np.float64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        run = np.full((b - a, k), np.inf, dtype=np.float32)
        for c in range(0, n, chunk):
            e = min(c + chunk, n)
            d = pair_dist(x[a:b], x[c:e], metric)
            if c == a:
                np.fill_diagonal(d, np.inf)  # a row is not its own neighbour
            kk = min(k, d.shape[1])
            part = np.partition(d, kk - 1, axis=1)[:, :kk] if kk < d.shape[1] else d
            both = np.concatenate([run, part], axis=1)
            run = np.partition(both, k - 1, axis=1)[:, :k]
        out[a:b] = run.astype(np.float64).mean(1)
    return out
