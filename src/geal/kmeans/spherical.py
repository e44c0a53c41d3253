"""Spherical k-means (cosine): on the exact 2^-11 grid for ``strata``, and coarse groups.

- :func:`grid_assign`, :func:`grid_two_means`, :func:`grid_lloyd` and
  :func:`candidate_lloyd` work on unit rows rounded to the 2^-11 grid
  (:mod:`geal.grid`), where float32 similarities and float64 sums are exact: their
  results do not depend on ``chunk``, the thread count or the order of summation.
  ``strata`` cuts and refines its cells with them.
- :func:`candidate_lloyd` is :func:`grid_lloyd` for many centres: a row may only move to
  the ``c`` centres nearest its own (k^2-means: Agustsson, Timofte and Van Gool, "k^2-means
  for fast and accurate large scale clustering", ECML-PKDD 2017), so a step costs
  O(N c D) instead of O(N k D). Bounds on how far the centres drifted skip what cannot
  change: a row whose bound on its other candidates stays below its own centre's
  similarity is not compared with them (Hamerly), and the candidate lists are kept
  among each centre's ``NEAR * c`` nearest while a bound on the rest allows
  (:class:`_Lists`). With ``c >= k`` every centre is a candidate and it is
  :func:`grid_lloyd` exactly.
- :func:`coarse_spherical_kmeans` places the groups of the pruned coverage engine; their
  quality only changes its speed, never a ranking, so it is a few fast torch steps.
"""

from __future__ import annotations

import functools
import types

import numpy as np
import torch
from numba import njit, prange

from geal.grid import to_grid
from geal.kmeans.rows import add_rows

BLOCK = 1 << 22  # similarities held at a time (16 MB of float32)
SPLIT_ROWS = 4096  # rows of a 2-means block; its partial sums are exact, so any split
LOW = np.float32(-4.0)  # below any similarity of grid rows (the kernels avoid infinities)


# --- kernels (prior validation assumed: grid rows and centres, float32, C order) -------
def _split(
    x: np.ndarray,  # float32 [N, D] grid rows
    rows: np.ndarray,  # int64 [n] the rows split
    c0: np.ndarray,  # float32 [D]
    c1: np.ndarray,  # float32 [D]
    side: np.ndarray,  # bool [n] out: closer to c1 (strictly)
    sums: np.ndarray,  # float64 [nb, 2, D] out: each block's sums of either side
    block: int,
) -> None:
    """One 2-means assignment of ``x[rows]`` and the two sides' sums, block by block."""
    n, dim = rows.shape[0], x.shape[1]
    for blk in prange(sums.shape[0]):
        sums[blk] = 0.0
        for i in range(blk * block, min(n, (blk + 1) * block)):
            r = rows[i]
            a = np.float32(0.0)
            b = np.float32(0.0)
            for t in range(dim):
                a += x[r, t] * c0[t]
                b += x[r, t] * c1[t]
            s = b > a
            side[i] = s
            k = 1 if s else 0
            for t in range(dim):
                sums[blk, k, t] += x[r, t]


