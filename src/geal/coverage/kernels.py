"""Numba kernels of the coverage engine (plain and pruned) and of ``kernelcover``.

Patterns are unit vectors rounded to a fixed grid of 2^-11 and stored as float16 bits
(:mod:`geal.grid`). On that grid every product is a multiple of 2^-22 and every
partial sum of a dot product stays below 2 in magnitude (Cauchy-Schwarz), so float32
accumulation is EXACT in any order: the kernels may vectorise and reorder freely;
chunked, threaded, BLAS and GPU results are bit-identical, and rankings do not depend on
how the work was split.

A kernel that loops over independent blocks is written once and compiled twice by
:class:`Twin`: threaded (``prange``) for big updates, and in the calling thread below
:data:`SERIAL_BELOW` rows of work, where a parallel region costs more in
synchronisation than it saves. Both compile from the same body, so they cannot drift.

Prior validation is assumed: the callers (:mod:`geal.coverage.plain`,
:mod:`geal.coverage.pruned`) check shapes, dtypes and distances.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from geal.grid import WSHIFT

SERIAL_BELOW = 65536  # rows of work: below this one thread beats a parallel region
MARGIN = np.float32(1e-4)  # pruning, on distances: >> float32 rounding in the bound arithmetic
E_MARGIN = 1e-3  # pruning, on e(q, c) from float32 products: >> their error for e > 0.1


class Twin:
    """One kernel body compiled threaded and serial; a call picks by the work it has.

    Args:
        fn: the body, looping over independent items with ``prange`` (which is ``range``
            in the serial compilation).
        flags: numba ``njit`` options shared by both (e.g. ``fastmath=True``).
    """

    def __init__(self, fn: Callable[..., Any], **flags: Any):
        self.parallel = njit(parallel=True, cache=True, **flags)(fn)
        # a distinct function object (and qualified name) so the two on-disk caches differ
        twin = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
        )
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__doc__ = fn.__doc__
        self.serial = njit(cache=True, **flags)(twin)
        self.__doc__ = fn.__doc__

    def __call__(self, work: int, *args: Any) -> Any:
        """Run on ``args``; ``work`` (rows to visit) chooses threaded or serial."""
        return (self.parallel if work >= SERIAL_BELOW else self.serial)(*args)


@njit(inline="always")
def _decode(h: np.uint16) -> np.uint32:
    """float16 bits -> float32 bits, for zero and normal numbers (all grid values are)."""
    x = np.uint32(h)
    em = x & np.uint32(0x7FFF)
    if em == 0:
        return (x & np.uint32(0x8000)) << np.uint32(16)
    return ((x & np.uint32(0x8000)) << np.uint32(16)) | (
        (em << np.uint32(13)) + np.uint32(0x38000000)
    )


@njit(inline="always")
def weight(d: np.float32, scale: np.float32) -> np.int64:
    """Integer D^2 weight of a distance (0 for picked patterns, d < 0)."""
    if d <= 0:
        return np.int64(0)
    di = np.int64(np.rint(d * scale))
    return (di * di) >> np.int64(WSHIFT)


@njit(cache=True)
def euclid_from_dot(na: np.float32, nq: np.float32, dot: np.float32) -> np.float32:
    """||a - q|| from norms and the exact unit dot, evaluated exactly as numpy and torch do
    (no fused multiply-add: this function is compiled without fast-math)."""
    sq = na * na + nq * nq - np.float32(2.0) * na * nq * dot
    if sq > 0:
        return np.float32(np.sqrt(sq))
    return np.float32(0.0)


@njit(inline="always")
def _update_block(
    b: int,
    units: np.ndarray,  # uint16 [M, D] float16 bits
    q: np.ndarray,  # float32 [k, D] grid values
    qnorm: np.ndarray,  # float32 [k] (euclidean) or empty
    norms: np.ndarray,  # float32 [M] (euclidean) or empty
    d: np.ndarray,  # float32 [M], -1 for picked
    blk_sum: np.ndarray,  # int64 [nb]
    blk_max: np.ndarray,  # float32 [nb]
    blk_arg: np.ndarray,  # int64 [nb]
    block: int,
    scale: np.float32,
    euclid: bool,
) -> None:
    """d = min(d, dist(row, q)) for the rows of block b, then its sum of weights and max."""
    m, dim = units.shape
    k = q.shape[0]
    lo = b * block
    hi = min(lo + block, m)
    buf = np.empty(dim, np.uint32)
    row = buf.view(np.float32)
    s = np.int64(0)
    mx = np.float32(-2.0)
    arg = lo
    for r in range(lo, hi):
        dr = d[r]
        if dr >= 0 and k > 0:
            for i in range(dim):
                buf[i] = _decode(units[r, i])
            best = dr
            for j in range(k):
                acc = np.float32(0.0)
                for i in range(dim):
                    acc += row[i] * q[j, i]
                if euclid:
                    dist = euclid_from_dot(norms[r], qnorm[j], acc)
                else:
                    dist = np.float32(1.0) - acc
                    if dist < 0:
                        dist = np.float32(0.0)
                if dist < best:
                    best = dist
            d[r] = best
            dr = best
        if dr > mx:
            mx = dr
            arg = r
        s += weight(dr, scale)
    blk_sum[b] = s
    blk_max[b] = mx
    blk_arg[b] = arg


def _update_blocks(units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid):
    """d = min(d, dist(row, q)) for every row, then each block's weight sum and max."""
    for b in prange(blk_sum.shape[0]):
        _update_block(b, units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid)


