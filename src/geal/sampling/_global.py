"""Shared pieces of the baselines that see one global feature per image.

The baselines (k-center, k-means, TypiClust, ProbCover, ActiveFT) all work on
``bank.global_features()``. This module turns a bank into the rows they may use, and
holds the chunked primitives they share: pairwise distances, k-means (k-means++ seeding
and Lloyd iterations), nearest unused image to a set of centres, and mean distance to
the k nearest neighbours. No pool x pool or pool x centres matrix is ever held whole:
every product works on ``chunk`` x ``chunk`` blocks, so memory does not grow with the
pool beyond the features themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geal.errors import SelectionError
from geal.sampling._coverage import DISTANCES
from geal.sampling._loop import check_budget

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 4096


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


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    return x / np.where(norms > 0, norms, 1.0)[:, None]


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x).astype(np.float32)


def sq_dist(a: np.ndarray, b: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[len(a), len(b)]`` (clamped at zero)."""
    d = a @ b.T
    d *= -2.0
    d += a2[:, None]
    d += b2[None, :]
    return np.maximum(d, 0.0, out=d)


def pair_dist(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances ``[len(a), len(b)]``: 1 - cos for unit rows, or Euclidean."""
    if metric == "cosine":
        d = a @ b.T
        np.subtract(1.0, d, out=d)
        return np.maximum(d, 0.0, out=d)
    return np.sqrt(sq_dist(a, b, sq_norms(a), sq_norms(b)))


def quiet(options: dict[str, Any]) -> bool | None:
    """Whether to hide progress bars, from a sampler's ``progress`` option.

    None (no option) leaves it to tqdm: bars show only on a terminal.
    """
    p = options.get("progress")
    return None if p is None else not p


def chunk_option(options: dict[str, Any]) -> int:
    chunk = int(options.get("chunk", DEFAULT_CHUNK))
    if chunk < 1:
        raise SelectionError("--chunk must be positive")
    return chunk


def kmeans_options(options: dict[str, Any]) -> dict[str, Any]:
    """The k-means settings a sampler accepts, with their defaults."""
    init_size = options.get("init_size")
    return {
        "n_init": int(options.get("n_init", 1)),
        "max_iter": int(options.get("max_iter", 100)),
        "tol": float(options.get("tol", 1e-4)),
        "init_size": None if init_size is None else int(init_size),
    }


def add_rows(out: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``out[idx[i]] += vals[i]`` for every i, repeated indices summed."""
    order = np.argsort(idx, kind="stable")
    srt = idx[order]
    starts = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])
    out[srt[starts]] += np.add.reduceat(vals[order], starts, axis=0)


