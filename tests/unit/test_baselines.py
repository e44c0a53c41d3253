"""Samplers on global features: kcenter, kmeans, typiclust, probcover, activeft, strata."""

from __future__ import annotations

import numpy as np
import pytest

from geal.bank import PatternBank
from geal.errors import SelectionError
from geal.sampling import SAMPLERS, RunSettings, select
from geal.sampling.activeft import fit_centroids, loss_and_grad
from geal.sampling.features import knn_mean_dist, nearest_unused, pair_dist, unit
from geal.sampling.probcover import ball_graph, ball_purity, purity_margins

BASELINES = ("kcenter", "kmeans", "typiclust", "probcover", "activeft", "strata")
NESTED = {
    "kcenter": True,
    "kmeans": False,
    "typiclust": False,
    "probcover": True,
    "activeft": False,
    "strata": False,
}


def blobs(k: int, per: int, dim: int = 32, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    """``k`` well-separated clusters of ``per`` points around random unit directions."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)).astype(np.float32))
    pts = [c + spread * rng.normal(size=(per, dim)) for c in centres]
    return np.concatenate(pts).astype(np.float32)


def bank_of(x: np.ndarray, valid: np.ndarray | None = None) -> PatternBank:
    """A bank whose global features are ``x``; rows not ``valid`` are unreadable images."""
    valid = np.ones(len(x), bool) if valid is None else valid
    return PatternBank.from_arrays(x[valid], valid.astype(np.int64), global_=x)


@pytest.fixture(scope="module")
def pool() -> PatternBank:
    x = blobs(4, 15, dim=16, spread=0.1, seed=3)
    valid = np.ones(len(x), bool)
    valid[[2, 17, 40]] = False
    return bank_of(x, valid)


# --- properties every baseline has -----------------------------------------------------------
def test_all_registered() -> None:
    assert set(BASELINES) <= set(SAMPLERS)


@pytest.mark.parametrize("name", BASELINES)
def test_valid_unlabeled_unique_and_seeded(name: str, pool: PatternBank) -> None:
    labeled = [0, 17, 31]  # 17 is unreadable: ignored
    r = select(pool, 9, name, seed=5, labeled=labeled, run=RunSettings(progress=False))
    assert len(r) == 9 and len(set(r.order.tolist())) == 9
    assert pool.valid[r.order].all()
    assert not set(r.order.tolist()) & set(labeled)
    assert r.nested is NESTED[name] and r.strategy == name
    again = select(pool, 9, name, seed=5, labeled=labeled, run=RunSettings(progress=False))
    np.testing.assert_array_equal(r.order, again.order)


@pytest.mark.parametrize("name", BASELINES)
def test_budget_and_labeled_checks(name: str, pool: PatternBank) -> None:
    pickable = int(pool.valid.sum()) - 2
    with pytest.raises(SelectionError):
        select(pool, pickable + 1, name, labeled=[0, 1], run=RunSettings(progress=False))
    with pytest.raises(SelectionError):
        select(pool, 0, name, run=RunSettings(progress=False))
    with pytest.raises(SelectionError):
        select(pool, 2, name, labeled=[pool.n], run=RunSettings(progress=False))
    with pytest.raises(SelectionError):
        select(pool, 2, name, distance="manhattan", run=RunSettings(progress=False))


@pytest.mark.parametrize("name", BASELINES)
def test_whole_pool_can_be_picked(name: str, pool: PatternBank) -> None:
    pickable = int(pool.valid.sum()) - 1
    r = select(pool, pickable, name, labeled=[5], run=RunSettings(progress=False))
    assert sorted(r.order.tolist()) == sorted(set(np.flatnonzero(pool.valid).tolist()) - {5})


@pytest.mark.parametrize("name", ["kmeans", "typiclust", "activeft", "strata"])
def test_not_nested_rankings_refuse_other_budgets(name: str, pool: PatternBank) -> None:
    r = select(pool, 4, name, run=RunSettings(progress=False))
    with pytest.raises(SelectionError):
        r.selection(3)
    assert r.why_not_nested and "afresh" in r.why_not_nested


# --- kcenter ---------------------------------------------------------------------------------
def test_kcenter_picks_the_outlier_second_and_radius_never_grows() -> None:
    x = blobs(1, 40, dim=8, spread=0.05, seed=1)
    outlier = -x[:1] * 3.0  # the opposite direction: farthest from every blob point
    x = np.concatenate([x, outlier]).astype(np.float32)
    for distance in ("cosine", "euclidean"):
        r = select(
            bank_of(x), 6, "kcenter", seed=2, distance=distance, run=RunSettings(progress=False)
        )
        assert r.order[0] != 40 and r.order[1] == 40
        assert np.all(np.diff(r.radius) <= 1e-6)
        assert r.nested and np.isfinite(r.radius).all()


def test_kcenter_starts_from_the_labeled_set() -> None:
    x = blobs(3, 10, dim=8, spread=0.02, seed=4)
    r = select(bank_of(x), 2, "kcenter", labeled=list(range(10)), run=RunSettings(progress=False))
    assert set((r.order // 10).tolist()) == {1, 2}


# --- kmeans ----------------------------------------------------------------------------------
def test_kmeans_picks_the_image_nearest_each_blob_centre() -> None:
    x = blobs(5, 30, dim=32, seed=0)
    r = select(bank_of(x), 5, "kmeans", seed=1, run=RunSettings(progress=False))
    u = unit(x)
    expected = set()
    for b in range(5):
        part = u[b * 30 : (b + 1) * 30]
        expected.add(b * 30 + int(np.argmin(((part - part.mean(0)) ** 2).sum(1))))
    assert set(r.order.tolist()) == expected
    assert not r.nested and np.isnan(r.radius).all()


def test_kmeans_leaves_blobs_of_labeled_images_alone() -> None:
    x = blobs(4, 20, dim=32, seed=2)
    r = select(bank_of(x), 3, "kmeans", seed=0, labeled=[3], run=RunSettings(progress=False))
    assert sorted((r.order // 20).tolist()) == [1, 2, 3]


# --- typiclust -------------------------------------------------------------------------------
def brute_typicality(x: np.ndarray, k: int) -> np.ndarray:
    d = pair_dist(x, x, "cosine").astype(np.float64)
    np.fill_diagonal(d, np.inf)
    return 1.0 / (np.sort(d, 1)[:, :k].mean(1) + 1e-5)


def test_typiclust_picks_each_clusters_densest_image() -> None:
    rng = np.random.default_rng(7)
    dirs = unit(rng.normal(size=(2, 32)).astype(np.float32))
    parts = []
    for c in dirs:  # a dense core of 10 and a loose halo of 30 around each direction
        parts += [c + 0.02 * rng.normal(size=(10, 32)), c + 0.15 * rng.normal(size=(30, 32))]
    x = np.concatenate(parts).astype(np.float32)
    r = select(bank_of(x), 2, "typiclust", seed=0, run=RunSettings(progress=False))
    u = unit(x)
    expected = {
        b * 40 + int(np.argmax(brute_typicality(u[b * 40 : b * 40 + 40], 20))) for b in (0, 1)
    }
    assert set(r.order.tolist()) == expected
    assert all(i % 40 < 10 for i in r.order)  # both in a dense core


def test_typiclust_skips_tiny_clusters_and_covered_ones() -> None:
    x = np.concatenate([blobs(2, 30, seed=8), blobs(1, 4, seed=9)])
    r = select(bank_of(x), 3, "typiclust", seed=0, run=RunSettings(progress=False))
    assert (r.order < 60).all()  # the 4-image cluster is too small to estimate density
    assert sorted((r.order // 30).tolist()) in ([0, 0, 1], [0, 1, 1])
    r = select(
        bank_of(x[:60]), 1, "typiclust", seed=0, labeled=[40], run=RunSettings(progress=False)
    )
    assert r.order[0] < 30  # the cluster holding a labeled image comes last


def test_knn_mean_dist_matches_brute_force_across_chunks() -> None:
    x = unit(np.random.default_rng(0).normal(size=(23, 5)).astype(np.float32))
    for metric in ("cosine", "euclidean"):
        d = pair_dist(x, x, metric).astype(np.float64)
        np.fill_diagonal(d, np.inf)
        want = np.sort(d, 1)[:, :4].mean(1)
        for chunk in (3, 7, 100):
            got = knn_mean_dist(x, 4, metric, chunk=chunk)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- probcover -------------------------------------------------------------------------------
def test_probcover_covers_every_ball_it_can() -> None:
    x = blobs(4, 25, dim=32, spread=0.03, seed=5)
    delta = 0.2  # wider than a blob, far narrower than the gaps between blobs
    r = select(bank_of(x), 6, "probcover", seed=0, delta=delta, run=RunSettings(progress=False))
    assert r.nested and r.params["delta"] == delta
    d = pair_dist(unit(x), unit(x), "cosine")
    assert (d[r.order[:4]].min(0) < delta).all()  # four picks cover the whole pool
    assert sorted((r.order[:4] // 25).tolist()) == [0, 1, 2, 3]
    balls = (d < delta).sum(1)
    assert balls[r.order[0]] == balls.max()  # the first pick has the largest ball


def test_probcover_labeled_balls_count_as_covered() -> None:
    x = blobs(3, 20, dim=32, spread=0.03, seed=6)
    r = select(bank_of(x), 2, "probcover", delta=0.2, labeled=[0], run=RunSettings(progress=False))
    assert sorted((r.order // 20).tolist()) == [1, 2]


def test_probcover_chooses_the_largest_pure_delta() -> None:
    x = blobs(3, 30, dim=32, spread=0.05, seed=1)
    r = select(bank_of(x), 3, "probcover", seed=0, n_clusters=3, run=RunSettings(progress=False))
    delta = r.params["delta"]
    d = pair_dist(unit(x), unit(x), "cosine")
    same = (np.arange(90)[:, None] // 30) == (np.arange(90)[None, :] // 30)

    def purity(t: float) -> float:
        return float(((d < t) <= same).all(1).mean())

    assert purity(delta) >= 0.95 > purity(delta + 0.01)
    assert r.params["purity"] == pytest.approx(purity(delta))
    assert sorted((r.order // 30).tolist()) == [0, 1, 2]


def test_purity_and_graph_match_brute_force_across_chunks() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(31, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 31)
    same = labels[:, None] == labels[None, :]
    for metric, pts in (("cosine", unit(x)), ("euclidean", x)):
        d = pair_dist(pts, pts, metric)
        u = np.unique(d[d > 1e-3])
        k = (np.array([0.02, 0.1, 0.3, 0.7]) * u.size).astype(int)
        deltas = (u[k] + u[k + 1]) / 2  # midway between distances: no ties at the boundary
        want = [((d < t) <= same).all(1).mean() for t in deltas]
        for chunk in (4, 9, 64):
            got = ball_purity(purity_margins(pts, labels, metric, chunk=chunk), deltas)
            np.testing.assert_allclose(got, want)
            indptr, indices = ball_graph(pts, deltas[2], metric, chunk=chunk, max_edges=10**6)
            for i in range(31):
                got_ball = sorted(indices[indptr[i] : indptr[i + 1]].tolist())
                assert got_ball == np.flatnonzero(d[i] < deltas[2]).tolist()
    with pytest.raises(SelectionError):
        ball_graph(unit(x), 2.5, "cosine", chunk=8, max_edges=100)


# --- activeft --------------------------------------------------------------------------------
def test_activeft_gradient_is_the_released_objectives() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    c = rng.normal(size=(5, 8))
    x = unit(rng.normal(size=(40, 8)).astype(np.float32))
    fixed = unit(rng.normal(size=(2, 8)).astype(np.float32))
    tau, balance = 0.3, 0.7
    loss, grad = loss_and_grad(c, x, fixed, tau=tau, balance=balance, chunk=3)
    ct = torch.tensor(c, requires_grad=True)
    cents = torch.cat(
        [torch.nn.functional.normalize(ct, dim=1), torch.tensor(fixed, dtype=ct.dtype)]
    )
    pos, k = torch.exp(torch.tensor(x, dtype=ct.dtype) @ cents.T / tau).max(1)
    div = torch.exp(cents.detach() @ cents.T / tau).sum(0)
    ref = -(torch.log(pos) - torch.log(pos + div[k] * balance)).mean()
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    np.testing.assert_allclose(grad, ct.grad.numpy(), atol=1e-7)


def test_activeft_moves_centroids_to_the_data_and_spreads_them() -> None:
    x = unit(blobs(3, 30, dim=32, spread=0.05, seed=0))
    rng = np.random.default_rng(11)
    start = unit(rng.normal(size=(3, 32)).astype(np.float32))  # random directions
    fit = fit_centroids(x, start, x[:0], rng, progress=False)
    assert (x @ fit.centroids.T).max(1).mean() > (x @ start.T).max(1).mean() + 0.5
    assert fit.losses[-1] < fit.losses[0]
    crowded = fit_centroids(x, x[[0, 1, 2]], x[:0], rng, progress=False)  # all in blob 0
    assert sorted(((crowded.centroids @ x.T).argmax(1) // 30).tolist()) == [0, 1, 2]


def test_activeft_picks_one_image_per_blob() -> None:
    x = blobs(3, 30, dim=32, spread=0.05, seed=0)
    for seed in (0, 1):
        r = select(bank_of(x), 3, "activeft", seed=seed, run=RunSettings(progress=False))
        assert sorted((r.order // 30).tolist()) == [0, 1, 2]


# --- shared helpers --------------------------------------------------------------------------
def test_nearest_unused_takes_the_next_nearest_when_taken() -> None:
    x = np.array([[0.0], [1.0], [2.0], [10.0]], np.float32)
    centres = np.array([[0.9], [1.1], [9.0]], np.float32)
    allowed = np.array([True, True, True, False])
    rows = nearest_unused(x, allowed, centres, [0, 1, 2], chunk=2, candidates=1)
    assert rows.tolist() == [1, 2, 0]  # centre 1 loses row 1, centre 2 may not use row 3
