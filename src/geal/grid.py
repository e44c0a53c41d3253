"""Exact distance arithmetic: the 2^-11 grid, and the blocks products are computed in.

Every distance geal's coverage engine and ``strata`` compute is between unit vectors
rounded to multiples of 2^-11 (:data:`GRID`). A product of two grid components is a
multiple of 2^-22 and a dot product's partial sums stay below 2 in magnitude, so float32
accumulation is exact in any order: BLAS, numba, threads, chunks and GPUs all give the
same bits, and a ranking does not depend on how the work was split.

Every sampler computes distances in blocks of at most :data:`DEFAULT_CHUNK` rows (the
``--chunk`` setting), which bounds its temporaries whatever the pool's size.
"""

from __future__ import annotations

import numpy as np

from geal.defaults import DEFAULT_CHUNK

__all__ = [
    "DEFAULT_CHUNK",
    "GRID",
    "QUANT_ROWS",
    "WSCALE",
    "WSHIFT",
    "grid_f32",
    "quantize",
    "to_grid",
]

GRID = 2048.0  # 2^11: unit-vector components are multiples of 1/GRID
WSCALE = 4194304.0  # 2^22: cosine distances are multiples of 1/WSCALE
WSHIFT = 16  # D^2 weight = (d * 2^22)^2 >> 16 < 2^32 for d < 4
QUANT_ROWS = 2048  # rows rounded at a time: ~8 KB of float64 temporaries per row of 384 dims


def quantize(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows -> (grid unit vectors as float16 bits uint16 ``[m, D]``, norms float32 ``[m]``).

    Grid values are multiples of 2^-11 in [-1, 1], all exact in float16.
    """
    x = np.asarray(block, dtype=np.float32)
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(1)).astype(np.float32)
    safe = np.where(norms > 0, norms, 1.0).astype(np.float32)
    u = np.rint(x / safe[:, None] * GRID) / GRID
    return u.astype(np.float16).view(np.uint16), norms


def grid_f32(block: np.ndarray) -> np.ndarray:
    """Rows as float32 grid unit vectors, :data:`QUANT_ROWS` at a time (as :func:`quantize`)."""
    out = np.empty(block.shape, np.float32)
    for a in range(0, block.shape[0], QUANT_ROWS):  # bounded float64 temporaries
        out[a : a + QUANT_ROWS] = quantize(block[a : a + QUANT_ROWS])[0].view(np.float16)
    return out


def to_grid(x: np.ndarray, rows: int = 65536) -> np.ndarray:
    """Rows scaled to unit length and rounded to multiples of 2^-11 (float32; zero rows
    stay zero), ``rows`` at a time, the division in float64 (``strata``'s rounding, which
    a float32 division can differ from by one grid step)."""
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for a in range(0, x.shape[0], rows):
        x64 = np.asarray(x[a : a + rows], dtype=np.float64)
        norms = np.sqrt((x64 * x64).sum(1))
        safe = np.where(norms > 0, norms, 1.0)
        out[a : a + rows] = np.rint(x64 / safe[:, None] * GRID) / GRID
    return out