update_blocks = Twin(_update_blocks, fastmath=True)


@njit(cache=True)
def draw_in_block(d: np.ndarray, lo: int, hi: int, u: np.int64, scale: np.float32) -> int:
    """Pattern p in [lo, hi) where the running weight first exceeds u."""
    acc = np.int64(0)
    for r in range(lo, hi):
        acc += weight(d[r], scale)
        if acc > u:
            return r
    return -1


@njit(cache=True)
def block_stats(
    d: np.ndarray,
    blk_sum: np.ndarray,
    blk_max: np.ndarray,
    blk_arg: np.ndarray,
    block: int,
    scale: np.float32,
) -> None:
    """Recompute every block's weight sum and (first) argmax from d."""
    m = d.shape[0]
    for b in range(blk_sum.shape[0]):
        lo = b * block
        hi = min(lo + block, m)
        s = np.int64(0)
        mx = np.float32(-2.0)
        arg = lo
        for r in range(lo, hi):
            dr = d[r]
            if dr > mx:
                mx = dr
                arg = r
            s += weight(dr, scale)
        blk_sum[b] = s
        blk_max[b] = mx
        blk_arg[b] = arg


@njit(parallel=True, cache=True)
def kernel_gains(
    dots: np.ndarray,  # float32 [n, S]: an image's largest dot product with each client
    rows: np.ndarray,  # int64 [r]: the rows of ``dots`` to evaluate
    cover: np.ndarray,  # float64 [S]: each client's coverage by the picked set
    h: float,  # kernel scale
    out: np.ndarray,  # float64 [r]
) -> None:
    """Facility-location gains: out[r] = sum_c max(0, exp(-max(0, 1 - dots) / h) - cover).

    One pass, no temporaries; each row is summed in client order by one thread (no
    fast-math), so the gains do not depend on the thread count.
    """
    for r in prange(rows.size):
        i = rows[r]
        g = 0.0
        for c in range(dots.shape[1]):
            d = 1.0 - np.float64(dots[i, c])
            if d < 0.0:
                d = 0.0
            v = np.exp(-d / h) - cover[c]
            if v > 0.0:
                g += v
        out[r] = g


# --- pruned coverage (geal.coverage.pruned) -------------------------------------------
@njit(inline="always")
def bound(eqc: np.float32, epc: np.float32, psq: np.float32, qsq: np.float32) -> np.float32:
    """Lower bound on the cosine distance from |e(q,c) - e(p,c)|, minus the safety margins.

    ``eqc`` is known to within E_MARGIN; a negative ``eqc`` means "no bound".
    """
    if eqc < 0:
        return np.float32(-10.0)
    lb = eqc - epc
    if lb < 0:
        lb = -lb
    lb = lb - np.float32(E_MARGIN)
    if lb < 0:
        lb = np.float32(0.0)
    return np.float32(1.0) - (psq + qsq - lb * lb) * np.float32(0.5) - MARGIN


@njit(fastmath=True, cache=True)
def centre_distances(
    q: np.ndarray, centres: np.ndarray, csq: np.ndarray, qsq: np.ndarray
) -> np.ndarray:
    """e(q_j, c_g) for the few query rows and every centre, single-threaded.

    A tiny product: a threaded BLAS call costs more in synchronisation than in work
    (milliseconds on a busy machine). Accumulated in float64: each product of a grid value
    and a float32 centre component is exact in float64, and the sum's error stays below
    1e-12 at any dimension, so e(q, c) is within E_MARGIN for distances above 0.1. (A
    float32 sum is not: its error grows with the dimension and passes E_MARGIN near
    1,700 dimensions, the size of 2048-channel CNN features.)
    """
    k, dim = q.shape
    g = centres.shape[0]
    out = np.empty((k, g), np.float64)
    for j in range(k):
        for c in range(g):
            acc = 0.0
            for i in range(dim):
                acc += np.float64(q[j, i]) * np.float64(centres[c, i])
            v = np.float64(qsq[j]) + csq[c] - 2.0 * acc
            out[j, c] = np.sqrt(v) if v > 0 else 0.0
    return out


