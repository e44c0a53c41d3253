"""Kernel coverage with a shrinking scale (``kernelcover``).

Why: diversity samplers (GEAL's FDS and D^2 sampling, k-center) spend a small budget on
outliers, while representativeness samplers (k-means centres, TypiClust, ProbCover)
spend a large budget on near-duplicates of typical images. Which wins depends on the
budget; a user should not have to know which.

What it maximises. Give every pattern q of the pool a coverage
cov(q) = max over picked patterns p of k(p, q), with a Gaussian kernel on the cosine
distance, k(p, q) = exp(-d(p, q) / h). Greedy facility location adds, at each step, the
image whose patterns raise the total coverage most:

    gain(i) = sum_q [ max_{p in image i} k(p, q) - cov(q) ]_+ .

With a broad kernel the largest gains sit at the centres of the big modes of the pool
(representativeness: the first picks look like k-means centres); once a region is
covered its gains vanish and the next pick goes to the densest uncovered region;
with a narrow kernel the rule fills the gaps left between picks (coverage, like
k-center, but weighted by how many images a gap holds). The same objective with a fixed
kernel is MaxHerding's "generalized coverage" (Bae et al., 2024).

The scale shrinks as the selection grows. After n picks (labeled images included) a
new pick should stand for about 1/(n+1) of the pool, so h is the median distance from a
pattern to its k-th nearest neighbour, k = sample / (n+1), one scale per doubling of n.
It depends on the step, never on the final budget, so every budget's selection is a
prefix of a larger budget's (the ranking property).

Cost. The gains are summed over a seeded sample of ``sample`` patterns (default 4,000)
rather than all of them. All gains are computed once per scale: O(images x sample)
kernel evaluations per doubling of n, on the images x sample largest dot products,
computed once (O(patterns x sample x dim)) and kept while they fit in ``cache_mb``.
Between, gains only fall (the objective is submodular), so a lazy greedy step
re-evaluates a few candidates, each O(sample); the coverage state that reports the radius
takes one pass over the patterns, as for FDS. Sums run in float64 in a fixed order on
the CPU: the same inputs and seed give the same ranking.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geal.coverage import DEFAULT_CHUNK, Coverage, CoverageState, PrunedCoverage, greedy
from geal.coverage.kernels import kernel_gains
from geal.errors import SelectionError
from geal.internal.memory import available_bytes
from geal.internal.validation import check_scalar
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler
from geal.sampling.geal import coverage_bytes, pattern_coverage

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)

_REFRESH = 16  # stale candidates re-evaluated together in a lazy step


class KernelCover:
    """Lazy-greedy kernel facility location over images, sampled clients, shrinking scale.

    Used as the step function of :func:`geal.coverage.greedy`; it follows the
    picks (labeled ones included) through the coverage state it is called with.
    """

    def __init__(
        self, cov: Coverage | PrunedCoverage, sample: int, seed: int, cache_bytes: float = 2**30
    ):
        self.cov = cov
        # the pruned state keeps its grid rows in group order: pattern row r is at inv[r]
        self._inv: np.ndarray | None = getattr(cov, "inv", None)
        self.cache_bytes = cache_bytes
        self._cache: np.ndarray | None = None
        m = cov.units.shape[0]
        rng = np.random.default_rng([int(seed), 0x6B636F76])
        idx = np.sort(rng.choice(m, size=min(sample, m), replace=False))
        self.clients = self._rows(idx)  # [S, D] float64 grid vectors
        self.clients32 = self.clients.float()  # the same values (grid vectors fit float16)
        s = self.clients.shape[0]
        # distance from every client to its neighbours, sorted: the scale of each level
        d = (1.0 - self.clients @ self.clients.T).clamp_min(0)
        d.fill_diagonal_(float("inf"))
        self._knn = torch.sort(d, dim=1).values[:, : max(1, s - 1)]
        self.s = s
        self.dist = torch.full((s,), 4.0, dtype=torch.float64)  # client -> picked set
        self.known = np.zeros(cov.n, dtype=bool)
        self.level = -1
        self.h = 1.0
        self.heap: list[tuple[float, int, int]] = []
        self.evaluations = 0

    def _rows(self, rows: np.ndarray, dtype: Any = np.float64) -> torch.Tensor:
        """Grid rows of patterns ``rows`` (bank order), in the given dtype."""
        at = rows if self._inv is None else self._inv[rows]
        return torch.from_numpy(self.cov.units[at].view(np.float16).astype(dtype))

    def _image_rows(self, i: int) -> torch.Tensor:
        return self._rows(np.arange(self.cov.offsets[i], self.cov.offsets[i + 1]))

    def scale(self, level: int) -> float:
        """Median distance to the k-th neighbour, k = clients / 2^level (at least 1)."""
        k = int(min(max(1, round(self.s / 2**level)), self._knn.shape[1]))
        return max(float(torch.median(self._knn[:, k - 1])), 1e-4)

    def _sync(self, c: CoverageState) -> None:
        new = np.flatnonzero(c.picked & ~self.known)
        for i in new.tolist():
            x = self._image_rows(i)
            if x.shape[0]:
                self.dist = torch.minimum(
                    self.dist, (1.0 - x @ self.clients.T).clamp_min(0).amin(0)
                )
        self.known[new] = True

    def _dots(self, images: np.ndarray) -> np.ndarray:
        """[len(images), S] float32: each image's largest dot product with each client.

        One matrix product per pattern slot (an image with fewer patterns repeats its
        last). On the grid these float32 products are exact (see
        ``geal.sampling._coverage``), so the gains equal a float64 computation bit for bit.
        """
        off = self.cov.offsets[images]
        counts = self.cov.counts[images].astype(np.int64)
        last = np.maximum(counts - 1, 0)
        top = self.cov.units.shape[0] - 1  # empty images read any row, then are masked
        best = torch.full((images.size, self.s), -2.0)
        for j in range(int(counts.max()) if images.size else 0):
            rows = np.minimum(off + np.minimum(j, last), top)
            best = torch.maximum(best, self._rows(rows, np.float32) @ self.clients32.T)
        best[torch.from_numpy(counts <= 0)] = -2.0
        return best.numpy()

    def _gains(self, images: np.ndarray, cover: np.ndarray) -> np.ndarray:
        """Exact gains of ``images`` (any order; each image's value is computed alone).

        The maximum over an image's patterns of k(p, q) is k at its largest dot product
        with q, so the kernel is applied once per (image, client).
        """
        images = np.ascontiguousarray(images, dtype=np.int64)
        out = np.empty(images.size)
        if self._cache is not None:
            kernel_gains(self._cache, images, cover, self.h, out)
        else:
            kernel_gains(self._dots(images), np.arange(images.size), cover, self.h, out)
        return out

    def _all_gains(self, c: CoverageState, cover: np.ndarray, step: int) -> None:
        ok = np.flatnonzero(c.selectable)
        if self._cache is None and self.cov.n * self.s * 4 <= self.cache_bytes:
            # the dot products do not depend on the scale: compute them once, then each
            # new scale costs one kernel evaluation per (image, client)
            # filled in place: a list of chunks and their concatenation would hold the
            # table twice at the peak
            every = np.arange(self.cov.n)
            cache = np.empty((self.cov.n, self.s), np.float32)
            for a in range(0, every.size, DEFAULT_CHUNK):
                cache[a : a + DEFAULT_CHUNK] = self._dots(every[a : a + DEFAULT_CHUNK])
            self._cache = cache
        gains = (
            np.concatenate(
                [
                    self._gains(ok[a : a + DEFAULT_CHUNK], cover)
                    for a in range(0, ok.size, DEFAULT_CHUNK)
                ]
            )
            if ok.size
            else np.zeros(0)
        )
        self.heap = [(-float(g), int(i), step) for g, i in zip(gains, ok.tolist(), strict=True)]
        heapq.heapify(self.heap)

    def __call__(self, c: CoverageState, t: int, rng: np.random.Generator) -> int:
        self._sync(c)
        level = round(float(np.log2(int(self.known.sum()) + 1)))
        if level != self.level:
            self.level = level
            self.h = self.scale(level)
            self._all_gains(c, torch.exp(-self.dist / self.h).numpy(), t)
        cover = torch.exp(-self.dist / self.h).numpy()
        # lazy greedy: stale gains are upper bounds (they only fall); refresh the top few
        # at a time until the best entry is one computed at this step
        while self.heap:
            if not c.selectable[self.heap[0][1]]:
                heapq.heappop(self.heap)
                continue
            if self.heap[0][2] == t:
                return heapq.heappop(self.heap)[1]
            stale: list[int] = []
            while self.heap and len(stale) < _REFRESH and self.heap[0][2] != t:
                entry = heapq.heappop(self.heap)
                if c.selectable[entry[1]]:
                    stale.append(entry[1])
            if stale:
                fresh = self._gains(np.array(stale, np.int64), cover)
                self.evaluations += len(stale)
                for g, i in zip(fresh.tolist(), stale, strict=True):
                    heapq.heappush(self.heap, (-g, i, t))
        raise SelectionError("every image with patterns is already picked")


@dataclass(frozen=True)
class KernelCoverParams(SamplerParams):
    """Hyperparameters of ``kernelcover``.

    Attributes:
        sample: client patterns the gains are summed over (>= 1).
        cache_mb: keep the images x sample dot products in memory when they fit in this
            many MiB (>= 0); each new scale then costs no matrix product. None (the
            default): half the memory available when the selection starts, at least
            1 GiB. The picks are the same either way; only the time changes.
    """

    sample: int = 4000
    cache_mb: float | None = None

    def __post_init__(self) -> None:
        check_scalar(self.sample, "sample", int, min_val=1, error=SelectionError)
        if self.cache_mb is not None:
            check_scalar(self.cache_mb, "cache_mb", float, min_val=0, error=SelectionError)

    def cache_bytes(self) -> float:
        """The most bytes the dot-product table may take (see ``cache_mb``)."""
        if self.cache_mb is not None:
            return float(self.cache_mb) * 2**20
        free = available_bytes()
        return max(float(2**30), 0.5 * free) if free is not None else float(2**30)


def _memory(shape: BankShape, budget: int, params: KernelCoverParams, run: RunSettings) -> int:
    table = 4 * shape.n * params.sample  # the dot products, kept when they fit
    cache = table if table <= params.cache_bytes() else 0
    sample = 8 * params.sample * shape.dim + 16 * shape.n  # client rows, gains
    chunk = 2 * 4 * min(DEFAULT_CHUNK, shape.n) * params.sample  # a chunk's products, max
    state = coverage_bytes(shape, dataclasses.replace(run, device="cpu"))
    return state + cache + sample + chunk


@register_sampler("kernelcover", KernelCoverParams, memory=_memory)
def kernelcover(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: KernelCoverParams,
    run: RunSettings,
) -> Ranking:
    """Kernel coverage of the knowledge clusters with a shrinking scale (see module doc).

    Cosine distance only (the kernel lives on the sphere); runs on the CPU.
    """
    if distance != "cosine":
        raise SelectionError(
            "kernelcover uses the cosine distance (its kernel lives on the sphere)"
        )
    # the exact coverage state that reports each pick's radius: pruned on large banks
    # (as prob/fds on the CPU; the same state, so the same ranking), else one pass per pick
    cov = pattern_coverage(bank, run=dataclasses.replace(run, device="cpu"))
    ranked = {"distance": distance, "sample": params.sample}
    picks = greedy(
        cov,
        budget,
        KernelCover(cov, params.sample, seed, params.cache_bytes()),
        strategy="kernelcover",
        seed=seed,
        labeled=labeled,
        params=ranked,
        journal=run.journal,
        journal_key=dict(run.journal_key or {}),
        progress=run.progress,
        first_random=False,
    )
    return Ranking(picks.order, picks.radius, "kernelcover", seed, ranked)
