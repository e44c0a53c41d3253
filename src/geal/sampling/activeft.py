"""ActiveFT: images nearest to centroids optimised to match and spread over the pool.

Xie, Lu, Tomizuka & Zhan, "Active Finetuning: Exploiting Annotation Budget in the
Pretraining-Finetuning Paradigm", CVPR 2023. ActiveFT fits ``budget`` continuous
centroids on the unit sphere so that their distribution is close to the pool's
(every image similar to its nearest centroid) and diverse (centroids far from each
other), then labels the image nearest to each centroid.

Kept: the released code's objective, per sampled image ``i`` with nearest centroid
``p(i)`` (cosine similarity ``s``, temperature ``tau`` = 0.07)::

    J_i = s(f_i, c_p(i)) / tau - log(exp(s(f_i, c_p(i)) / tau)
                                     + balance * sum_j exp(s(sg(c_j), c_p(i)) / tau))

maximised in mean, where ``sg`` stops the gradient (so the diversity term pushes each
assigned centroid away from the others); centroids initialised at seeded random images;
Adam with lr 1e-3 for 300 iterations (the paper's CIFAR setting), a random subset of the
pool per iteration (the released ImageNet script's ``batch_size``); then each centroid,
in order, takes its most similar image not taken yet. Simplified: the gradient is
written out by hand in numpy (equal to autograd of the objective above, checked in the
tests) so that only blocks of ``chunk`` images meet the centroids at a time; the
features are the frozen model's global vectors, L2-normalised whatever ``distance`` says
(ActiveFT is defined on the sphere). Extension for a labeled set: labeled images are
fixed centroids that take part in the objective but never move, so the free centroids
spread away from them. Not nested: the centroids depend on the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geal.errors import SelectionError
from geal.internal.progress import Progress
from geal.internal.validation import check_scalar
from geal.kmeans import add_rows
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler
from geal.sampling.features import blocks_bytes, global_pool, nearest_unused, rows_bytes, unit

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)


@dataclass
class Fit:
    centroids: np.ndarray  # float32 [k, D], unit rows
    losses: np.ndarray  # float64 [iterations]: the objective before each step


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def loss_and_grad(
    c: np.ndarray,
    x: np.ndarray,
    fixed: np.ndarray,
    *,
    tau: float,
    balance: float,
    chunk: int,
) -> tuple[float, np.ndarray]:
    """ActiveFT's loss (-mean J) on the rows ``x`` and its gradient w.r.t. the raw centroids.

    Args:
        c: free centroids ``[k, D]`` (any length; the loss normalises them).
        x: unit image features ``[B, D]``.
        fixed: unit centroids that do not move ``[f, D]``.
        tau: temperature.
        balance: weight of the diversity term.
        chunk: rows per block of the products.
    """
    k = c.shape[0]
    norms = np.sqrt((c.astype(np.float64) ** 2).sum(1))
    chat = (c / np.maximum(norms, 1e-12)[:, None]).astype(np.float32)
    cents = np.concatenate([chat, fixed]).astype(np.float32)
    n_all = cents.shape[0]
    b = x.shape[0]
    # nearest centroid of every image (the positive pair)
    pos = np.empty(b, dtype=np.int64)
    u = np.empty(b, dtype=np.float64)
    for a in range(0, b, chunk):
        s = x[a : a + chunk] @ cents.T
        j = s.argmax(1)
        pos[a : a + chunk] = j
        u[a : a + chunk] = s[np.arange(j.size), j] / tau
    # log of the diversity sum of every centroid that is someone's positive
    active = np.unique(pos)
    lse = np.zeros(n_all, dtype=np.float64)
    grad = np.zeros((n_all, x.shape[1]), dtype=np.float64)
    lb = np.log(balance) if balance > 0 else -np.inf
    v_rows: list[tuple[np.ndarray, np.ndarray]] = []
    for a in range(0, active.size, chunk):
        rows = active[a : a + chunk]
        z = cents[rows] @ cents.T  # [r, n_all]
        z *= np.float32(1.0 / tau)
        top = z.max(1, keepdims=True)
        z -= top
        e = np.exp(z, out=z)
        tot = e.sum(1, keepdims=True, dtype=np.float64)
        lse[rows] = (top[:, 0] + np.log(tot[:, 0])).astype(np.float64)
        dl = (e @ cents).astype(np.float64) / (tot * tau)  # d lse / d c_row: softmax-weighted mean
        v_rows.append((rows, dl))
    v = lb + lse[pos]
    loss = float(-(u - np.logaddexp(u, v)).mean())
    g = _sigmoid(v - u) / b  # d loss / d v_i = -d loss / d u_i
    # positive term: d(-u_i)/d c_p(i) = -x_i / tau
    add_rows(grad, pos, -(g / tau)[:, None] * x.astype(np.float64))
    if balance > 0:
        w = np.bincount(pos, weights=g, minlength=n_all)
        for rows, dl in v_rows:
            grad[rows] += w[rows, None] * dl
    gc = grad[:k]
    # through the normalisation c -> c / |c|
    chat64 = chat.astype(np.float64)
    gc = (gc - chat64 * (chat64 * gc).sum(1, keepdims=True)) / np.maximum(norms, 1e-12)[:, None]
    return loss, gc


def fit_centroids(
    x: np.ndarray,
    init: np.ndarray,
    fixed: np.ndarray,
    rng: np.random.Generator,
    *,
    tau: float = 0.07,
    balance: float = 1.0,
    lr: float = 1e-3,
    iterations: int = 300,
    batch_size: int = 4096,
    chunk: int = 4096,
    progress: bool | None = None,
) -> Fit:
    """Optimise the centroids with Adam (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8)."""
    c = np.asarray(init, dtype=np.float64).copy()
    m = np.zeros_like(c)
    s = np.zeros_like(c)
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = x.shape[0]
    losses = np.empty(iterations, dtype=np.float64)
    bar = Progress(iterations, unit="iter", desc="activeft", progress=progress, leave=False)
    for t in range(1, iterations + 1):
        bar.update(1)
        rows = rng.choice(n, size=batch_size, replace=False) if batch_size < n else slice(None)
        loss, g = loss_and_grad(c, x[rows], fixed, tau=tau, balance=balance, chunk=chunk)
        losses[t - 1] = loss
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * g * g
        denom = np.sqrt(s) / np.sqrt(1 - b2**t) + eps
        c -= (lr / (1 - b1**t)) * m / denom
    return Fit(unit(c.astype(np.float32)), losses)


@dataclass(frozen=True)
class ActiveFTParams(SamplerParams):
    """Hyperparameters of ``activeft``.

    Attributes:
        tau: temperature (> 0).
        balance: weight of the diversity term (>= 0).
        lr: Adam learning rate (> 0).
        iterations: optimisation steps (>= 0).
        batch_size: images sampled per step (>= 1; the whole pool if larger).
    """

    tau: float = 0.07
    balance: float = 1.0
    lr: float = 1e-3
    iterations: int = 300
    batch_size: int = 4096

    def __post_init__(self) -> None:
        check_scalar(self.tau, "tau", float, min_val=0, min_inclusive=False, error=SelectionError)
        check_scalar(self.balance, "balance", float, min_val=0, error=SelectionError)
        check_scalar(self.lr, "lr", float, min_val=0, min_inclusive=False, error=SelectionError)
        check_scalar(self.iterations, "iterations", int, min_val=0, error=SelectionError)
        check_scalar(self.batch_size, "batch_size", int, min_val=1, error=SelectionError)


def _memory(shape: BankShape, budget: int, params: ActiveFTParams, run: RunSettings) -> int:
    k = budget + shape.labeled
    return (
        rows_bytes(shape)
        + blocks_bytes(min(run.chunk, shape.n), k, width=8)  # rows x centroids, float64
        + 40 * k * shape.dim  # centroids and Adam's moments, float64; gradient
        + 4 * min(params.batch_size, shape.n) * shape.dim  # the step's sample
    )


@register_sampler("activeft", ActiveFTParams, memory=_memory)
def activeft(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: ActiveFTParams,
    run: RunSettings,
) -> Ranking:
    """ActiveFT on the global features (not nested)."""
    pool = global_pool(bank, budget, labeled, distance, normalise=True)
    if distance != "cosine":
        log.info("activeft: the objective is defined on the unit sphere; using cosine similarity")
    chunk = run.chunk
    tau, balance, lr = params.tau, params.balance, params.lr
    iterations, batch_size = params.iterations, params.batch_size
    rng = np.random.default_rng([int(seed), 0x4143544654])
    start = rng.choice(np.flatnonzero(pool.pickable), size=budget, replace=False)
    fit = fit_centroids(
        pool.x,
        pool.x[start],
        pool.x[pool.labeled],
        rng,
        tau=tau,
        balance=balance,
        lr=lr,
        iterations=iterations,
        batch_size=batch_size,
        chunk=chunk,
        progress=run.progress,
    )
    if iterations:
        log.info("activeft: loss %.4f -> %.4f", fit.losses[0], fit.losses[-1])
    rows = nearest_unused(pool.x, pool.pickable, fit.centroids, np.arange(budget), chunk=chunk)
    return Ranking(
        pool.index[rows],
        np.full(budget, np.nan, np.float32),
        "activeft",
        seed,
        {"distance": "cosine", **params.as_dict()},
        nested=False,
        why_not_nested="as many centroids as the budget are fitted together, so every budget is "
        "solved afresh",
    )
