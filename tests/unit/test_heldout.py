"""Tuning and reporting splits, their IDX folders, and the bar on reporting rows."""

from __future__ import annotations

import numpy as np
import pytest

from geal.errors import GealError
from geal.evaluate.heldout import (
    REPORTING,
    TUNING,
    Labelled,
    bar_points,
    make_split,
    materialise,
    per_class_budgets,
    stratified_holdout,
)
from geal.pools import open_pool


def toy(n_train: int = 200, n_test: int = 50) -> Labelled:
    rng = np.random.default_rng(0)
    return Labelled(
        "toy",
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train) % 4,
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        np.arange(n_test) % 4,
        "generated",
    )


def test_holdout_is_stratified_and_seeded() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a = stratified_holdout(labels, 10, "x")
    np.testing.assert_array_equal(np.bincount(labels[a]), [5, 3, 2])
    np.testing.assert_array_equal(a, stratified_holdout(labels, 10, "x"))
    assert not np.array_equal(a, stratified_holdout(labels, 10, "y"))
    with pytest.raises(GealError, match="cannot hold out"):
        stratified_holdout(labels, 100, "x")


def test_tuning_never_reads_the_test_set_and_keeps_pool_and_validation_apart() -> None:
    data = toy()
    t = make_split(data, TUNING, 0, 100)
    assert t.scored_on == "validation" and t.evaluation.size == 40
    assert np.intersect1d(t.pool, t.evaluation).size == 0
    # the validation split is the same for every tuning pool seed
    np.testing.assert_array_equal(t.evaluation, make_split(data, TUNING, 1, 100).evaluation)
    r = make_split(data, REPORTING, 0, 100)
    assert r.scored_on == "test"
    np.testing.assert_array_equal(r.evaluation, np.arange(50))
    assert not np.array_equal(t.pool, r.pool)  # same seed, other role: another pool
    assert t.digest() != r.digest()
    with pytest.raises(GealError, match="only 160 can be drawn"):
        make_split(data, TUNING, 0, 170)
    with pytest.raises(GealError, match="unknown role"):
        make_split(data, "test", 0, 10)


def test_materialised_split_reads_back_as_idx_pools(tmp_path) -> None:
    data = toy()
    split = make_split(data, TUNING, 3, 60)
    pool_file, scored_file = materialise(data, split, tmp_path)
    pool = open_pool(pool_file, "idx")
    scored = open_pool(scored_file, "idx")
    assert len(pool) == 60 and len(scored) == 40
    first = np.asarray(pool.load(5).convert("L"))
    np.testing.assert_array_equal(first, data.train_images[split.pool[5]])
    assert [it.label for it in scored][:8] == data.train_labels[split.evaluation[:8]].tolist()
    stamp = pool_file.stat().st_mtime_ns
    assert materialise(data, split, tmp_path) == (pool_file, scored_file)  # reused as is
    assert pool_file.stat().st_mtime_ns == stamp
    # another pool seed scores the same validation images: one file for both
    other = materialise(data, make_split(data, TUNING, 4, 60), tmp_path)
    assert other[0] != pool_file and other[1] == scored_file


def rows(strategy: str, accs: list[float], budget: int = 10, role: str = REPORTING) -> list[dict]:
    return [
        {
            "role": role,
            "dataset": "toy",
            "backbone": "b",
            "protocol": "linear",
            "budget": budget,
            "strategy": strategy,
            "accuracy": a,
            "pool_seed": 100 + i,
        }
        for i, a in enumerate(accs)
    ]


def test_bar_flags_a_default_below_the_best_peer_or_random() -> None:
    ok = rows("strata", [0.80, 0.82]) + rows("kmeans", [0.80, 0.84]) + rows("random", [0.7, 0.7])
    (p,) = bar_points(ok)
    assert p.meets_peer and p.beats_random and p.best_peer == "kmeans"
    assert p.line().endswith("ok")
    low = rows("strata", [0.70, 0.72]) + rows("kmeans", [0.82, 0.84]) + rows("random", [0.75, 0.7])
    (q,) = bar_points(low)
    assert not q.meets_peer and not q.beats_random
    assert "below kmeans" in q.line() and "not above random" in q.line()
    # the reason: differences paired by pool seed, against two standard errors
    assert q.vs_peer == pytest.approx((-0.12, 0.0, 2))
    assert "paired over 2 pool seeds: -12.0 ± 0.0 pts, beyond 2 SE: behind kmeans" in q.line()
    noisy = rows("strata", [0.70, 0.80, 0.75]) + rows("random", [0.80, 0.70, 0.76])
    (r,) = bar_points(noisy + rows("kmeans", [0.7, 0.7, 0.7]))
    assert not r.beats_random and "within 2 SE of 0: not distinguishable" in r.line()
    # tuning rows and the traditional loops are not part of the reporting bar
    assert bar_points(rows("strata", [0.1]) + rows("random", [0.9]), role=TUNING) == []
    mixed = ok + rows("loop-entropy", [0.99, 0.99]) + rows("kmeans", [0.99], role=TUNING)
    assert bar_points(mixed)[0].best_peer == "kmeans"
    assert bar_points(mixed)[0].best_mean == pytest.approx(0.82)


def test_per_class_budgets() -> None:
    assert per_class_budgets(10, [1, 2, 3, 0.5]) == [5, 10, 20, 30]
    assert per_class_budgets(3, [0.1]) == [1]
