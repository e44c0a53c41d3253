"""Exact pruned coverage for large pools (CPU).

Same state and the same draws as :class:`~geal.coverage.plain.Coverage`, so the
rankings are identical, but a pick only touches patterns whose distance can change.

Patterns are split into G coarse groups (spherical k-means on a sample) and stored group
by group (the grid copy is the plain sampler's, in another order). For a group with
centre c, members p and a new query q (all vectors on the 2^-11 grid, so |p|^2, |q|^2
and <p, q> are exact), the triangle inequality gives

    e(p, q) >= |e(q, c) - e(p, c)|      and      e(p, q) >= e(q, c) - r_c,

with e the Euclidean distance and r_c the group's radius. Since the cosine distance is
d(p, q) = 1 - <p, q> = 1 - (|p|^2 + |q|^2 - e(p, q)^2) / 2, each bound on e is a bound
on d. A whole group is skipped when its bound is at least the largest current distance
in it; inside a group, a pattern is skipped when its own bound is at least its current
distance. Only the float error of e(q, c) and e(p, c) is approximate; a margin far above
it keeps every skip safe, so no distance that would change is ever missed.

The D^2 draw is made over images: image i carries the sum of its patterns' integer
weights, and the first image whose running sum exceeds u is the image of the first
pattern whose running sum exceeds u in the plain sampler (patterns of an image are
contiguous). FDS takes the largest distance and, among equals, the lowest pattern index,
as the plain sampler does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from geal.coverage import kernels as K
from geal.coverage.state import DEFAULT_CHUNK, INIT
from geal.errors import SelectionError
from geal.grid import QUANT_ROWS, WSCALE, WSHIFT, grid_f32, quantize
from geal.internal.memory import trim_heap
from geal.kmeans.spherical import coarse_spherical_kmeans

log = logging.getLogger(__name__)

BUILD_ROWS = 512  # rows per step while building: ~10 KB of temporaries per row
IMG_BLOCK = 1024  # images per block of the D^2 weight sums


class _Grouping:
    """Two-level spherical k-means: ``coarse`` centres, each split into fine groups."""

    def __init__(self, sample: np.ndarray, n_groups: int, seed: int):
        n_coarse = int(np.clip(round(np.sqrt(n_groups)), 1, 256))
        self.coarse = coarse_spherical_kmeans(sample, n_coarse, seed)
        own = (sample @ self.coarse.T).argmax(1)
        fine, self.first = [], [0]
        for j in range(self.coarse.shape[0]):
            part = sample[own == j]
            want = max(1, round(n_groups * part.shape[0] / max(sample.shape[0], 1)))
            f = (
                coarse_spherical_kmeans(part, want, seed + 1 + j)
                if part.shape[0]
                else self.coarse[j : j + 1]
            )
            fine.append(f)
            self.first.append(self.first[-1] + f.shape[0])
        self.fine = fine
        self.centres = np.concatenate(fine)

    def assign(self, x: np.ndarray) -> np.ndarray:
        own = (x @ self.coarse.T).argmax(1)
        out = np.empty(x.shape[0], np.int64)
        for j in np.unique(own):
            rows = np.flatnonzero(own == j)
            out[rows] = self.first[j] + (x[rows] @ self.fine[j].T).argmax(1)
        return out


class PrunedCoverage:
    """Drop-in for :class:`Coverage` (cosine, CPU) that skips patterns that cannot change.

    Args:
        blocks: the patterns in canonical order, in blocks (read three times: a sample,
            the groups, the copy; peak memory is the copy, the O(M) state and one block).
        counts: patterns per image.
        group_size: mean patterns per group; smaller groups prune more but cost more
            per pick (one distance per group).
        release: called with a block's position after each step through it (lets a bank
            drop the pages of a memory-mapped shard as they are read).
    """

    def __init__(
        self,
        blocks: Sequence[np.ndarray],
        counts: np.ndarray,
        *,
        group_size: int = 256,
        chunk: int = DEFAULT_CHUNK,
        sample: int = 100_000,
        seed: int = 0,
        release: Callable[[int], None] | None = None,
    ):
        self.counts = np.asarray(counts, dtype=np.int64)
        n = self.counts.shape[0]
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.offsets[1:])
        m = int(self.offsets[-1])
        self.chunk = chunk
        if sum(int(b.shape[0]) for b in blocks) != m:
            raise ValueError("vector count does not match counts")
        dim = int(blocks[0].shape[1]) if blocks else 1
        owner_c = np.repeat(np.arange(n, dtype=np.int64), self.counts)
        # 1. groups from a sample of the patterns (each block's pages let go once sampled)
        rng = np.random.default_rng([seed, 0x67726F75])
        # ~16 sample patterns per group place the centres well enough (they only
        # affect speed); more would cost memory for nothing
        sample = min(sample, max(m // 16, 8192))
        pick = (
            np.sort(rng.choice(m, size=min(sample, m), replace=False))
            if m
            else np.zeros(0, np.int64)
        )
        starts = np.cumsum([0] + [int(b.shape[0]) for b in blocks])
        smp = np.empty((pick.size, dim), np.float32)
        at = 0
        for k, blk in enumerate(blocks):
            for a in range(0, blk.shape[0], QUANT_ROWS):  # a window of the shard at a time
                end = min(a + QUANT_ROWS, blk.shape[0])
                lo, hi = np.searchsorted(pick, starts[k] + np.array([a, end]))
                smp[at : at + hi - lo] = grid_f32(blk[pick[lo:hi] - starts[k]])
                at += hi - lo
                if release is not None:
                    release(k)
        grouping = _Grouping(smp, max(1, m // group_size), seed)
        del smp  # the centres are all the grouping keeps
        trim_heap()  # the sampling's temporaries, before the copy is allocated
        g = grouping.centres.shape[0]
        c64 = grouping.centres.astype(np.float64)
        csq = (c64 * c64).sum(1)
        # 2. each pattern's group, block by block
        assign = np.empty(m, np.int64)
        for k, blk in enumerate(blocks):
            for a in range(0, blk.shape[0], BUILD_ROWS):
                x = grid_f32(blk[a : a + BUILD_ROWS])
                assign[starts[k] + a : starts[k] + a + x.shape[0]] = grouping.assign(x)
                if release is not None:  # the pages read so far: one step resident at most
                    release(k)
        self.perm = np.argsort(assign, kind="stable").astype(np.int64)
        self.goff = np.zeros(g + 1, np.int64)
        np.cumsum(np.bincount(assign, minlength=g), out=self.goff[1:])
        self.inv = np.empty(m, np.int64)
        self.inv[self.perm] = np.arange(m, dtype=np.int64)
        # 3. the grid copy in group order (a group's rows are contiguous for the scans;
        # the copy is scattered into place block by block, never held twice), |p|^2
        # (exact: sums of grid squares) and e(p, c) in float64 (no cancellation error
        # worth the name)
        self.units = np.empty((m, dim), np.uint16)
        self.psq = np.empty(m, np.float32)
        self.epc = np.empty(m, np.float32)
        for k, blk in enumerate(blocks):
            for a in range(0, blk.shape[0], BUILD_ROWS):
                u = quantize(blk[a : a + BUILD_ROWS])[0]
                canon = np.arange(starts[k] + a, starts[k] + a + u.shape[0])
                pos = self.inv[canon]
                self.units[pos] = u
                x = u.view(np.float16).astype(np.float64)
                sq = (x * x).sum(1)
                own = assign[canon]
                e2 = sq + csq[own] - 2 * np.einsum("ij,ij->i", x, c64[own])
                self.psq[pos] = sq
                self.epc[pos] = np.sqrt(np.maximum(e2, 0))
                if release is not None:
                    release(k)
        del assign
        self.owner = owner_c[self.perm]
        self.owner_c = owner_c
        self.centres32 = grouping.centres.astype(np.float32)
        self.csq = csq
        self.g = g
        self.scale = np.float32(WSCALE)
        self.picked = np.zeros(n, dtype=bool)
        self.d = np.full(m, INIT, np.float32)
        self.gmax = np.zeros(g, np.float32)
        self.garg = np.zeros(g, np.int64)
        self.changed = np.zeros(m, np.int64)
        self.old = np.zeros(m, np.float32)
        self.nchanged = np.zeros(g, np.int64)
        self.ncomputed = np.zeros(g, np.int64)
        self.computed = 0  # rows whose distances a pick computed, summed (diagnostics)
        self.wimg = np.zeros(n, np.int64)
        self.wblk = np.zeros((n + IMG_BLOCK - 1) // IMG_BLOCK, np.int64)
        self._rad = np.zeros(g, np.float64)
        self._sqmax = np.zeros(g, np.float64)
        for j in range(g):
            a, b = self.goff[j], self.goff[j + 1]
            if b > a:
                self._rad[j] = self.epc[a:b].max()
                self._sqmax[j] = self.psq[a:b].max()
        self._recount_all()
        trim_heap()  # the build's temporaries
        self.visited = 0  # patterns of visited groups, for the benchmark

    # --- shared interface ---------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.counts.shape[0])

    @property
    def selectable(self) -> np.ndarray:
        return (self.counts > 0) & ~self.picked

    def distances(self) -> np.ndarray:
        out = np.empty_like(self.d)
        out[self.perm] = self.d
        return out

    def radius(self) -> float:
        return max(float(self.gmax.max()) if self.g else 0.0, 0.0)

    def total_weight(self) -> int:
        return int(self.wblk.sum())

    def farthest(self) -> int:
        top = self.gmax.max()
        if top < 0:
            raise SelectionError("every image with patterns is already picked")
        p = int(self.garg[self.gmax == top].min())
        return int(self.owner_c[p])

    def draw(self, rng: np.random.Generator) -> int:
        total = self.total_weight()
        if total <= 0:
            left = np.flatnonzero(self.selectable)
            if left.size == 0:
                raise SelectionError("every image with patterns is already picked")
            return int(left[rng.integers(left.size)])
        u = np.int64(rng.integers(total))
        cum = np.cumsum(self.wblk)
        b = int(np.searchsorted(cum, u, side="right"))
        before = int(cum[b - 1]) if b > 0 else 0
        lo = b * IMG_BLOCK
        return int(K.draw_image(self.wimg, lo, min(lo + IMG_BLOCK, self.n), np.int64(u - before)))

    def add(self, images: Sequence[int]) -> None:
        images = [int(i) for i in images]
        if not images:
            return
        for i in images:
            if self.counts[i] == 0:
                raise SelectionError(f"image {i} has no patterns (unreadable) and cannot be picked")
        rows_c = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in images])
        rows = self.inv[rows_c]
        q = self.units[rows].view(np.float16).astype(np.float32)
        self.picked[images] = True
        if len(rows) > 16:
            self._add_many(q, rows)
            return
        qsq = (q * q).sum(1, dtype=np.float32)
        # distances to the G centres: float32 products (the bulk of the per-pick cost
        # when G is large) with an error far below E_MARGIN for distances above 0.1
        eqc64 = K.centre_distances(q, self.centres32, self.csq, qsq)
        near = eqc64 < 0.1  # too close for a safe bound: no bound, those rows are computed
        eqc = np.where(near, -1.0, eqc64).astype(np.float32)
        eqc64 = np.where(near, 0.0, eqc64 - K.E_MARGIN)
        # remove the picked patterns first; their groups must recount their maximum
        own = np.unique(np.searchsorted(self.goff, rows, side="right") - 1)
        for i in images:
            w = self.wimg[i]
            self.wimg[i] = 0
            self.wblk[i // IMG_BLOCK] -= w
        self.d[rows] = -1.0
        # 2. group-level bound: min over q of the distance bound to any member
        lb = np.maximum(eqc64 - self._rad[None, :], 0)
        dlb = (1.0 - (self._sqmax[None, :] + qsq[:, None] - lb * lb) * 0.5).min(0) - K.MARGIN
        visit = np.flatnonzero(dlb < self.gmax)
        visit = np.union1d(visit, own).astype(np.int64)
        rows_visited = int((self.goff[visit + 1] - self.goff[visit]).sum())
        self.visited += rows_visited
        K.update_groups(
            rows_visited, visit, self.goff, self.units, self.psq, self.epc, self.perm, self.d,
            q, qsq, eqc, self.gmax, self.garg, self.changed, self.old, self.nchanged,
            self.ncomputed,
        )  # fmt: skip
        self.computed += int(self.ncomputed[visit].sum())
        K.apply_weights(
            visit, self.goff, self.changed, self.old, self.nchanged, self.d, self.owner,
            self.wimg, self.wblk, self.scale, IMG_BLOCK,
        )  # fmt: skip

    # --- helpers ------------------------------------------------------------------------
    def _add_many(self, q: np.ndarray, rows: np.ndarray) -> None:
        m = self.units.shape[0]
        for a in range(0, m, self.chunk):
            x = self.units[a : a + self.chunk].view(np.float16).astype(np.float32)
            new = np.maximum(np.float32(1.0) - x @ q.T, 0).astype(np.float32).min(1)
            cur = self.d[a : a + self.chunk]
            np.minimum(cur, new, out=cur, where=cur >= 0)
        self.d[rows] = -1.0
        self._recount_all()

    def _recount_all(self) -> None:
        K.recount(self.goff, self.d, self.perm, self.owner, self.gmax, self.garg)
        w = np.zeros(self.d.shape[0], np.int64)
        pos = self.d > 0
        di = np.rint(self.d[pos].astype(np.float64) * float(self.scale)).astype(np.int64)
        w[pos] = (di * di) >> WSHIFT
        self.wimg[:] = 0
        np.add.at(self.wimg, self.owner, w)
        self.wblk[:] = np.add.reduceat(self.wimg, np.arange(0, self.n, IMG_BLOCK)) if self.n else 0
