"""The plain coverage state: exact distance updates over every pattern, CPU or GPU.

For every pattern p the state keeps ``d[p]``: its distance to the nearest pattern of a
picked (or labeled) image; patterns of picked images hold -1. Picking an image updates
``d`` with one pass over the patterns. Distances use unit vectors rounded to a 2^-11 grid
(:mod:`geal.grid`): every dot product is exact, so the state, and therefore the
ranking, is identical on any device, thread count or chunk size.

The draws are defined on the canonical pattern order: FDS takes the first pattern of
largest ``d``; D^2 sampling draws an integer u uniformly below the total integer weight
and takes the first pattern whose running weight exceeds u.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from geal.coverage import kernels as K
from geal.coverage.state import DEFAULT_CHUNK, DISTANCES, INIT
from geal.errors import SelectionError
from geal.grid import QUANT_ROWS, WSCALE, WSHIFT, quantize
from geal.internal.device import resolve_device

log = logging.getLogger(__name__)


class Coverage:
    """Min-distance state over ragged per-image vectors.

    Args:
        blocks: the vectors ``[M, D]`` in image order, in one or more blocks (memory-mapped
            bank shards are read once, block by block, into the grid copy).
        counts: vectors per image ``[N]``; images with none can never be picked.
        distance: ``cosine`` (1 - cos) or ``euclidean``.
        device: ``cpu``, ``cuda`` or ``auto``.
        chunk: rows per matrix product when many images are added at once (memory bound).
        block: patterns per bookkeeping block on the CPU.
        release: called with a block's position after each step through it (lets a bank
            drop the pages of a memory-mapped shard as they are read).
    """

    def __init__(
        self,
        blocks: Iterable[np.ndarray],
        counts: np.ndarray,
        *,
        distance: str = "cosine",
        device: str = "cpu",
        chunk: int = DEFAULT_CHUNK,
        block: int = 4096,
        release: Callable[[int], None] | None = None,
    ):
        if distance not in DISTANCES:
            raise SelectionError(f"unknown distance {distance!r}; use {' or '.join(DISTANCES)}")
        if chunk < 1:
            raise SelectionError("--chunk must be positive")
        self.counts = np.asarray(counts, dtype=np.int64)
        self.offsets = np.zeros(self.counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.offsets[1:])
        self.owner = np.repeat(np.arange(self.counts.shape[0], dtype=np.int64), self.counts)
        blocks = list(blocks)
        m = int(self.offsets[-1])
        if sum(int(b.shape[0]) for b in blocks) != m:
            raise ValueError("vector count does not match counts")
        dim = int(blocks[0].shape[1]) if blocks else 1
        # the grid copy is filled block by block: peak memory is the copy plus one chunk
        self.units = np.empty((m, dim), np.uint16)
        self.norms = np.empty(m, np.float32)
        at = 0
        for k, b in enumerate(blocks):
            for a in range(0, b.shape[0], QUANT_ROWS):  # bounded temporaries
                u, nrm = quantize(b[a : a + QUANT_ROWS])
                self.units[at : at + u.shape[0]] = u
                self.norms[at : at + u.shape[0]] = nrm
                at += u.shape[0]
                if release is not None:  # the pages read so far: one step resident at most
                    release(k)
        self.euclid = distance == "euclidean"
        self.distance = distance
        # weights must stay below 2^32 per pattern: scale distances into [0, 4)
        self.scale = np.float32(WSCALE)
        if self.euclid:
            top = float(2.0 * self.norms.max()) if self.norms.size else 1.0
            self.scale = np.float32(WSCALE * 2.0 / max(top, 1e-12))
        self.chunk = chunk
        self.block = block
        self.device = resolve_device(device)
        self.picked = np.zeros(self.counts.shape[0], dtype=bool)
        init = np.float32(INIT if not self.euclid else 2.0 * (self.norms.max() if m else 1.0) + 1.0)
        self._init = init
        self.d = np.full(m, init, dtype=np.float32)
        nb = (m + block - 1) // block
        self.blk_sum = np.zeros(nb, np.int64)
        self.blk_max = np.zeros(nb, np.float32)
        self.blk_arg = np.zeros(nb, np.int64)
        self._gpu = self.device.type != "cpu"
        if self._gpu:
            self._t_units = torch.from_numpy(self.units.view(np.float16)).to(self.device)
            self._t_norms = torch.from_numpy(self.norms).to(self.device)
            self._t_d = torch.from_numpy(self.d).to(self.device)
        else:
            K.block_stats(self.d, self.blk_sum, self.blk_max, self.blk_arg, block, self.scale)

    # --- sizes --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.counts.shape[0])

    @property
    def selectable(self) -> np.ndarray:
        """Images that can still be picked."""
        return (self.counts > 0) & ~self.picked

    # --- updates ------------------------------------------------------------------------
    def _query(self, images: Sequence[int]) -> np.ndarray:
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in images])
        return rows

    def add(self, images: Sequence[int]) -> None:
        """Mark ``images`` picked and lower ``d`` by their patterns."""
        images = [int(i) for i in images]
        if not images:
            return
        for i in images:
            if self.counts[i] == 0:
                raise SelectionError(f"image {i} has no patterns (unreadable) and cannot be picked")
        rows = self._query(images)
        q_bits = self.units[rows]
        q = q_bits.view(np.float16).astype(np.float32)
        qn = self.norms[rows]
        self.picked[images] = True
        if self._gpu:
            self._add_torch(q, qn, rows)
        elif len(rows) <= 16:
            self.d[rows] = -1.0
            K.update_blocks(
                self.units.shape[0],
                self.units,
                q,
                qn,
                self.norms,
                self.d,
                self.blk_sum,
                self.blk_max,
                self.blk_arg,
                self.block,
                self.scale,
                self.euclid,
            )
        else:
            self._add_blas(q, qn, rows)

    def _dist_chunk(
        self, x: np.ndarray, xn: np.ndarray, q: np.ndarray, qn: np.ndarray
    ) -> np.ndarray:
        dot = x @ q.T  # exact on the grid
        if self.euclid:
            sq = (
                xn[:, None] ** 2
                + qn[None, :] ** 2
                - np.float32(2.0) * xn[:, None] * qn[None, :] * dot
            )
            dist = np.sqrt(np.maximum(sq, 0)).astype(np.float32)
        else:
            dist = np.maximum(np.float32(1.0) - dot, 0).astype(np.float32)
        return dist.min(1)

    def _add_blas(self, q: np.ndarray, qn: np.ndarray, rows: np.ndarray) -> None:
        m = self.units.shape[0]
        for a in range(0, m, self.chunk):
            b = min(a + self.chunk, m)
            x = self.units[a:b].view(np.float16).astype(np.float32)
            new = self._dist_chunk(x, self.norms[a:b], q, qn)
            cur = self.d[a:b]
            np.minimum(cur, new, out=cur, where=cur >= 0)
        self.d[rows] = -1.0
        K.block_stats(self.d, self.blk_sum, self.blk_max, self.blk_arg, self.block, self.scale)

    def _add_torch(self, q: np.ndarray, qn: np.ndarray, rows: np.ndarray) -> None:
        tq = torch.from_numpy(q).to(self.device)
        tqn = torch.from_numpy(qn).to(self.device)
        d = self._t_d
        m = d.shape[0]
        with torch.inference_mode():
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would break exactness
            try:
                for a in range(0, m, self.chunk):
                    b = min(a + self.chunk, m)
                    x = self._t_units[a:b].float()
                    dot = x @ tq.T
                    if self.euclid:
                        xn = self._t_norms[a:b, None]
                        sq = xn * xn + tqn[None, :] * tqn[None, :] - 2.0 * xn * tqn[None, :] * dot
                        dist = torch.sqrt(sq.clamp_min(0))
                    else:
                        dist = (1.0 - dot).clamp_min(0)
                    new = dist.amin(1)
                    cur = d[a:b]
                    d[a:b] = torch.where(cur >= 0, torch.minimum(cur, new), cur)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = prev
            d[torch.from_numpy(rows).to(self.device)] = -1.0

    # --- queries ------------------------------------------------------------------------
    def distances(self) -> np.ndarray:
        """Current ``d`` (a copy), -1 for patterns of picked images."""
        return self._t_d.cpu().numpy() if self._gpu else self.d.copy()

    def radius(self) -> float:
        """Largest distance from an unpicked pattern to the picked set (0 if none left)."""
        if self._gpu:
            r = float(self._t_d.max().item()) if self._t_d.numel() else 0.0
        else:
            r = float(self.blk_max.max()) if self.blk_max.size else 0.0
        return max(r, 0.0)

    def farthest(self) -> int:
        """Image owning the first pattern of largest distance (FDS / k-center greedy)."""
        if self._gpu:
            p = int(torch.argmax(self._t_d).item())
            top = float(self._t_d[p].item())
        else:
            b = int(np.argmax(self.blk_max))
            p = int(self.blk_arg[b])
            top = float(self.blk_max[b])
        if top < 0:
            raise SelectionError("every image with patterns is already picked")
        return int(self.owner[p])

    def total_weight(self) -> int:
        if self._gpu:
            return int(self._t_weights().sum().item())
        return int(self.blk_sum.sum())

    def _t_weights(self) -> torch.Tensor:
        di = torch.round(self._t_d.clamp_min(0) * float(self.scale)).long()
        return (di * di) >> WSHIFT

    def draw(self, rng: np.random.Generator) -> int:
        """Image owning a pattern drawn with probability d^2 / sum d^2 (k-means++ seeding).

        When every distance is zero (all remaining images duplicate picked ones) the
        draw is uniform over the remaining images.
        """
        total = self.total_weight()
        if total <= 0:
            left = np.flatnonzero(self.selectable)
            if left.size == 0:
                raise SelectionError("every image with patterns is already picked")
            return int(left[rng.integers(left.size)])
        u = np.int64(rng.integers(total))
        if self._gpu:
            tcum = torch.cumsum(self._t_weights(), 0)
            at = torch.tensor([int(u)], device=self.device)
            p = int(torch.searchsorted(tcum, at, right=True).item())
        else:
            cum = np.cumsum(self.blk_sum)
            b = int(np.searchsorted(cum, u, side="right"))
            before = int(cum[b - 1]) if b > 0 else 0
            lo = b * self.block
            hi = min(lo + self.block, self.d.shape[0])
            p = int(K.draw_in_block(self.d, lo, hi, np.int64(u - before), self.scale))
        return int(self.owner[p])
