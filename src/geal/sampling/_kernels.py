"""Numba kernels for the coverage state on the CPU.

Patterns are unit vectors rounded to a fixed grid of 2^-11 and stored as float16 bits.
On that grid every product is a multiple of 2^-22 and every partial sum of a dot product
stays below 2 in magnitude (Cauchy-Schwarz), so float32 accumulation is EXACT in any
order: the kernels may vectorise and reorder freely, chunked, threaded, BLAS and GPU
results are bit-identical, and rankings do not depend on how the work was split.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

GRID = 2048.0  # 2^11: unit-vector components are multiples of 1/GRID
WSCALE = 4194304.0  # 2^22: distances are multiples of 1/WSCALE (cosine)
WSHIFT = 16  # weight = (d * 2^22)^2 >> 16 < 2^32 for d < 4
SERIAL_BELOW = 65536  # patterns: below this one thread beats a parallel region


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


@njit(parallel=True, fastmath=True, cache=True)
def update_blocks(units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid):
    """d = min(d, dist(row, q)) for every row, then each block's weight sum and max."""
    for b in prange(blk_sum.shape[0]):
        _update_block(b, units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid)


@njit(fastmath=True, cache=True)
def update_blocks_serial(
    units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid
):
    """As :func:`update_blocks` in this thread, for banks too small to repay threads."""
    for b in range(blk_sum.shape[0]):
        _update_block(b, units, q, qnorm, norms, d, blk_sum, blk_max, blk_arg, block, scale, euclid)


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
