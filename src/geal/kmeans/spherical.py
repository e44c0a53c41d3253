"""Spherical k-means (cosine): on the exact 2^-11 grid for ``strata``, and coarse groups.

- :func:`grid_assign`, :func:`grid_two_means` and :func:`grid_lloyd` work on unit rows
  rounded to the 2^-11 grid (:mod:`geal.grid`), where float32 similarities and
  float64 sums are exact: their results do not depend on ``chunk``, the thread count
  or the order of summation. ``strata`` cuts and refines its cells with them.
- :func:`coarse_spherical_kmeans` places the groups of the pruned coverage engine; their
  quality only changes its speed, never a ranking, so it is a few fast torch steps.
"""

from __future__ import annotations

import numpy as np
import torch

from geal.grid import to_grid
from geal.kmeans.rows import add_rows

BLOCK = 1 << 22  # similarities held at a time (16 MB of float32)


def grid_assign(
    x: np.ndarray, centres: np.ndarray, chunk: int, sums: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Most similar centre of every row (lowest index on ties), int64 ``[n]``, and that
    similarity, float32 ``[n]``.

    With ``sums`` (float64 ``[k, D]``, zeroed), every row is also added to its centre's
    sum. Rows and centres are on the grid, so the similarities are exact and the
    result does not depend on ``chunk``.
    """
    n, k = x.shape[0], centres.shape[0]
    chunk = max(1, min(chunk, BLOCK // max(k, 1)))  # a block holds at most BLOCK products
    labels = np.empty(n, dtype=np.int64)
    best = np.full(n, -np.inf, dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        lab, top = labels[a:b], best[a:b]  # views, filled in place
        lab[:] = 0
        for ca in range(0, k, BLOCK):
            s = x[a:b] @ centres[ca : ca + BLOCK].T
            j = s.argmax(1)
            v = s[np.arange(b - a), j]
            better = v > top  # strictly: an earlier block keeps its tie
            lab[better] = j[better] + ca
            top[better] = v[better]
        if sums is not None:
            add_rows(sums, lab, x[a:b].astype(np.float64))
    return labels, best


def grid_two_means(x: np.ndarray, rng: np.random.Generator, iterations: int) -> np.ndarray:
    """Spherical 2-means of the rows ``x``: a boolean mask of one side, both sides
    non-empty (``x`` holds at least 2 rows)."""
    n = x.shape[0]
    first = x[int(rng.integers(n))]
    far = np.maximum(1.0 - (x @ first).astype(np.float64), 0.0) ** 2
    total = float(far.sum())
    if total > 0:
        cum = np.cumsum(far)
        j = int(np.searchsorted(cum, rng.random() * total, side="right"))
        second = x[min(j, n - 1)]
        centres = np.stack([first, second])
        side = np.zeros(n, dtype=bool)
        for _ in range(iterations):
            s = x @ centres.T
            new = s[:, 1] > s[:, 0]
            if not new.any() or new.all():
                break
            if np.array_equal(new, side):
                break
            side = new
            sums = np.stack([x[~side].sum(0, dtype=np.float64), x[side].sum(0, dtype=np.float64)])
            centres = to_grid(sums)  # mean directions
        if side.any() and not side.all():
            return side
    # identical rows (or a degenerate split): halve in row order
    side = np.zeros(n, dtype=bool)
    side[n // 2 :] = True
    return side


def grid_lloyd(
    x: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray,
    fixed: int,
    steps: int,
    chunk: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """At most ``steps`` spherical Lloyd steps from ``centres`` (the first ``fixed`` stay
    put; a centre whose cell empties keeps its place), stopping when no row changes cell.

    Returns:
        (cell of every row, its similarity to that centre, the centres, steps run).
    """
    centres = centres.copy()
    step = 0
    for step in range(1, steps + 1):  # noqa: B007 - returned
        sums = np.zeros(centres.shape, dtype=np.float64)
        new, sim = grid_assign(x, centres, chunk, sums)
        if np.array_equal(new, labels):
            break
        labels = new
        moved = to_grid(sums[fixed:])
        keep = ~np.any(sums[fixed:] != 0, axis=1)  # an emptied cell keeps its centre
        moved[keep] = centres[fixed:][keep]
        centres[fixed:] = moved
    else:  # not converged (or no step): the cells of the last centres
        labels, sim = grid_assign(x, centres, chunk)
    return labels, sim, centres, step


def coarse_spherical_kmeans(x: np.ndarray, g: int, seed: int, iters: int = 8) -> np.ndarray:
    """Coarse unit centres for grouping (their quality only affects speed, never results)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    g = max(1, min(g, t.shape[0]))
    gen = torch.Generator().manual_seed(seed)
    c = t[torch.randperm(t.shape[0], generator=gen)[:g]].clone()
    for _ in range(iters):
        assign = (t @ c.T).argmax(1)
        s = torch.zeros_like(c).index_add_(0, assign, t)
        n = torch.bincount(assign, minlength=g).unsqueeze(1)
        c = torch.where(n > 0, s, c)
        c = c / c.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return c.numpy()