# --- k-means --------------------------------------------------------------------------------
def assign(
    x: np.ndarray, x2: np.ndarray, centres: np.ndarray, chunk: int, sums: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every row and its squared distance (first centre on ties).

    With ``sums`` (float64 ``[k, D]``, zeroed), the rows of each centre are also summed
    into it in the same pass, which is what a Lloyd step needs.
    """
    n, k = x.shape[0], centres.shape[0]
    c2 = sq_norms(centres)
    labels = np.zeros(n, dtype=np.int64)
    best = np.full(n, np.inf, dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        for ca in range(0, k, chunk):
            cb = min(ca + chunk, k)
            d = sq_dist(x[a:b], centres[ca:cb], x2[a:b], c2[ca:cb])
            j = d.argmin(1)
            v = d[np.arange(b - a), j]
            better = v < best[a:b]
            labels[a:b][better] = j[better] + ca
            best[a:b][better] = v[better]
        if sums is not None:
            add_rows(sums, labels[a:b], x[a:b].astype(np.float64))
    return labels, best


def kmeans_pp(
    x: np.ndarray,
    x2: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    fixed: np.ndarray | None = None,
    chunk: int = DEFAULT_CHUNK,
    trials: int | None = None,
) -> np.ndarray:
    """Rows chosen by greedy k-means++ seeding, continuing from ``fixed`` centres.

    Each step draws ``trials`` candidates with probability proportional to the squared
    distance to the nearest centre (D^2 sampling) and keeps the one that lowers the
    total squared distance most; ``trials`` defaults to ``2 + log(k)`` as in
    scikit-learn. The candidates are scored together, so a step reads the features once.
    Rows at zero distance are only chosen once every row is (then uniformly).

    Returns:
        the ``k`` chosen row numbers.
    """
    n = x.shape[0]
    if k > n:
        raise SelectionError(f"cannot seed {k} clusters from {n} images")
    nf = 0 if fixed is None else len(fixed)
    if trials is None:
        trials = 2 + int(np.log(max(k + nf, 1)))
    if nf:
        _, d2f = assign(x, x2, fixed, chunk)  # type: ignore[arg-type]
        d2 = d2f.astype(np.float64)
    chosen = np.zeros(n, dtype=bool)
    out = np.empty(k, dtype=np.int64)
    for t in range(k):
        if t == 0 and not nf:
            i = int(rng.integers(n))
            d2 = np.maximum(x2 + x2[i] - 2.0 * (x @ x[i]), 0.0).astype(np.float64)
        else:
            cum = np.cumsum(d2)
            total = float(cum[-1])
            if total > 0:
                cand = np.searchsorted(cum, rng.random(trials) * total, side="right")
                cand = np.minimum(cand, n - 1)
                for j in range(cand.size):
                    while d2[cand[j]] <= 0 and cand[j] > 0:  # round-off at a boundary
                        cand[j] -= 1
                dc = x2[:, None] + x2[cand][None, :] - 2.0 * (x @ x[cand].T)
                new = np.minimum(d2[:, None], np.maximum(dc, 0.0))
                best = int(np.argmin(new.sum(0)))
                i = int(cand[best])
                d2 = new[:, best]
            else:
                left = np.flatnonzero(~chosen)
                i = int(left[rng.integers(left.size)])
        out[t] = i
        chosen[i] = True
        d2[chosen] = 0.0
    return out


@dataclass
class KMeansResult:
    centres: np.ndarray  # float32 [k, D]: fixed centres first, then the fitted ones
    labels: np.ndarray  # int64 [n]
    d2: np.ndarray  # float32 [n]: squared distance to the assigned centre
    n_iter: int

    @property
    def inertia(self) -> float:
        return float(self.d2.sum(dtype=np.float64))


def kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    fixed: np.ndarray | None = None,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    init_size: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    quiet: bool | None = None,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding; ``fixed`` centres take part but never move.

    Stops when no label changes or when the summed squared centre shift falls below
    ``tol`` times the mean per-dimension variance of ``x`` (scikit-learn's criterion).
    A cluster that empties is moved to the row farthest from its centre. With
    ``n_init`` > 1 the run of lowest inertia (summed squared distance) is kept.
    The seeding looks at ``init_size`` random rows (default ``max(3k, 10000)``, like
    scikit-learn's MiniBatchKMeans), since each seeding step reads every row it sees.

    Args:
        x: rows ``[n, D]``.
        k: clusters to fit besides the fixed ones.
        rng: the generator for the seeding.
        fixed: centres ``[f, D]`` that stay put (labeled images).
        n_init: seeded runs to choose from.
        max_iter: Lloyd iterations at most.
        tol: relative tolerance on the centre shift.
        init_size: rows the seeding draws from (all rows when at least ``n``).
        chunk: rows per block of the distance products.
        quiet: hide the progress bar (None: show it only on a terminal).
    """
    if max_iter < 1 or n_init < 1:
        raise SelectionError(f"k-means needs max_iter and n_init >= 1, got {max_iter}, {n_init}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fixed is None:
        fixed = np.zeros((0, x.shape[1]), np.float32)
    fixed = np.asarray(fixed, np.float32)
    best: KMeansResult | None = None
    for _ in range(n_init):
        run = _lloyd(x, k, rng, fixed, max_iter, tol, init_size, chunk, quiet)
        if best is None or run.inertia < best.inertia:
            best = run
    assert best is not None
    return best


def _lloyd(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    fixed: np.ndarray,
    max_iter: int,
    tol: float,
    init_size: int | None,
    chunk: int,
    quiet: bool | None,
) -> KMeansResult:
    from tqdm.auto import tqdm

    x2 = sq_norms(x)
    nf = fixed.shape[0]
    n = x.shape[0]
    size = max(3 * k, 10000) if init_size is None else max(int(init_size), k)
    if size < n:
        sub = np.sort(rng.choice(n, size=size, replace=False))
        seeds = sub[kmeans_pp(x[sub], x2[sub], k, rng, fixed=fixed, chunk=chunk)]
    else:
        seeds = kmeans_pp(x, x2, k, rng, fixed=fixed, chunk=chunk)
    centres = np.concatenate([fixed, x[seeds]]).astype(np.float32)
    limit = tol * float(np.mean(np.var(x, axis=0, dtype=np.float64))) if n else 0.0
    prev: np.ndarray | None = None
    it = 0
    stable = False
    with tqdm(total=max_iter, unit="iter", desc="k-means", disable=quiet, leave=False) as bar:
        for it in range(1, max_iter + 1):  # noqa: B007 - `it` is reported below
            sums = np.zeros(centres.shape, dtype=np.float64)
            labels, d2 = assign(x, x2, centres, chunk, sums)
            if prev is not None and np.array_equal(labels, prev):
                stable = True
                break
            prev = labels
            counts = np.bincount(labels, minlength=centres.shape[0])
            new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
            empty = np.flatnonzero(counts[nf:] == 0) + nf
            new[:nf] = fixed
            if empty.size:
                far = np.argsort(-d2, kind="stable")[: empty.size]
                new[empty] = x[far]
            shift = float(((new[nf:] - centres[nf:]) ** 2).sum())
            centres = new
            bar.update(1)
            if shift <= limit:
                break
    if not stable:
        labels, d2 = assign(x, x2, centres, chunk)
    log.debug("k-means: %d clusters (+%d fixed), %d iterations", k, nf, it)
    return KMeansResult(centres, labels, d2, it)


# --- nearest images -------------------------------------------------------------------------
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
