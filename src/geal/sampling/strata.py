"""strata: one image per equal-mass cell of the pool, the cells cut for the budget.

What a selection of ``b`` images should be. A model trained on the labels sees the
pool only through them, so each labeled image should stand for the same share of the
pool, about N / b images, and for images like itself. Cut the pool into ``b`` cells
of equal mass and small spread and label one image in each: with few labels the image
nearest the cell's centre, with more one that also keeps the pool's spread (below).

- Equal mass makes the selection follow the pool's density, as random sampling does
  in expectation, but without its variance: it is stratified sampling with one draw
  per stratum, whose estimate of any pool average has at most the variance of random
  sampling's (Cochran, "Sampling Techniques", 5.6). Dense regions get their share;
  an outlying handful of images gets no pick of its own, which is what sinks the
  diversity samplers (``fds``, ``kcenter``) at small budgets.
- Small spread makes each pick representative: the image nearest the centre of a
  compact cell is close to every image it stands for, which is what k-means centres
  and TypiClust's typical images buy at small budgets.

The budget moves the balance by itself. With few labels the cells are the large modes
of the pool and their centres are k-means-like representatives; as the budget grows
the cells shrink to a few images each, every pick stands for a few images near it,
and the selection tends to a stratified random sample of the pool, the
density-faithful but de-duplicated sample that wins at large budgets.

Construction (spherical, on the unit-length global features of the bank):

1. Bisect top-down. A node holding ``n`` images and ``b`` picks is split in two by
   spherical 2-means (k-means++ seeding, at most ``split_iter`` Lloyd steps); the
   child of ``n_c`` images gets ``round(b * n_c / n)`` picks. Nodes with one pick are
   cells; nodes with none hold too few images to deserve one. Every level costs
   O(N * D * split_iter), and there are about log2(b) levels.
2. Refine: at most ``refine`` Lloyd steps over all ``b`` cells at once, started from the
   cells' mean directions, which tighten the cells that bisection cut badly (a split
   is final for its subtree) while keeping the equal-mass start. Up to ``candidates``
   = 64 cells (labeled images count), each step compares every image with every
   centre, O(N * b * D), in blocks of at most ``chunk`` images and 4M similarities: no
   pool x pool matrix. Past it, an image may only move to the ``candidates`` centres
   nearest its cell's centre (k^2-means: Agustsson, Timofte and Van Gool, 2017), so a
   step costs O(N * candidates * D), and bounds skip what cannot change: the centres'
   lists are searched among their 4 x ``candidates`` nearest while a bound on the rest
   allows, and an image is compared with its candidates again only when they changed,
   it changed cell, or a bound on their similarities reaches its own centre's
   (:func:`~geal.kmeans.spherical.candidate_lloyd`). The cells' centres move a
   little per step, so an image's best centre is almost always among its cell's
   nearest; the fit and the accuracy this gives up are measured in
   ``docs/samplers.md``. A node's 2-means reads its images in place, so the root's
   split copies nothing.
3. Repeat 1-2 ``n_init`` times (the splits' seeding differs) and keep the tightest
   cells: the largest total similarity of the images to their cells' centres. Pools of
   ``one_cut_from`` = 200,000 images or more make one cut (the first of the ``n_init``),
   which costs a third of three.
4. Pick one unlabeled image in every cell (below); the ranking lists cells by size,
   largest first.

Which image of a cell. The image nearest the centre ``c`` stands best for its cell, but
a set of such images is narrower than the pool: a centre averages away the variation
inside its cell, so central picks keep less of the pool's variance than random picks
do (measured by ``benchmarks/strata_cells.py``; figures in ``docs/samplers.md``). While
each class gets one or two labels that does not
matter and centrality does: a pick is its class's prototype, and an off-centre pick
biases it. Once each class gets many labels, the prototypes are averages of many picks
and what the labels miss is the spread. So, past a switch, ``margin`` picks the image
``x`` of the cell maximising ``sim(x, c) - sim(x, c') / 2``, ``c'`` the nearest other
centre (a labeled image is a centre too): close to its centre, on the side away from
the neighbouring cells. Those picks keep about the pool's variance, as random picks do,
and help the linear probe past the switch while hurting it below
(``benchmarks/results/strata_tradeoff.json``, summarised in ``docs/samplers.md``).

The switch is ``labels <= centre_below * d`` (labels: budget plus labeled images), with
``d`` the pool's effective dimension, the participation ratio ``tr(C)^2 / tr(C^2)`` of
the covariance of its features: the number of directions it spreads over. Picks can
only restore the spread of the directions they outnumber, and the prototypes settle
once the labels are a few per direction. ``centre_below = 3`` is measured, not derived:
the crossover of the two rules in ``benchmarks/results/strata_tradeoff.json``. ``d``
costs O(N D^2) once, only when it decides the rule (``d <= D``, so never past
``centre_below * D`` labels), and is exact on the grid (sums of
grid products are exact in float64). A ``margin`` pick's nearest other centre is
searched among its cell's candidates, like the Lloyd steps.

With fewer labels still, ``labels <= typical_below * d`` (0.5: one label for every two
directions the pool spreads over), each cell is wide, its centre an average of unlike
images, and the image nearest it is an average-looking one. There ``auto`` labels the
cell's most typical image instead (TypiClust's typicality, the highest mean similarity
to its ``knn`` nearest neighbours in the cell): a mode of the cell, an image many others
look like. A cell of more than ``TYPICAL_SAMPLE`` = 10,000 images takes its typical
image from a seeded sample of that many, and its neighbours among them: typicality costs
the square of the images it compares: 4.1 s for one cell of 20,000 on 2 cores, 1.0 s for
10,000 (``benchmarks/typicality_cost.py``). ``typical_below`` was chosen on tuning runs only
(``benchmarks/strata_typical.py``): below 0.5 the typical picks led the central ones by
3.2 +- 0.6 points over 50 points, from 0.5 to 1 they were level (-0.3 +- 0.4), beyond 1
behind (-1.7).

Labeled images: each is a fixed cell centre. At a split, each child is owed
``(b + l) * n_c / n`` picks less the ``l_c`` labeled images it already holds, and the
node's ``b`` free picks go to the children in proportion to what they are owed, so
free picks go where the labeled images leave the pool under-represented.

Not nested: the cells depend on the budget (a budget of 2b is not the budget of b
plus b more cells), so every budget is cut afresh; ``selection.json`` says so.
Exact and deterministic: the features and centres are rounded to the same 2^-11 grid
as the pattern samplers' (see ``docs/samplers.md``), so every dot product is exact in
float32 and every sum of features is exact in float64; assignments, splits and picks
do not depend on ``chunk``, the thread count or the order of summation, and the only
randomness is the seeded draw of each split's two starting centres.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geal.coverage import to_grid
from geal.errors import SelectionError
from geal.internal.validation import check_choice, check_scalar
from geal.kmeans.spherical import (
    BLOCK,
    NEAR,
    candidate_lists,
    candidate_lloyd,
    candidate_runner_up,
    grid_assign,
    grid_lloyd,
    grid_two_means,
)
from geal.sampling.base import BankShape, Ranking, RunSettings, SamplerParams, register_sampler
from geal.sampling.features import global_pool, rows_bytes

if TYPE_CHECKING:
    from geal.bank import PatternBank

log = logging.getLogger(__name__)

PICKS = ("auto", "centre", "margin", "typical", "objects")
STARTS = ("bisect", "plusplus")
CUTS = ("fit", "picks")
CENTRE_BELOW = 3.0  # labels per effective dimension up to which picks are central
TYPICAL_BELOW = 0.5  # labels per effective dimension up to which picks are typical
TYPICAL_SAMPLE = 10_000  # a typical pick in a larger cell comes from a sample this size
MARGIN_WEIGHT = 0.5  # weight of the nearest other centre in a margin pick
ONE_CUT_FROM = 200_000  # pools of this many images make one cut
CANDIDATES = 64  # centres a Lloyd step may move an image to (all of them up to 64 cells)
WHY_NOT_NESTED = (
    "the pool is cut into as many equal-mass cells as the budget, so a larger budget "
    "cuts different cells; every budget is selected afresh"
)


def runner_up(
    x: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray,
    chunk: int,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Similarity of every row to the most similar centre other than its own
    (``labels``), float32 ``[n]``; -1 (the least a cosine can be) with one centre.
    With ``candidates`` (each centre's, :func:`~geal.kmeans.spherical.candidate_lists`),
    only its cell's candidates are searched. Exact on the grid, so independent of
    ``chunk``."""
    n, k = x.shape[0], centres.shape[0]
    if candidates is not None and candidates.shape[1] < k:
        return candidate_runner_up(x, centres, labels, candidates)
    out = np.full(n, -1.0, dtype=np.float32)
    if k < 2:
        return out
    chunk = max(1, min(chunk, BLOCK // k))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        s = x[a:b] @ centres.T
        s[np.arange(b - a), labels[a:b]] = -np.inf
        out[a:b] = s.max(1)
    return out


def nearest_rows(
    x: np.ndarray, rows: np.ndarray, centres: np.ndarray, chunk: int, m: int = 16
) -> np.ndarray:
    """For every centre, the ``m`` of ``rows`` most similar to it, most similar first
    (lower row on ties), int64 ``[len(centres), m]``: one pass over ``x[rows]``, ``chunk``
    rows at a time. Exact on the grid, so independent of ``chunk``."""
    f = centres.shape[0]
    m = max(1, min(m, rows.size))
    best_s = np.full((f, 0), 0, np.float32)
    best_r = np.full((f, 0), 0, np.int64)
    for a in range(0, rows.size, chunk):
        r = rows[a : a + chunk]
        s = centres @ x[r].T  # [f, len(r)]
        top = np.argsort(-s, axis=1, kind="stable")[:, :m]  # stable: lower row on ties
        cs = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cr = np.concatenate([best_r, r[top]], 1)
        keep = np.lexsort((cr, -cs), axis=-1)[:, :m]
        best_s = np.take_along_axis(cs, keep, 1)
        best_r = np.take_along_axis(cr, keep, 1)
    return best_r


def pick_scores(
    x: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray,
    weight: float,
    chunk: int,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Score of every row as its cell's pick, float64 ``[n]``: its similarity to its own
    centre, less ``weight`` times its similarity to the nearest other centre (among its
    cell's ``candidates`` if given; weight 0: the central image scores highest). Exact on
    the grid: both similarities are multiples of 2^-22."""
    score = np.empty(x.shape[0], dtype=np.float64)
    for a in range(0, x.shape[0], chunk):  # no N x D gather of the centres
        b = min(a + chunk, x.shape[0])
        score[a:b] = np.einsum("ij,ij->i", x[a:b], centres[labels[a:b]], dtype=np.float64)
    if weight:
        score -= weight * runner_up(x, centres, labels, chunk, candidates).astype(np.float64)
    return score


def cell_typicality(x: np.ndarray, rows: np.ndarray, knn: int, chunk: int) -> np.ndarray:
    """Typicality of each of ``rows`` within them (TypiClust's, on the sphere): minus the
    mean cosine distance to its ``knn`` nearest other rows (fewer in small cells),
    float64 ``[len(rows)]``. Exact on the grid (every similarity is a multiple of
    2^-22), so independent of ``chunk``."""
    n = rows.size
    k = min(knn, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    cell = x[rows]
    step = max(1, min(chunk, BLOCK // max(n, 1)))
    for a in range(0, n, step):
        b = min(a + step, n)
        s = cell[a:b] @ cell.T
        s[np.arange(b - a), np.arange(a, b)] = -np.inf  # not its own neighbour
        top = -np.partition(-s, k - 1, axis=1)[:, :k]
        out[a:b] = top.sum(1, dtype=np.float64) / k  # mean similarity: 1 - mean distance
    return out


def effective_dimension(x: np.ndarray, rows: int = 8192) -> float:
    """Participation ratio tr(C)^2 / tr(C^2) of the covariance C of the grid rows ``x``:
    about m for a pool spread evenly over m directions, 1 for a pool on a line.

    The sums of products of grid rows are exact in float64 (multiples of 2^-22 below
    2^31), so the result does not depend on ``rows``, the thread count or the BLAS."""
    n, d = x.shape
    gram = np.zeros((d, d), dtype=np.float64)
    total = np.zeros(d, dtype=np.float64)
    for a in range(0, n, rows):
        block = np.asarray(x[a : a + rows], dtype=np.float64)
        gram += block.T @ block
        total += block.sum(0)
    mean = total / max(n, 1)
    cov = gram / max(n, 1) - np.outer(mean, mean)
    trace = float(np.trace(cov))
    square = float((cov * cov).sum())
    return trace * trace / square if square > 0 else 0.0


def share(b: int, n: tuple[int, int], lab: tuple[int, int], free: tuple[int, int]) -> int:
    """Picks of the first child out of a node's ``b``: proportional to what each child
    is owed (its share of ``b`` plus the node's labeled images, less its own labeled
    ones), within what each child can give (its unlabeled images)."""
    total = b + lab[0] + lab[1]
    size = n[0] + n[1]
    owed = [max(total * n[i] / size - lab[i], 0.0) for i in (0, 1)]
    weight = owed if owed[0] + owed[1] > 0 else [float(free[0]), float(free[1])]
    b0 = int(np.floor(b * weight[0] / (weight[0] + weight[1]) + 0.5))
    return min(max(b0, b - free[1]), free[0])


def cut(
    x: np.ndarray,
    is_lab: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    split_iter: int,
    strays: list[tuple[np.ndarray, int]] | None = None,
) -> list[np.ndarray]:
    """Bisect the pool into cells of one free pick each (row arrays, unlabeled rows
    and any labeled rows among them); depth first, first side first. The rows of a
    child too small for a pick belong to no cell; with ``strays``, each such child is
    appended to it with a row of its sibling, in the order they are cut."""
    cells: list[np.ndarray] = []
    stack = [(np.arange(x.shape[0]), budget, int(is_lab.sum()))]  # rows, picks, labeled
    while stack:
        rows, b, lab = stack.pop()
        free = rows.size - lab
        if b == 1 and lab == 0:
            cells.append(rows)
            continue
        if free == b:  # every unlabeled image is a cell of its own
            cells.extend(r[None] for r in rows[~is_lab[rows]])
            continue
        side = grid_two_means(x, rng, split_iter, rows)
        kids = (rows[~side], rows[side])
        lk = (int(is_lab[kids[0]].sum()), int(is_lab[kids[1]].sum()))
        fk = (kids[0].size - lk[0], kids[1].size - lk[1])
        b0 = share(b, (kids[0].size, kids[1].size), lk, fk)
        for i, bb in ((1, b - b0), (0, b0)):  # popped: first side first
            if bb > 0:
                stack.append((kids[i], bb, lk[i]))
            elif strays is not None:
                strays.append((kids[i], int(kids[1 - i][0])))
    return cells


def fit_cells(
    x: np.ndarray,
    is_lab: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    refine: int,
    split_iter: int,
    chunk: int,
    candidates: int = CANDIDATES,
    start: str = "bisect",
) -> tuple[float, np.ndarray, np.ndarray, int]:
    """One cut and its refinement: (total similarity of the rows to their cell centres,
    cell of every row (labeled images first, as their own centres), centres, Lloyd
    steps run). With more centres than ``candidates``, a Lloyd step moves a row only
    among the ``candidates`` centres nearest its own."""
    fixed = x[is_lab]
    nf = fixed.shape[0]
    if start == "plusplus":  # k-means++ seeds instead of the bisection's equal-mass cells
        from geal.kmeans.rows import kmeans_pp

        free_rows = np.flatnonzero(~is_lab)
        ones = np.ones(free_rows.size, np.float32)
        seeds = free_rows[
            kmeans_pp(x[free_rows], ones, budget, rng, fixed=fixed if nf else None, chunk=chunk)
        ]
        centres = np.concatenate([fixed, x[seeds]])
        labels, _ = grid_assign(x, centres, chunk)
        labels[np.flatnonzero(is_lab)] = np.arange(nf)
        labels, sim, centres, steps = grid_lloyd(x, centres, labels, nf, refine, chunk)
        return float(sim.sum(dtype=np.float64)), labels, centres, steps
    strays: list[tuple[np.ndarray, int]] = []
    cells = cut(x, is_lab, budget, rng, split_iter, strays)
    k = len(cells)
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    for j, rows in enumerate(cells):
        for a in range(0, rows.size, chunk):  # exact float64 sums: any split
            sums[j] += x[rows[a : a + chunk]].sum(0, dtype=np.float64)
        labels[rows] = nf + j
    labels[np.flatnonzero(is_lab)] = np.arange(nf)  # a labeled image is its own centre's
    centres = np.concatenate([fixed, to_grid(sums)])  # the cells' mean directions
    if centres.shape[0] <= candidates:  # every centre a candidate: the plain step is faster
        labels, sim, centres, steps = grid_lloyd(x, centres, labels, nf, refine, chunk)
    else:
        # a row of no cell starts in a cell of its sibling's (the deepest strays first,
        # so that the sibling row has one), its first step among that cell's candidates
        for rows, near in reversed(strays):
            labels[rows[labels[rows] < 0]] = labels[near]
        labels, sim, centres, steps = candidate_lloyd(
            x, centres, labels, nf, refine, chunk, candidates
        )
    # exact float32 similarities, so their float64 sum is exact in any order
    fit = float(sim.sum(dtype=np.float64))
    return fit, labels, centres, steps


def tightest_cells(
    x: np.ndarray,
    is_lab: np.ndarray,
    budget: int,
    seed: int,
    *,
    refine: int = 100,
    split_iter: int = 20,
    n_init: int = 3,
    chunk: int = 4096,
    candidates: int = CANDIDATES,
    start: str = "bisect",
    criterion: str = "fit",
) -> tuple[np.ndarray, np.ndarray, int]:
    """The tightest of ``n_init`` cuts of the grid rows ``x``: (cell of every row, the
    labeled images first as their own cells; centres; Lloyd steps run). ``criterion``
    ``fit``: the rows' total similarity to their cells' centres; ``picks``: to the
    nearest of the cells' central images and the labeled ones
    (:func:`central_picks_fit`)."""
    rng = np.random.default_rng([int(seed), 0x535452415441])
    best: tuple[float, np.ndarray, np.ndarray, int] | None = None
    for i in range(n_init):
        run = fit_cells(x, is_lab, budget, rng, refine, split_iter, chunk, candidates, start)
        log.info("strata: cut %d: fit %.6f, %d refinement steps", i, run[0] / x.shape[0], run[3])
        if criterion == "picks":
            run = (central_picks_fit(x, is_lab, run[1], run[2], chunk), *run[1:])
            log.info("strata: cut %d: central picks' fit %.6f", i, run[0] / x.shape[0])
        if best is None or run[0] > best[0]:
            best = run
    assert best is not None
    return best[1], best[2], best[3]


def central_picks_fit(
    x: np.ndarray, is_lab: np.ndarray, labels: np.ndarray, centres: np.ndarray, chunk: int
) -> float:
    """Total similarity of the rows to the nearest of the cells' central images (each
    cell's free row nearest its centre) and the labeled rows: how well the images a
    ``centre`` pick would label stand for the pool, the k-medoids objective."""
    own = pick_scores(x, centres, labels, 0.0, chunk)  # similarity to the own centre
    free = np.flatnonzero(~is_lab & (labels >= int(is_lab.sum())))  # rows of cells to pick in
    order = free[np.lexsort((-own[free], labels[free]))]  # by cell, most central first
    first = np.ones(order.size, dtype=bool)
    first[1:] = labels[order[1:]] != labels[order[:-1]]
    reps = np.concatenate([np.flatnonzero(is_lab), order[first]])
    p = x[reps]
    best = np.concatenate(
        [(x[a : a + chunk] @ p.T).max(axis=1) for a in range(0, x.shape[0], chunk)]
    )
    return float(best.sum(dtype=np.float64))


@dataclass(frozen=True)
class StrataParams(SamplerParams):
    """Hyperparameters of ``strata``.

    Attributes:
        pick: ``centre`` (the image most similar to its cell's centre c), ``margin``
            (the image x maximising sim(x, c) - w sim(x, c'), c' the nearest other
            centre), ``auto`` (``centre`` while the labels, budget plus labeled
            images, are at most ``centre_below`` times the pool's effective dimension,
            ``margin`` beyond; ``typical`` while they are at most ``typical_below``
            times it), ``typical`` (TypiClust's typicality within the cell) or
            ``objects`` (the image whose attention spreads over the most tokens, the
            bank's kept-token count, ties broken by ``auto``'s rule: for detection
            pools, where an image holding more objects teaches the detector more;
            measured in ``benchmarks/results/detection.md``).
        centre_below: labels per effective dimension up to which ``auto`` picks
            centres (>= 0).
        typical_below: labels per effective dimension up to which ``auto`` picks
            typical images instead of centres (>= 0; 0: never).
        margin_weight: w of ``margin`` picks, in [0, 1] (0 is ``centre``).
        refine: Lloyd steps over all cells after the bisection (>= 0; with 0, every
            image only joins the cell of the nearest bisection centre).
        split_iter: Lloyd steps of each 2-means split (>= 1).
        n_init: cuts made (each with its own draws), the tightest kept (>= 1).
        cut: which of the ``n_init`` cuts is kept: ``fit`` (the tightest: the images'
            total similarity to their cells' centres) or ``picks`` (while ``centre``
            picks are made: the images' total similarity to the nearest of the cells'
            central images, the k-medoids objective of what gets labeled; else ``fit``).
            Measured on tuning runs and not adopted: no change beyond noise
            (``benchmarks/results/heldout_tuning_cut.md``).
        one_cut_from: pools of at least this many images make one cut, whatever
            ``n_init`` says (>= 1): cells of many images each vary little from cut to
            cut, and each cut costs a bisection and a refinement over the whole pool
            (``docs/samplers.md``).
        candidates: centres a Lloyd step may move an image to, those nearest its
            cell's centre, its own among them (>= 2). With at most this many cells
            (budget plus labeled images) every centre is a candidate, the exact Lloyd
            step; beyond, a step costs N x ``candidates`` similarities instead of
            N x cells, and so does finding the nearest other centre of a ``margin``
            pick. The default, 64, keeps the step exact at small budgets, where each
            pick weighs most, and its cost flat in the budget; what it changes beyond
            is measured in ``benchmarks/results/strata_candidates.json``
            (``docs/samplers.md``).
    """

    pick: str = "auto"
    centre_below: float = CENTRE_BELOW
    typical_below: float = TYPICAL_BELOW
    margin_weight: float = MARGIN_WEIGHT
    refine: int = 100
    split_iter: int = 20
    n_init: int = 3
    one_cut_from: int = ONE_CUT_FROM
    candidates: int = CANDIDATES
    knn: int = 20
    start: str = "bisect"
    cut: str = "fit"

    def __post_init__(self) -> None:
        check_choice(self.pick, "strata: pick", PICKS, error=SelectionError)
        check_scalar(self.centre_below, "centre_below", float, min_val=0, error=SelectionError)
        check_scalar(self.typical_below, "typical_below", float, min_val=0, error=SelectionError)
        check_scalar(
            self.margin_weight, "margin_weight", float, min_val=0, max_val=1, error=SelectionError
        )
        check_scalar(self.refine, "refine", int, min_val=0, error=SelectionError)
        check_scalar(self.split_iter, "split_iter", int, min_val=1, error=SelectionError)
        check_scalar(self.n_init, "n_init", int, min_val=1, error=SelectionError)
        check_scalar(self.one_cut_from, "one_cut_from", int, min_val=1, error=SelectionError)
        check_scalar(self.candidates, "candidates", int, min_val=2, error=SelectionError)
        check_scalar(self.knn, "knn", int, min_val=1, error=SelectionError)
        check_choice(self.start, "strata: start", STARTS, error=SelectionError)
        check_choice(self.cut, "strata: cut", CUTS, error=SelectionError)


def _memory(shape: BankShape, budget: int, params: StrataParams, run: RunSettings) -> int:
    k = budget + shape.labeled
    c = min(params.candidates, k)
    return (
        max(
            rows_bytes(shape),  # reading the rows; then they are rounded to the grid in place
            4 * shape.n * shape.dim + 136 * shape.n,  # the rows and the per-row state: cells,
            # similarities, bounds, the best cut's cells, the split stack, scores, orders
        )
        + 2 * 4 * BLOCK  # similarity blocks
        + 32 * k * shape.dim  # centres, their sums and drifts, the best cut's centres
        + 2 * 8 * k * c * (1 + NEAR)  # candidate lists and each centre's nearest
    )


@register_sampler("strata", StrataParams, memory=_memory)
def strata(
    bank: PatternBank,
    budget: int,
    *,
    seed: int,
    labeled: Sequence[int] | None,
    distance: str,
    params: StrataParams,
    run: RunSettings,
) -> Ranking:
    """One image of each of ``budget`` equal-mass cells (not nested): the image nearest
    the cell's centre at small budgets, one that also keeps clear of the neighbouring
    cells at larger ones (hyperparameters: :class:`StrataParams`)."""
    t0 = time.perf_counter()
    pool = global_pool(bank, budget, labeled, distance, normalise=True)
    if distance != "cosine":
        log.info("strata: cells are cut on the unit sphere; using cosine similarity")
    if run.device not in ("cpu", "auto"):
        log.info("strata: selects on the CPU; --device speeds up prob, fds and kcenter")
    chunk = run.chunk
    refine, split_iter, n_init = params.refine, params.split_iter, params.n_init
    if pool.n >= params.one_cut_from:
        n_init = 1
    pick_rule = params.pick
    kept = None
    if pick_rule == "objects":
        kept = bank.kept_tokens
        if kept is None:
            where = f" {bank.root}" if bank.root is not None else ""
            raise SelectionError(
                f"strata pick=objects needs the bank's kept-token counts, which bank{where} "
                "does not record (made by an older geal); delete it, or extract into a new "
                "--out, and run again"
            )
        kept = kept[pool.index]
        pick_rule = "auto"
    centre_below, weight = params.centre_below, params.margin_weight
    x = pool.x  # the pool's own unit rows, rounded to the grid in place: no second copy
    for a in range(0, pool.n, 4096):  # 4096 rows: ~40 MB of float64 temporaries
        x[a : a + 4096] = to_grid(x[a : a + 4096])
    is_lab = pool.labeled
    nf = int(is_lab.sum())
    d_eff = None  # measured only when it decides the rule
    if pick_rule == "auto" and budget + nf > centre_below * x.shape[1]:
        pick_rule = "margin"  # d_eff is at most the dimension: no need to measure it
    elif pick_rule == "auto":
        d_eff = effective_dimension(x)
        n_labels = budget + nf
        pick_rule = (
            "typical"
            if n_labels <= params.typical_below * d_eff
            else "centre"
            if n_labels <= centre_below * d_eff
            else "margin"
        )
    t1 = time.perf_counter()
    labels, centres, steps = tightest_cells(
        x,
        is_lab,
        budget,
        seed,
        refine=refine,
        split_iter=split_iter,
        n_init=n_init,
        chunk=chunk,
        candidates=params.candidates,
        start=params.start,
        criterion="picks" if params.cut == "picks" and pick_rule == "centre" else "fit",
    )
    t2 = time.perf_counter()
    k = centres.shape[0] - nf
    cand = None
    if pick_rule == "margin" and nf + k > params.candidates:
        cand = candidate_lists(centres, params.candidates)[0]
    score = pick_scores(x, centres, labels, weight if pick_rule == "margin" else 0.0, chunk, cand)
    sizes = np.bincount(labels, minlength=nf + k)[nf:]
    order = np.argsort(-sizes, kind="stable")
    free = ~is_lab
    picks = np.empty(k, dtype=np.int64)
    used = np.zeros(pool.n, dtype=bool)
    by_cell = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[by_cell], np.arange(nf + k + 1))
    # cells with no unlabeled image (emptied by the refinement, or labeled images only)
    # take the nearest free image not yet picked: their few nearest, in one pass
    bare = [j for j in range(k) if not free[by_cell[starts[nf + j] : starts[nf + j + 1]]].any()]
    near = (
        dict(
            zip(
                bare,
                nearest_rows(
                    x, np.flatnonzero(free), centres[nf + np.array(bare, np.int64)], chunk
                ),
                strict=True,
            )
        )
        if bare
        else {}
    )
    for t, j in enumerate(order):
        rows = by_cell[starts[nf + j] : starts[nf + j + 1]]
        rows = rows[free[rows] & ~used[rows]]
        if rows.size == 0:  # the nearest free image not yet picked
            rows = near[j][~used[near[j]]][:1]
            if rows.size == 0:  # all of its nearest are taken: every free image
                rows = np.flatnonzero(free & ~used)
                s = np.concatenate(
                    [x[rows[a : a + chunk]] @ centres[nf + j] for a in range(0, rows.size, chunk)]
                )
            else:
                s = np.zeros(1)
        else:
            if pick_rule == "typical":
                if rows.size > TYPICAL_SAMPLE:  # O(cell^2) otherwise: minutes at 1M images
                    draw = np.random.default_rng([int(seed), 0x54595049, int(j)])
                    rows = np.sort(draw.choice(rows, TYPICAL_SAMPLE, replace=False))
                s = cell_typicality(x, rows, params.knn, chunk)
            else:
                s = score[rows]
            if kept is not None:  # the most kept tokens, then the rule's score
                busiest = kept[rows] == kept[rows].max()
                rows, s = rows[busiest], s[busiest]
        pick = int(rows[int(np.argmax(s))])  # first on ties: rows are in pool order
        picks[t] = pick
        used[pick] = True
    log.info(
        "strata: %d cells, %d refinement steps, %s picks; %.1f s rows, %.1f s cells, %.1f s picks",
        k,
        steps,
        pick_rule,
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )
    ranked = {
        "distance": "cosine",
        "pick": pick_rule if kept is None else f"objects, ties by {pick_rule}",
        "pick_option": params.pick,
        "centre_below": centre_below,
        "typical_below": params.typical_below,
        "margin_weight": weight,
        "effective_dimension": None if d_eff is None else round(d_eff, 3),
        "refine": refine,
        "split_iter": split_iter,
        "n_init": n_init,
        "n_init_option": params.n_init,
        "candidates": params.candidates,
        **({"cut": params.cut} if params.cut != "fit" else {}),
        **({"knn": params.knn} if pick_rule == "typical" else {}),
    }
    return Ranking(
        pool.index[picks],
        np.full(k, np.nan, np.float32),
        "strata",
        seed,
        ranked,
        nested=False,
        why_not_nested=WHY_NOT_NESTED,
    )