@njit(inline="always")
def _update_group(
    g: int,  # the group to visit
    goff: np.ndarray,  # int64 [G+1]
    units: np.ndarray,  # uint16 [M, D], group order
    psq: np.ndarray,  # float32 [M] |p|^2 (exact)
    epc: np.ndarray,  # float32 [M] e(p, c_group)
    perm: np.ndarray,  # int64 [M] group order -> canonical pattern index
    d: np.ndarray,  # float32 [M] group order
    q: np.ndarray,  # float32 [k, D]
    qsq: np.ndarray,  # float32 [k]
    eqc: np.ndarray,  # float32 [k, G]
    gmax: np.ndarray,  # float32 [G]
    garg: np.ndarray,  # int64 [G] canonical index of the first max
    changed: np.ndarray,  # int64 [M] per group: positions changed (compact, from goff[g])
    old: np.ndarray,  # float32 [M] previous distance of changed positions
    nchanged: np.ndarray,  # int64 [G]
    ncomputed: np.ndarray,  # int64 [G] rows whose distances were computed (diagnostics)
) -> None:
    dim = units.shape[1]
    k = q.shape[0]
    lo = goff[g]
    hi = goff[g + 1]
    buf = np.empty(dim, np.uint32)
    row = buf.view(np.float32)
    nc = 0
    work = 0
    mx = np.float32(-2.0)
    arg = np.int64(-1)
    for r in range(lo, hi):
        dr = d[r]
        if dr >= 0:
            need = False
            for j in range(k):
                if bound(eqc[j, g], epc[r], psq[r], qsq[j]) < dr:
                    need = True
                    break
            if need:
                work += 1
                for i in range(dim):
                    buf[i] = _decode(units[r, i])
                best = dr
                for j in range(k):
                    acc = np.float32(0.0)
                    for i in range(dim):
                        acc += row[i] * q[j, i]
                    dist = np.float32(1.0) - acc
                    if dist < 0:
                        dist = np.float32(0.0)
                    if dist < best:
                        best = dist
                if best < dr:
                    changed[lo + nc] = r
                    old[lo + nc] = dr
                    nc += 1
                    d[r] = best
                    dr = best
        p = perm[r]
        if dr > mx or (dr == mx and p < arg):
            mx = dr
            arg = p
    nchanged[g] = nc
    ncomputed[g] = work
    gmax[g] = mx
    garg[g] = arg


def _update_groups(
    groups, goff, units, psq, epc, perm, d, q, qsq, eqc, gmax, garg, changed, old, nchanged,
    ncomputed,
):  # fmt: skip
    """Visit ``groups``: a group's rows are updated, its changes recorded, its max found."""
    for gi in prange(groups.shape[0]):
        _update_group(
            groups[gi], goff, units, psq, epc, perm, d, q, qsq, eqc, gmax, garg, changed, old,
            nchanged, ncomputed,
        )  # fmt: skip


update_groups = Twin(_update_groups, fastmath=True)


@njit(cache=True)
def apply_weights(
    groups: np.ndarray,
    goff: np.ndarray,
    changed: np.ndarray,
    old: np.ndarray,
    nchanged: np.ndarray,
    d: np.ndarray,
    owner: np.ndarray,  # int64 [M] group order -> image
    wimg: np.ndarray,  # int64 [N]
    wblk: np.ndarray,  # int64 [N / IMG_BLOCK]
    scale: np.float32,
    img_block: int,
) -> None:
    for gi in range(groups.shape[0]):
        g = groups[gi]
        lo = goff[g]
        for c in range(nchanged[g]):
            r = changed[lo + c]
            delta = weight(d[r], scale) - weight(old[lo + c], scale)
            i = owner[r]
            wimg[i] += delta
            wblk[i // img_block] += delta


@njit(cache=True)
def draw_image(wimg: np.ndarray, lo: int, hi: int, u: np.int64) -> int:
    acc = np.int64(0)
    for i in range(lo, hi):
        acc += wimg[i]
        if acc > u:
            return i
    return -1


@njit(parallel=True, cache=True)
def recount(
    goff: np.ndarray,
    d: np.ndarray,
    perm: np.ndarray,
    owner: np.ndarray,
    gmax: np.ndarray,
    garg: np.ndarray,
) -> None:
    for g in prange(goff.shape[0] - 1):
        mx = np.float32(-2.0)
        arg = np.int64(-1)
        for r in range(goff[g], goff[g + 1]):
            dr = d[r]
            p = perm[r]
            if dr > mx or (dr == mx and p < arg):
                mx = dr
                arg = p
        gmax[g] = mx
        garg[g] = arg
