"""k-means on rows: chunked Lloyd iterations with greedy k-means++ seeding (Euclidean).

Serves the baselines on global features (``kmeans``, ``typiclust``, ``probcover``'s
pseudo-labels, ``activeft``'s start) through :func:`kmeans`. No rows x centres matrix is
held whole: every product works on ``chunk`` x ``chunk`` blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from geal.errors import SelectionError
from geal.grid import DEFAULT_CHUNK
from geal.internal.progress import Progress

log = logging.getLogger(__name__)


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x).astype(np.float32)


def sq_dist(a: np.ndarray, b: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[len(a), len(b)]`` (clamped at zero)."""
    d = a @ b.T
    d *= -2.0
    d += a2[:, None]
    d += b2[None, :]
    return np.maximum(d, 0.0, out=d)


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
    progress: bool | None = None,
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
        progress: progress display (see :class:`geal.internal.progress.Progress`).
    """
    if max_iter < 1 or n_init < 1:
        raise SelectionError(f"k-means needs max_iter and n_init >= 1, got {max_iter}, {n_init}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fixed is None:
        fixed = np.zeros((0, x.shape[1]), np.float32)
    fixed = np.asarray(fixed, np.float32)
    best: KMeansResult | None = None
    for _ in range(n_init):
        run = _lloyd(x, k, rng, fixed, max_iter, tol, init_size, chunk, progress)
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
    progress: bool | None,
) -> KMeansResult:
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
    with Progress(max_iter, unit="iter", desc="k-means", progress=progress, leave=False) as bar:
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