def _sims(x: np.ndarray, rows: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:
    """out[i] = x[rows[i]] . c (float32, exact on the grid)."""
    dim = x.shape[1]
    for i in prange(rows.shape[0]):
        r = rows[i]
        a = np.float32(0.0)
        for t in range(dim):
            a += x[r, t] * c[t]
        out[i] = a


def _assign(
    x: np.ndarray,  # float32 [N, D] grid rows
    order: np.ndarray,  # int64 [m] rows grouped by cell
    starts: np.ndarray,  # int64 [k + 1] cell a's rows: order[starts[a]:starts[a + 1]]
    cand: np.ndarray,  # int64 [k, c] candidates of each cell (its own centre among them)
    centres: np.ndarray,  # float32 [k, D]
    changed: np.ndarray,  # bool [k] cells whose candidates changed
    shifted: np.ndarray,  # bool [k] centres that moved
    grow: np.ndarray,  # float64 [k] most the similarity to a cell's other candidates grew
    redo: np.ndarray,  # bool [N] rows to compare with every candidate
    labels: np.ndarray,  # int64 [N] in: own cell; out: most similar candidate (lowest index)
    sim: np.ndarray,  # float32 [N] in/out: similarity to the own centre
    up: np.ndarray,  # float64 [N] in/out: bound on the similarity to the other candidates
) -> None:
    """Most similar candidate of every row (lowest index on ties). A row of a cell whose
    candidates did not change and not in ``redo`` is only compared with its own centre
    when its bound on the others (grown by ``grow``) says none of them can beat it
    (Hamerly's bound): the answer is then its own cell, as a full comparison would say."""
    c, dim = cand.shape[1], x.shape[1]
    for a in prange(starts.shape[0] - 1):
        for i in range(starts[a], starts[a + 1]):
            p = order[i]
            if not changed[a] and not redo[p]:
                if grow[a] == 0 and not shifted[a]:
                    continue
                up[p] += grow[a]
                if shifted[a]:
                    s = np.float32(0.0)
                    for t in range(dim):
                        s += x[p, t] * centres[a, t]
                    sim[p] = s
                if sim[p] > up[p]:
                    continue
            best = LOW
            second = LOW
            arg = -1
            for m in range(c):
                j = cand[a, m]
                s = np.float32(0.0)
                for t in range(dim):
                    s += x[p, t] * centres[j, t]
                if s > best or (s == best and j < arg):
                    second = best
                    best = s
                    arg = j
                elif s > second:
                    second = s
            labels[p] = arg
            sim[p] = best
            up[p] = second


def _runner_up(
    x: np.ndarray,  # float32 [N, D] grid rows
    labels: np.ndarray,  # int64 [N] own centre
    cand: np.ndarray,  # int64 [k, c]
    centres: np.ndarray,  # float32 [k, D]
    out: np.ndarray,  # float32 [N] out: most similar other candidate, -1 if none
) -> None:
    """Similarity of every row to the most similar candidate of its cell but its own."""
    c, dim = cand.shape[1], x.shape[1]
    for p in prange(x.shape[0]):
        a = labels[p]
        best = np.float32(-1.0)
        found = False
        for m in range(c):
            j = cand[a, m]
            if j == a:
                continue
            s = np.float32(0.0)
            for t in range(dim):
                s += x[p, t] * centres[j, t]
            if not found or s > best:
                best = s
                found = True
        out[p] = best


def _top(
    s: np.ndarray,  # float32 [r, k] similarities of r centres to all k
    own: np.ndarray,  # int64 [r] which centre each row is
    out: np.ndarray,  # int64 [r, c] out: own centre and the c - 1 most similar others
    thr: np.ndarray,  # float32 [r] out: least similarity among those others
) -> None:
    """Each centre's candidates, ascending: itself and the ``c - 1`` most similar other
    centres (higher similarity first, then lower index)."""
    r, k = s.shape
    c = out.shape[1]
    for i in prange(r):
        v = s[i].copy()
        v[own[i]] = np.float32(8.0)  # own: always in
        kth = np.partition(v, k - c)[k - c]  # the c-th largest: those above are in,
        m = 0  # then those equal to it, lowest index first
        for j in range(k):
            if v[j] > kth:
                out[i, m] = j
                m += 1
        for j in range(k):
            if m == c:
                break
            if v[j] == kth:
                out[i, m] = j
                m += 1
        thr[i] = kth
        out[i].sort()


def _top_from(
    centres: np.ndarray,  # float32 [k, D]
    rows: np.ndarray,  # int64 [r] the centres whose candidates are wanted
    near: np.ndarray,  # int64 [k, B] each centre's nearest (itself among them), ascending
    out: np.ndarray,  # int64 [r, c] out: as _top, chosen among ``near`` only
    thr: np.ndarray,  # float32 [r] out: least similarity among the chosen others
) -> None:
    """:func:`_top` of the centres ``rows``, searching only their ``near`` lists (the
    same scan in ascending index order, so the same answer when the c nearest are
    among them)."""
    c, dim = out.shape[1], centres.shape[1]
    nb = near.shape[1]
    for i in prange(rows.shape[0]):
        r = rows[i]
        s = np.empty(nb, np.float32)
        for m in range(nb):
            j = near[r, m]
            if j == r:
                s[m] = np.float32(8.0)  # own: always in
            else:
                a = np.float32(0.0)
                for t in range(dim):
                    a += centres[r, t] * centres[j, t]
                s[m] = a
        val = np.empty(c, np.float32)
        idx = out[i]
        for m in range(c):
            idx[m] = near[r, m]
            val[m] = s[m]
        worst = 0
        for m in range(1, c):
            if val[m] < val[worst] or (val[m] == val[worst] and idx[m] > idx[worst]):
                worst = m
        for m in range(c, nb):
            if s[m] > val[worst]:
                val[worst] = s[m]
                idx[worst] = near[r, m]
                worst = 0
                for q in range(1, c):
                    if val[q] < val[worst] or (val[q] == val[worst] and idx[q] > idx[worst]):
                        worst = q
        thr[i] = val[worst]
        idx.sort()


def _came_near(
    sims: np.ndarray,  # float32 [k, J] similarities of every centre to the centres ``jump``
    jump: np.ndarray,  # int64 [J]
    near: np.ndarray,  # int64 [k, B] each centre's nearest, ascending
    out: np.ndarray,  # float64 [k] out: most similar centre of ``jump`` outside ``near``
) -> None:
    """Each centre's greatest similarity to a centre of ``jump`` outside its nearest
    (-4 if none)."""
    nb = near.shape[1]
    for i in prange(sims.shape[0]):
        best = LOW
        for m in range(jump.shape[0]):
            j = jump[m]
            if j == i or sims[i, m] <= best:
                continue
            at = np.searchsorted(near[i], j)
            if at == nb or near[i, at] != j:
                best = sims[i, m]
        out[i] = best


@njit(cache=True)
def _group(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by cell (counting sort, pool order within a cell) and the cells'
    starts; rows without a cell (-1) are left out."""
    starts = np.zeros(k + 1, np.int64)
    for lab in labels:
        if lab >= 0:
            starts[lab + 1] += 1
    for a in range(k):
        starts[a + 1] += starts[a]
    pos = starts[:-1].copy()
    order = np.empty(starts[k], np.int64)
    for p in range(labels.shape[0]):
        lab = labels[p]
        if lab >= 0:
            order[pos[lab]] = p
            pos[lab] += 1
    return order, starts


@njit(cache=True)
def _move(
    x: np.ndarray, rows: np.ndarray, old: np.ndarray, new: np.ndarray, sums: np.ndarray
) -> None:
    """Move each of ``rows`` from its ``old`` cell's sum (none if -1) to its ``new`` one's
    (exact: float64 sums of grid values, in any order)."""
    dim = x.shape[1]
    for p in rows:
        o, q = old[p], new[p]
        for t in range(dim):
            v = np.float64(x[p, t])
            if o >= 0:
                sums[o, t] -= v
            sums[q, t] += v


@functools.cache
def _kernels() -> types.SimpleNamespace:
    """The threaded kernels, compiled threaded and serial (on first use: the coverage
    package, which owns :class:`~geal.coverage.kernels.Twin`, imports this module)."""
    from geal.coverage.kernels import Twin

    return types.SimpleNamespace(
        split=Twin(_split, fastmath=True),
        sims=Twin(_sims, fastmath=True),
        assign=Twin(_assign, fastmath=True),
        runner_up=Twin(_runner_up, fastmath=True),
        top=Twin(_top),  # exact comparisons only
        top_from=Twin(_top_from, fastmath=True),
        came_near=Twin(_came_near),
    )


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


def grid_two_means(
    x: np.ndarray,
    rng: np.random.Generator,
    iterations: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Spherical 2-means of the rows ``x[rows]`` (default: all), read in place (no copy
    of them): a boolean mask over ``rows`` of one side, both sides non-empty (at least 2
    rows)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows = np.arange(x.shape[0], dtype=np.int64) if rows is None else rows.astype(np.int64)
    n = rows.shape[0]
    k = _kernels()
    first = x[rows[int(rng.integers(n))]]
    s = np.empty(n, np.float32)
    k.sims(n, x, rows, first, s)
    far = np.maximum(1.0 - s.astype(np.float64), 0.0) ** 2
    total = float(far.sum())
    if total > 0:
        cum = np.cumsum(far)
        j = int(np.searchsorted(cum, rng.random() * total, side="right"))
        second = x[rows[min(j, n - 1)]]
        centres = np.stack([first, second])
        side = np.zeros(n, dtype=bool)
        new = np.empty(n, dtype=bool)
        part = np.empty(((n + SPLIT_ROWS - 1) // SPLIT_ROWS, 2, x.shape[1]), np.float64)
        for _ in range(iterations):
            k.split(n, x, rows, centres[0], centres[1], new, part, SPLIT_ROWS)
            if not new.any() or new.all():
                break
            if np.array_equal(new, side):
                break
            side, new = new, side
            centres = to_grid(part.sum(0))  # mean directions (exact sums, any order)
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


def candidate_lists(
    centres: np.ndarray, c: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates of the centres ``rows`` (default: all): each centre and the ``c - 1``
    most similar others (lowest index on ties), ascending, int64 ``[r, c]``; and the
    least similarity among those others, float32 ``[r]`` (+8 with ``c = 1``). Exact on
    the grid, ``BLOCK`` similarities at a time."""
    k = centres.shape[0]
    c = max(1, min(c, k))
    rows = np.arange(k, dtype=np.int64) if rows is None else rows.astype(np.int64)
    out = np.empty((rows.size, c), np.int64)
    thr = np.empty(rows.size, np.float32)
    step = max(1, BLOCK // max(k, 1))
    top = _kernels().top
    for a in range(0, rows.size, step):
        b = min(a + step, rows.size)
        s = centres[rows[a:b]] @ centres.T
        top((b - a) * k // 64, s, rows[a:b], out[a:b], thr[a:b])
    return out, thr


NEAR = 4  # a centre's candidates are searched among its NEAR * c nearest centres
TAU = 0.01  # centres that moved farther in a step are checked exactly against every list
SLACK = 1e-6  # added to every bound: far above the float64 rounding of the drifts


class _Lists:
    """Every centre's ``c`` candidates (:func:`candidate_lists`), kept up to date as the
    centres move without comparing every centre with every other at each step.

    Each centre also keeps its ``B = NEAR * c`` nearest centres as they were when last
    found among all centres, and ``out``, a bound on its similarity to every centre
    outside them (the least similarity among them when found). A centre moved by ``d``
    changes its similarity to any other by at most ``rho * d`` (``rho`` bounds the grid
    vectors' norms), so after a step ``out`` grows by ``rho`` times the centre's own
    drift and the largest drift of the centres that moved at most ``TAU``; the centres
    that moved farther are compared exactly with every centre, and ``out`` rises to
    their similarity where it is higher. While a centre's ``c``-th candidate is more
    similar than ``out``, its candidates are the nearest ``c`` among its ``B`` (found
    there by the same scan as among all); otherwise its ``B`` nearest are found again
    among all centres. The lists are therefore exactly :func:`candidate_lists`', step
    after step.
    """

    def __init__(self, centres: np.ndarray, c: int):
        k = centres.shape[0]
        self.c = c
        self.b = min(k, NEAR * c)
        self.rho = 1.0 + np.sqrt(centres.shape[1]) * 2.0**-11  # norm bound of grid vectors
        self.near = np.empty((k, self.b), np.int64)
        self.out = np.empty(k, np.float64)
        self.cand = np.empty((k, c), np.int64)
        self.thr = np.empty(k, np.float32)
        self.found = 0  # centres whose nearest were found among all (a statistic)
        self._find(centres, np.arange(k, dtype=np.int64))

    def _find(self, centres: np.ndarray, rows: np.ndarray) -> None:
        near, far = candidate_lists(centres, self.b, rows)
        self.near[rows] = near
        self.out[rows] = far if self.b < centres.shape[0] else LOW  # LOW: all centres held
        self._choose(centres, rows)
        self.found += rows.size

    def _choose(self, centres: np.ndarray, rows: np.ndarray) -> None:
        cand = np.empty((rows.size, self.c), np.int64)
        thr = np.empty(rows.size, np.float32)
        _kernels().top_from(rows.size * self.b // 64, centres, rows, self.near, cand, thr)
        self.cand[rows] = cand
        self.thr[rows] = thr

    def update(self, centres: np.ndarray, shifted: np.ndarray, drift: np.ndarray) -> np.ndarray:
        """After the centres ``shifted`` moved by ``drift`` (float64 [k]): bring the lists
        up to date; returns the centres whose candidates changed."""
        k = centres.shape[0]
        old = self.cand.copy()
        rows = np.flatnonzero(shifted | shifted[self.near].any(1))
        if rows.size:
            self._choose(centres, rows)
        if self.b < k:  # else every centre is held: nothing can come from outside
            jump = np.flatnonzero(drift > TAU)
            most = float(drift[drift <= TAU].max(initial=0.0))
            self.out += self.rho * (drift + most) + SLACK
            step = max(1, BLOCK // k)
            came = np.empty(k, dtype=np.float64)
            for a in range(0, jump.size, step):
                j = jump[a : a + step]
                sims = centres @ centres[j].T  # exact on the grid
                _kernels().came_near(k * j.size // 64, sims, j, self.near, came)
                np.maximum(self.out, came, out=self.out)
            stale = np.flatnonzero(~(self.thr > self.out))
            if stale.size:
                self._find(centres, stale)
        return (self.cand != old).any(1)


def candidate_lloyd(
    x: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray,
    fixed: int,
    steps: int,
    chunk: int,
    candidates: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`grid_lloyd` where a row may only move to the ``candidates`` centres nearest
    its own (its own among them; k^2-means). Rows of no cell (``labels`` -1) are
    assigned to the nearest of all centres first.

    Work a step can skip, it skips without changing the answer: a row is compared with
    all its cell's candidates only when they changed, when it changed cell in the last
    step, or when its bound on their similarities (the second best it last saw, grown
    by their drifts since) reaches its own centre's; otherwise it stays. The candidate
    lists are kept by :class:`_Lists`. Cell sums are kept up to date by the rows that
    move. All of it is exact on the grid, so the result does not depend on ``chunk`` or
    the thread count, and with ``candidates`` at least the number of centres it is
    :func:`grid_lloyd`'s.

    Returns:
        (cell of every row, its similarity to that centre, the centres, steps run).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, k = x.shape[0], centres.shape[0]
    c = max(1, min(candidates, k))
    centres = np.ascontiguousarray(centres, dtype=np.float32).copy()
    labels = labels.astype(np.int64)
    sums = np.zeros(centres.shape, dtype=np.float64)
    _move(x, np.flatnonzero(labels >= 0), np.full(n, -1, np.int64), labels, sums)
    lists = _Lists(centres, c) if c < k else None
    # without lists, every centre is a candidate of every cell, whatever moves
    cand = lists.cand if lists is not None else np.tile(np.arange(k, dtype=np.int64), (k, 1))
    rho = 1.0 + np.sqrt(x.shape[1]) * 2.0**-11  # bound on the norms of grid rows
    changed = np.ones(k, dtype=bool)
    shifted = np.zeros(k, dtype=bool)
    grow = np.zeros(k, dtype=np.float64)
    redo = np.ones(n, dtype=bool)
    sim = np.zeros(n, dtype=np.float32)
    up = np.zeros(n, dtype=np.float64)
    assign = _kernels().assign

    def visit() -> np.ndarray:
        new = labels.copy()
        order, starts = _group(labels, k)
        assign(n, x, order, starts, cand, centres, changed, shifted, grow, redo, new, sim, up)
        lost = np.flatnonzero(labels < 0)
        for a in range(0, lost.size, chunk):  # rows of no cell: all centres
            r = lost[a : a + chunk]
            new[r], sim[r] = grid_assign(x[r], centres, chunk)
        return new

    step = 0
    for step in range(1, steps + 1):  # noqa: B007 - returned
        new = visit()
        moved_rows = np.flatnonzero(new != labels)
        if moved_rows.size == 0:
            break
        _move(x, moved_rows, labels, new, sums)
        labels = new
        moved = to_grid(sums[fixed:])
        keep = ~np.any(sums[fixed:] != 0, axis=1)  # an emptied cell keeps its centre
        moved[keep] = centres[fixed:][keep]
        shifted = np.zeros(k, dtype=bool)
        shifted[fixed:] = (moved != centres[fixed:]).any(1)
        drift = np.zeros(k, dtype=np.float64)
        drift[fixed:] = np.linalg.norm(
            moved.astype(np.float64) - centres[fixed:].astype(np.float64), axis=1
        )
        centres[fixed:] = moved
        if lists is not None:
            changed = lists.update(centres, shifted, drift)
            cand = lists.cand
        else:
            changed = np.zeros(k, dtype=bool)
        # how much a row's similarity to the other candidates of its cell can have grown
        other = np.where(cand == np.arange(k)[:, None], 0.0, drift[cand])
        grow = other.max(1) * rho
        grow[grow > 0] += SLACK
        redo = np.zeros(n, dtype=bool)
        redo[moved_rows] = True
    else:  # not converged (or no step): the cells of the last centres
        labels = visit()
    return labels, sim, centres, step


def candidate_runner_up(
    x: np.ndarray, centres: np.ndarray, labels: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Similarity of every row to the most similar candidate of its cell (``cand`` from
    :func:`candidate_lists`) other than its own centre, float32 ``[n]``; -1 when the cell
    has no other candidate. Exact on the grid."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape[0], np.float32)
    _kernels().runner_up(
        x.shape[0] * cand.shape[1] // 64,
        x,
        labels.astype(np.int64),
        cand,
        np.ascontiguousarray(centres, dtype=np.float32),
        out,
    )
    return out


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
