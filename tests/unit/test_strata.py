"""strata: one image per equal-mass cell, cells cut for the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geal.bank import PatternBank
from geal.errors import SelectionError
from geal.kmeans import candidate_lists, candidate_lloyd, grid_lloyd
from geal.sampling import RunSettings, select
from geal.sampling import strata as strata_module
from geal.sampling.features import unit
from geal.sampling.strata import (
    central_picks_fit,
    cut,
    effective_dimension,
    fit_cells,
    runner_up,
    share,
    tightest_cells,
    to_grid,
)
from geal.selection import write_selection_json


def clusters(sizes: list[int], dim: int = 24, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    """Well-separated clusters of the given sizes around random unit directions."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(len(sizes), dim)).astype(np.float32))
    return np.concatenate(
        [c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes, strict=True)]
    ).astype(np.float32)


def bank_of(x: np.ndarray) -> PatternBank:
    return PatternBank.from_arrays(x, np.ones(len(x), np.int64), global_=x)


def owner(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def test_picks_follow_the_pools_mass() -> None:
    # a cluster of 5% of the pool gets 5% of the picks, not a pick per cluster
    sizes = [120, 60, 15, 5]
    x = clusters(sizes, seed=1)
    r = select(bank_of(x), 20, "strata", seed=0)
    got = np.bincount(owner(sizes)[r.order], minlength=4)
    np.testing.assert_array_equal(got, [12, 6, 1, 1])
    r = select(bank_of(x), 4, "strata", seed=0)
    assert 3 not in owner(sizes)[r.order]  # 5 images of 200 are not worth 1 of 4 picks


def test_one_cell_per_cluster_picks_the_image_nearest_its_mean() -> None:
    sizes = [30, 30, 30, 30, 30]
    x = clusters(sizes, dim=32, seed=0)
    r = select(bank_of(x), 5, "strata", seed=3)
    g = to_grid(unit(x)).astype(np.float64)
    expected = set()
    for c in range(5):
        part = g[c * 30 : (c + 1) * 30]
        m = part.sum(0)
        expected.add(c * 30 + int(np.argmax(part @ (m / np.linalg.norm(m)))))
    assert set(r.order.tolist()) == expected
    assert not r.nested and r.why_not_nested and np.isnan(r.radius).all()


def test_labeled_images_count_towards_their_clusters_share() -> None:
    sizes = [50, 50]
    x = clusters(sizes, seed=2)
    labeled = list(range(10))  # 10 of cluster 0: with 10 more picks, each cluster is owed 10
    r = select(bank_of(x), 10, "strata", seed=0, labeled=labeled)
    assert (owner(sizes)[r.order] == 1).all()
    r = select(bank_of(x), 30, "strata", seed=0, labeled=labeled)
    np.testing.assert_array_equal(np.bincount(owner(sizes)[r.order]), [10, 20])


def test_share_splits_what_is_owed_within_what_each_side_holds() -> None:
    assert share(4, (30, 10), (0, 0), (30, 10)) == 3
    assert share(4, (20, 20), (4, 0), (16, 20)) == 0  # the labeled side is already served
    assert share(5, (10, 2), (0, 0), (10, 2)) == 4
    assert share(5, (2, 10), (0, 0), (2, 10)) == 1
    assert share(3, (4, 4), (0, 0), (1, 4)) == 1  # no more than a side's unlabeled images


def test_cells_partition_the_pool_with_one_pick_each() -> None:
    x = to_grid(unit(clusters([40, 25, 9], seed=4)))
    is_lab = np.zeros(len(x), bool)
    is_lab[[0, 1, 50]] = True
    cells = cut(x, is_lab, 11, np.random.default_rng(0), 20)
    assert len(cells) == 11
    rows = np.concatenate(cells)
    assert np.unique(rows).size == rows.size  # disjoint
    assert all((~is_lab[c]).any() for c in cells)


@pytest.mark.parametrize(
    "options", [{}, {"refine": 0}, {"n_init": 1}, {"pick": "centre"}, {"pick": "margin"}]
)
def test_same_selection_whatever_the_chunk(options: dict[str, int]) -> None:
    x = clusters([70, 40, 30, 20], dim=40, spread=0.3, seed=5)
    bank = bank_of(x)
    runs = [
        select(bank, 17, "strata", seed=9, run=RunSettings(chunk=c), **options).order
        for c in (3, 64, 4096)
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)


def test_a_pool_of_one_cut_from_images_makes_one_cut() -> None:
    x = clusters([70, 40, 30, 20], dim=40, spread=0.3, seed=5)
    bank = bank_of(x)
    one = select(bank, 17, "strata", seed=9, n_init=1)
    big = select(bank, 17, "strata", seed=9, one_cut_from=len(x))
    small = select(bank, 17, "strata", seed=9, one_cut_from=len(x) + 1)
    np.testing.assert_array_equal(one.order, big.order)
    assert big.params["n_init"] == 1 and big.params["n_init_option"] == 3
    assert small.params["n_init"] == 3


def test_grid_products_are_exact_in_float32() -> None:
    rng = np.random.default_rng(6)
    g = to_grid(rng.normal(size=(50, 384)))
    exact = g.astype(np.float64) @ g.astype(np.float64).T
    np.testing.assert_array_equal((g @ g.T).astype(np.float64), exact)
    np.testing.assert_allclose(np.linalg.norm(g.astype(np.float64), axis=1), 1.0, atol=0.02)


def test_bad_options_are_refused() -> None:
    bank = bank_of(clusters([10, 10]))
    for bad in (
        {"refine": -1},
        {"split_iter": 0},
        {"n_init": 0},
        {"one_cut_from": 0},
        {"pick": "middle"},
        {"centre_below": -1},
        {"candidates": 1},
        {"cut": "best"},
    ):
        with pytest.raises(SelectionError):
            select(bank, 3, "strata", **bad)


def test_selection_json_says_why_it_does_not_nest(tmp_path) -> None:
    r = select(bank_of(clusters([10, 10])), 3, "strata")
    path = write_selection_json(tmp_path, r, 3, bank_manifest_hash="x", pool=None)
    doc = json.loads(path.read_text())
    assert doc["nested"] is False and "equal-mass cells" in doc["why_not_nested"]
    assert doc["params"]["pick"] in ("centre", "margin") and doc["params"]["pick_option"] == "auto"


def test_effective_dimension_counts_the_directions_the_pool_spreads_over() -> None:
    # equal mass on 6 orthogonal directions: the covariance is a projection of rank 5
    x = to_grid(np.repeat(np.eye(8, dtype=np.float32)[:6], 7, axis=0))
    assert effective_dimension(x) == pytest.approx(5.0, rel=1e-12)
    pair = to_grid(np.array([[3.0, 0.0, 4.0]] * 9 + [[0.0, 1.0, 0.0]] * 2, np.float32))
    assert effective_dimension(pair) == pytest.approx(1.0, rel=1e-12)  # on one line
    rng = np.random.default_rng(11)
    g = to_grid(rng.normal(size=(301, 16)))
    assert effective_dimension(g, rows=7) == effective_dimension(g)  # exact sums


def test_margin_picks_keep_clear_of_the_neighbouring_cells() -> None:
    x = clusters([60, 60, 60], dim=12, spread=0.4, seed=8)
    bank = bank_of(x)
    centre = select(bank, 12, "strata", seed=2, pick="centre")
    margin = select(bank, 12, "strata", seed=2, pick="margin")
    # the same cells (the pick does not change the cut); recompute them and both rules
    g = to_grid(unit(x))
    labels, centres, _ = tightest_cells(g, np.zeros(len(g), bool), 12, 2)
    own = (g.astype(np.float64) * centres[labels]).sum(1)
    other = runner_up(g, centres, labels, 4096).astype(np.float64)
    want_centre, want_margin = set(), set()
    for j in range(12):
        rows = np.flatnonzero(labels == j)
        want_centre.add(int(rows[np.argmax(own[rows])]))
        want_margin.add(int(rows[np.argmax(own[rows] - 0.5 * other[rows])]))
    assert set(centre.order.tolist()) == want_centre
    assert set(margin.order.tolist()) == want_margin
    assert want_margin != want_centre
    # a margin pick gives up some similarity to its centre for distance from the others
    cell = labels[margin.order]
    picked_c = np.array([next(i for i in centre.order if labels[i] == c) for c in cell])
    assert (other[margin.order] <= other[picked_c]).all()
    assert (own[margin.order] <= own[picked_c]).all()
    assert other[margin.order].mean() < other[picked_c].mean()


def test_auto_picks_typical_then_central_then_margin_images_as_labels_per_dimension_grow() -> None:
    x = clusters([40, 40, 40, 40, 40, 40], dim=16, spread=0.2, seed=3)
    bank = bank_of(x)
    d_eff = effective_dimension(to_grid(unit(x)))
    below = int(3 * d_eff)  # the last budget with central picks
    typical = int(0.5 * d_eff)  # the last budget with typical picks
    assert typical >= 2
    rules = (
        (typical, "typical"),
        (typical + 1, "centre"),
        (below, "centre"),
        (below + 1, "margin"),
    )
    for budget, rule in rules:
        auto = select(bank, budget, "strata", seed=4)
        assert auto.params["pick"] == rule and auto.params["effective_dimension"] > 0
        fixed = select(bank, budget, "strata", seed=4, pick=rule)
        np.testing.assert_array_equal(auto.order, fixed.order)
    # labeled images count as labels: 5 more make the same budget past the switch
    auto = select(bank, below, "strata", seed=4, labeled=[0, 50, 100, 150, 200])
    assert auto.params["pick"] == "margin"
    assert select(bank, below + 1, "strata", seed=4, centre_below=100).params["pick"] == "centre"
    assert select(bank, typical, "strata", seed=4, typical_below=0).params["pick"] == "centre"


def start(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid centres of ``k`` random rows and a random start (some rows in no cell)."""
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    labels = rng.integers(0, k, len(x))
    labels[rng.choice(len(x), len(x) // 10, replace=False)] = -1
    return centres, labels


def test_candidate_lists_are_the_nearest_centres_lowest_index_on_ties() -> None:
    rng = np.random.default_rng(12)
    c = to_grid(rng.normal(size=(90, 3)))
    c[[5, 9, 40]] = c[7]  # exact ties
    cand, thr = candidate_lists(c, 11)
    s = c.astype(np.float64) @ c.astype(np.float64).T
    for a in range(len(c)):
        row = s[a].copy()
        row[a] = np.inf
        want = np.lexsort((np.arange(len(c)), -row))[:11]
        np.testing.assert_array_equal(cand[a], np.sort(want))
        assert thr[a] == row[want[-1]]


@pytest.mark.parametrize("fixed", [0, 3])
def test_candidate_lloyd_with_every_centre_a_candidate_is_lloyd(fixed: int) -> None:
    x = to_grid(unit(clusters([80, 60, 50, 40, 30], dim=16, spread=0.4, seed=13)))
    centres, labels = start(x, 25, 1)
    want = grid_lloyd(x, centres, labels, fixed, 50, 4096)
    got = candidate_lloyd(x, centres, labels, fixed, 50, 4096, 25)
    assert want[3] > 2  # several steps ran
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_candidate_lloyd_does_not_depend_on_the_chunk() -> None:
    x = to_grid(unit(clusters([80, 60, 50, 40, 30], dim=16, spread=0.4, seed=14)))
    centres, labels = start(x, 40, 2)
    runs = [candidate_lloyd(x, centres, labels, 2, 30, chunk, 6) for chunk in (5, 64, 4096)]
    for other in runs[1:]:
        for w, g in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(w, g)


def naive_candidate_lloyd(
    x: np.ndarray, centres: np.ndarray, labels: np.ndarray, fixed: int, steps: int, c: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """candidate_lloyd as defined: every step finds every centre's candidates among all
    centres and compares every row with all its cell's candidates."""
    centres = centres.copy()
    labels = labels.copy()
    k = len(centres)
    step = 0
    sim = np.zeros(len(x), np.float32)

    def assign() -> np.ndarray:
        cand = candidate_lists(centres, c)[0]
        new = labels.copy()
        for p in range(len(x)):
            opts = np.arange(k) if labels[p] < 0 else cand[labels[p]]
            s = x[p] @ centres[opts].T
            j = int(np.flatnonzero(s == s.max())[0])  # candidates ascending: lowest index
            new[p], sim[p] = opts[j], s[j]
        return new

    for step in range(1, steps + 1):  # noqa: B007 - returned
        new = assign()
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros(centres.shape, np.float64)
        np.add.at(sums, labels, x.astype(np.float64))
        moved = to_grid(sums[fixed:])
        keep = ~np.any(sums[fixed:] != 0, axis=1)
        moved[keep] = centres[fixed:][keep]
        centres[fixed:] = moved
    else:
        labels = assign()
    return labels, sim, centres, step


@pytest.mark.parametrize(("k", "c", "dup"), [(60, 3, False), (90, 6, True), (150, 2, False)])
def test_candidate_lloyd_skips_work_without_changing_the_answer(k: int, c: int, dup: bool) -> None:
    # few candidates for many centres: the kept lists (a centre's 4c nearest and a bound
    # on the rest) and the rows' bounds must give the step-by-step definition's answer
    x = to_grid(unit(clusters([300, 250, 200, 150, 100], dim=12, spread=0.6, seed=16)))
    if dup:
        x[:200] = x[0]  # exact ties
    centres, labels = start(x, k, 3)
    want = naive_candidate_lloyd(x, centres, labels, 2, 40, c)
    got = candidate_lloyd(x, centres, labels, 2, 40, 4096, c)
    assert want[3] > 3  # several steps ran
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_few_candidates_give_a_valid_selection_and_nearly_the_same_fit() -> None:
    # budget 120 on overlapping 24-dim clusters: a Lloyd step sees 32 of the 123 centres
    sizes = [300, 250, 200, 150, 100, 60, 40]
    x = clusters(sizes, dim=24, spread=0.5, seed=15)
    bank = bank_of(x)
    labeled = [3, 400, 1000]
    r = select(bank, 120, "strata", seed=1, labeled=labeled, candidates=32)
    assert r.order.size == 120 and np.unique(r.order).size == 120
    assert not set(labeled) & set(r.order.tolist())
    g = to_grid(unit(x))
    is_lab = np.zeros(len(g), bool)
    is_lab[labeled] = True
    fits = {}
    for c in (32, 10**6):
        labels, centres, _ = tightest_cells(g, is_lab, 120, 1, candidates=c)
        if c == 32:  # the picks are one per cell, every cell picked
            np.testing.assert_array_equal(np.sort(labels[r.order]), np.arange(3, 123))
        own = np.einsum("ij,ij->i", g, centres[labels], dtype=np.float64)
        fits[c] = own.sum()
    # the fit (total similarity to the centres) is within 1 % of full Lloyd's: measured
    # 0.46 % here (0.07 % with 64 candidates, 2.3 % with 8)
    assert abs(fits[32] - fits[10**6]) <= 1e-2 * fits[10**6]


def test_typical_pick_takes_the_dense_mode_not_the_image_nearest_the_mean() -> None:
    # one cell: 15 images packed at 0 degrees, 15 spread over 40-80 degrees; the mean
    # direction (~30 degrees) is nearest a spread image, the densest image is in the pack
    rng = np.random.default_rng(0)
    angles = np.concatenate([rng.normal(0.0, 0.5, 15), np.linspace(40.0, 80.0, 15)])
    rad = np.deg2rad(angles)
    x = np.zeros((30, 8), np.float32)
    x[:, 0], x[:, 1] = np.cos(rad), np.sin(rad)
    centre = select(bank_of(x), 1, "strata", seed=0, pick="centre").order
    typical = select(bank_of(x), 1, "strata", seed=0, pick="typical", knn=5).order
    assert centre[0] >= 15  # nearest the mean: a spread image
    assert typical[0] < 15  # the mode: a packed one
    again = select(bank_of(x), 1, "strata", seed=1, pick="typical", knn=5).order
    np.testing.assert_array_equal(typical, again)


def test_typical_pick_in_a_large_cell_comes_from_a_seeded_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one cell of 150: 100 packed at 0 degrees, 50 spread over 40-80; with a sample cap
    # of 60 typicality compares at most 60 images, and the mode is still a packed one
    rng = np.random.default_rng(3)
    angles = np.concatenate([rng.normal(0.0, 0.5, 100), np.linspace(40.0, 80.0, 50)])
    rad = np.deg2rad(angles)
    x = np.zeros((150, 8), np.float32)
    x[:, 0], x[:, 1] = np.cos(rad), np.sin(rad)
    sizes: list[int] = []
    real = strata_module.cell_typicality

    def spy(x: np.ndarray, rows: np.ndarray, knn: int, chunk: int) -> np.ndarray:
        sizes.append(rows.size)
        return real(x, rows, knn, chunk)

    monkeypatch.setattr(strata_module, "TYPICAL_SAMPLE", 60)
    monkeypatch.setattr(strata_module, "cell_typicality", spy)
    first = select(bank_of(x), 1, "strata", seed=0, pick="typical", knn=5).order
    assert sizes == [60]
    assert first[0] < 100  # a packed image
    again = select(bank_of(x), 1, "strata", seed=0, pick="typical", knn=5).order
    np.testing.assert_array_equal(first, again)


def test_typical_pick_keeps_one_pick_per_cell() -> None:
    sizes = [40, 40, 40, 40]
    x = clusters(sizes, seed=2)
    r = select(bank_of(x), 4, "strata", seed=0, pick="typical")
    np.testing.assert_array_equal(np.sort(owner(sizes)[r.order]), [0, 1, 2, 3])
    with pytest.raises(SelectionError, match="knn"):
        select(bank_of(x), 4, "strata", seed=0, pick="typical", knn=0)


def test_objects_pick_takes_the_image_with_the_most_kept_tokens_in_each_cell() -> None:
    sizes = [30, 30, 30, 30]
    x = clusters(sizes, seed=4)
    rng = np.random.default_rng(0)
    kept = rng.integers(1, 40, len(x))
    bank = PatternBank.from_arrays(x, np.ones(len(x), np.int64), global_=x, kept=kept)
    r = select(bank, 4, "strata", seed=0, pick="objects")
    cells = owner(sizes)[r.order]
    np.testing.assert_array_equal(np.sort(cells), [0, 1, 2, 3])  # still one pick per cell
    for i in r.order:  # the busiest image of its cell
        assert kept[i] == kept[owner(sizes) == owner(sizes)[i]].max()
    assert r.params["pick"] == "objects, ties by centre"
    # equal counts: the rule's own pick, the image nearest the cell's centre
    flat = PatternBank.from_arrays(x, np.ones(len(x), np.int64), global_=x, kept=np.ones(len(x)))
    np.testing.assert_array_equal(
        np.sort(select(flat, 4, "strata", seed=0, pick="objects").order),
        np.sort(select(bank_of(x), 4, "strata", seed=0, pick="auto").order),
    )
    with pytest.raises(SelectionError, match="kept-token counts"):
        select(bank_of(x), 4, "strata", seed=0, pick="objects")


def test_cut_by_picks_keeps_the_cut_whose_central_images_stand_best_for_the_pool() -> None:
    """``cut=picks`` scores each cut by the similarity of every image to the nearest of
    the cells' central images (the labeled ones included), and keeps the best cut."""
    x = to_grid(unit(clusters([60, 50, 40, 30, 20], dim=16, spread=0.5, seed=3)))
    is_lab = np.zeros(len(x), dtype=bool)
    is_lab[[5, 70]] = True
    labels, centres, _ = tightest_cells(x, is_lab, 6, seed=4, n_init=1)
    # brute force: each cell's free image most similar to its centre, then the pool's
    # similarity to the nearest of those and the labeled images
    reps = [5, 70]
    for j in range(2, centres.shape[0]):
        rows = np.flatnonzero((labels == j) & ~is_lab)
        reps.append(int(rows[np.argmax(x[rows] @ centres[j])]))
    want = (x @ x[reps].T).max(axis=1).sum(dtype=np.float64)
    assert central_picks_fit(x, is_lab, labels, centres, chunk=7) == pytest.approx(want, rel=1e-12)

    # the four cuts tightest_cells makes from seed 0, one by one
    rng = np.random.default_rng([0, 0x535452415441])
    cuts = [fit_cells(x, is_lab, 6, rng, 100, 20, 64) for _ in range(4)]
    by_picks = [central_picks_fit(x, is_lab, lab, cen, 64) for _, lab, cen, _ in cuts]
    by_fit = [fit for fit, *_ in cuts]
    assert np.argmax(by_picks) != np.argmax(by_fit)  # the criterion changes the cut kept
    for criterion, scores in (("picks", by_picks), ("fit", by_fit)):
        kept, _, _ = tightest_cells(x, is_lab, 6, seed=0, n_init=4, criterion=criterion)
        np.testing.assert_array_equal(kept, cuts[int(np.argmax(scores))][1])
