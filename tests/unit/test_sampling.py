"""Properties of the GEAL samplers on random banks (hypothesis) and exactness of the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geal.bank import PatternBank
from geal.coverage import Coverage
from geal.errors import SelectionError
from geal.sampling import SAMPLERS, RunSettings, select

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_bank(seed: int, n: int, dim: int = 8, kmax: int = 5, empty: int = 0) -> PatternBank:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, kmax + 1, size=n)
    if empty:
        counts[rng.choice(n, size=empty, replace=False)] = 0
    pats = rng.standard_normal((int(counts.sum()), dim)).astype(np.float32)
    return PatternBank.from_arrays(pats, counts)


banks = st.builds(
    random_bank,
    seed=st.integers(0, 10_000),
    n=st.integers(5, 60),
    dim=st.integers(2, 12),
    kmax=st.integers(1, 5),
    empty=st.integers(0, 3),
)


@SETTINGS
@given(
    bank=banks, strategy=st.sampled_from(["fds", "prob"]), seed=st.integers(0, 99), data=st.data()
)
def test_no_repeats_valid_only_labeled_never(
    bank: PatternBank, strategy: str, seed: int, data: st.DataObject
) -> None:
    valid = np.flatnonzero(bank.valid)
    labeled = data.draw(st.lists(st.sampled_from(valid.tolist()), max_size=3, unique=True))
    budget = (
        data.draw(st.integers(1, len(valid) - len(labeled))) if len(valid) > len(labeled) else 0
    )
    if budget == 0:
        return
    r = select(bank, budget, strategy, seed=seed, labeled=labeled)
    assert len(r) == budget
    assert len(set(r.order.tolist())) == budget
    assert bank.valid[r.order].all()
    assert not set(labeled) & set(r.order.tolist())
    assert np.all(np.diff(r.radius) <= 0), "coverage radius never grows"


@SETTINGS
@given(bank=banks, seed=st.integers(0, 99), data=st.data())
def test_fds_picks_the_farthest_pattern(bank: PatternBank, seed: int, data: st.DataObject) -> None:
    n_valid = int(bank.valid.sum())
    budget = data.draw(st.integers(2, n_valid))
    r = select(bank, budget, "fds", seed=seed)
    x = bank.patterns_array()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    owner = bank.owner
    # reference in float64 without the grid: each pick is (within grid error) the farthest
    for t in range(1, budget):
        chosen = np.isin(owner, r.order[:t])
        dist = 1 - x[~chosen] @ x[chosen].T
        dmin = dist.min(1)
        picked_rows = owner[~chosen] == r.order[t]
        assert dmin[picked_rows].max() >= dmin.max() - 2e-3


@SETTINGS
@given(
    bank=banks, strategy=st.sampled_from(["fds", "prob"]), seed=st.integers(0, 99), data=st.data()
)
def test_prefix_property(bank: PatternBank, strategy: str, seed: int, data: st.DataObject) -> None:
    n_valid = int(bank.valid.sum())
    m = data.draw(st.integers(1, n_valid))
    n = data.draw(st.integers(1, m))
    big = select(bank, m, strategy, seed=seed)
    small = select(bank, n, strategy, seed=seed)
    assert np.array_equal(big.order[:n], small.order)
    assert np.array_equal(big.radius[:n], small.radius)


def test_prob_same_seed_same_ranking_different_seed_differs() -> None:
    bank = random_bank(1, 300, dim=16)
    a = select(bank, 50, "prob", seed=3)
    b = select(bank, 50, "prob", seed=3)
    c = select(bank, 50, "prob", seed=4)
    assert np.array_equal(a.order, b.order)
    assert not np.array_equal(a.order, c.order)


@SETTINGS
@given(
    bank=banks, strategy=st.sampled_from(["fds", "prob"]), chunk=st.integers(1, 200), data=st.data()
)
def test_chunk_size_does_not_change_the_ranking(
    bank: PatternBank, strategy: str, chunk: int, data: st.DataObject
) -> None:
    valid = np.flatnonzero(bank.valid)
    labeled = data.draw(
        st.lists(st.sampled_from(valid.tolist()), min_size=0, max_size=len(valid) - 1, unique=True)
    )
    budget = len(valid) - len(labeled)
    a = select(bank, budget, strategy, seed=0, labeled=labeled)
    b = select(bank, budget, strategy, seed=0, labeled=labeled, run=RunSettings(chunk=chunk))
    assert np.array_equal(a.order, b.order)


def test_batched_update_equals_one_by_one() -> None:
    bank = random_bank(5, 200, dim=32)
    blocks = [b for _, b in bank.iter_blocks()]
    one = Coverage(blocks, bank.counts, block=64)
    many = Coverage(blocks, bank.counts, chunk=37)
    picks = [3, 50, 17, 199, 120, 64, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20]
    for i in picks:
        one.add([i])
    many.add(picks)  # > 16 rows: BLAS path
    assert np.array_equal(one.distances(), many.distances())
    assert one.total_weight() == many.total_weight()


@pytest.mark.gpu
def test_gpu_equals_cpu() -> None:
    bank = random_bank(6, 500, dim=64)
    for strategy in ("fds", "prob"):
        a = select(bank, 100, strategy, seed=1, run=RunSettings(device="cpu"))
        b = select(bank, 100, strategy, seed=1, run=RunSettings(device="cuda"))
        assert np.array_equal(a.order, b.order)
        assert np.array_equal(a.radius, b.radius)


def test_euclidean_distance_runs_and_differs_from_cosine() -> None:
    rng = np.random.default_rng(0)
    pats = rng.standard_normal((100, 4)).astype(np.float32) * rng.uniform(0.1, 10, (100, 1)).astype(
        np.float32
    )
    bank = PatternBank.from_arrays(pats, np.ones(100))
    e = select(bank, 20, "fds", distance="euclidean")
    c = select(bank, 20, "fds", distance="cosine")
    assert not np.array_equal(e.order, c.order)
    # k-center on Euclidean: the second pick is the farthest point from the first
    d = np.linalg.norm(pats - pats[e.order[0]], axis=1)
    assert e.order[1] == int(np.argmax(d))


def test_budget_errors() -> None:
    bank = random_bank(2, 10, empty=2)
    with pytest.raises(SelectionError, match="larger than"):
        select(bank, 9, "prob")
    with pytest.raises(SelectionError, match="at least 1"):
        select(bank, 0, "fds")
    with pytest.raises(SelectionError, match="unknown strategy"):
        select(bank, 2, "nope")


def test_duplicates_fall_back_to_uniform() -> None:
    pats = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (10, 1))
    bank = PatternBank.from_arrays(pats, np.ones(10))
    r = select(bank, 10, "prob", seed=0)
    assert sorted(r.order.tolist()) == list(range(10))
    assert np.all(r.radius == 0)


def test_random_is_seeded_and_nested() -> None:
    bank = random_bank(3, 50, empty=5)
    a = SAMPLERS["random"](bank, 20, seed=1)
    b = SAMPLERS["random"](bank, 10, seed=1)
    assert np.array_equal(a.order[:10], b.order)
    assert bank.valid[a.order].all()


def test_interrupted_selection_resumes(tmp_path: Path) -> None:
    bank = random_bank(4, 400, dim=16)
    journal = tmp_path / "j"
    full = select(bank, 120, "prob", seed=2)
    # a run that stopped after 50 picks, leaving its journal (and a torn last line)
    select(bank, 50, "prob", seed=2, run=RunSettings(journal=journal))
    with open(journal, "a") as f:
        f.write("12")
    resumed = select(bank, 120, "prob", seed=2, run=RunSettings(journal=journal))
    assert np.array_equal(full.order, resumed.order)
    assert np.array_equal(full.radius, resumed.radius)


def clustered_bank(seed: int, n: int, dim: int = 16, concepts: int = 12) -> PatternBank:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((concepts, dim))
    counts = rng.integers(1, 6, size=n)
    ids = rng.integers(0, concepts, size=int(counts.sum()))
    pats = (centres[ids] + 0.2 * rng.standard_normal((ids.size, dim))).astype(np.float32)
    return PatternBank.from_arrays(pats, counts)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 150),
    strategy=st.sampled_from(["fds", "prob"]),
    clustered=st.booleans(),
    data=st.data(),
)
def test_pruned_ranking_equals_plain(
    seed: int, n: int, strategy: str, clustered: bool, data: st.DataObject
) -> None:
    bank = clustered_bank(seed, n) if clustered else random_bank(seed, n, dim=12, empty=2)
    valid = np.flatnonzero(bank.valid)
    labeled = data.draw(st.lists(st.sampled_from(valid.tolist()), max_size=20, unique=True))
    budget = (
        data.draw(st.integers(1, len(valid) - len(labeled))) if len(valid) > len(labeled) else 0
    )
    if budget == 0:
        return
    plain = select(bank, budget, strategy, seed=seed, labeled=labeled, run=RunSettings(prune="off"))
    pruned = select(bank, budget, strategy, seed=seed, labeled=labeled, run=RunSettings(prune="on"))
    assert np.array_equal(plain.order, pruned.order)
    assert np.array_equal(plain.radius, pruned.radius)


def test_pruning_skips_work_on_clustered_banks() -> None:
    from geal.sampling.geal import pattern_coverage

    bank = clustered_bank(0, 3000, dim=32, concepts=20)
    cov = pattern_coverage(bank, run=RunSettings(prune="on"))
    rng = np.random.default_rng(0)
    cov.add([0])
    for _ in range(200):
        cov.add([cov.draw(rng)])
    full = 201 * bank.n_patterns
    assert cov.visited < 0.5 * full  # type: ignore[union-attr]
    d = cov.distances()
    plain = pattern_coverage(bank, run=RunSettings(prune="off"))
    plain.add(np.flatnonzero(cov.picked).tolist())
    assert np.array_equal(d, plain.distances())


def test_prune_option_is_checked() -> None:
    bank = random_bank(0, 20)
    with pytest.raises(SelectionError, match="cosine"):
        select(bank, 3, "fds", distance="euclidean", run=RunSettings(prune="on"))
    with pytest.raises(SelectionError, match="--prune"):
        select(bank, 3, "fds", run=RunSettings(prune="maybe"))


def test_mapped_multi_shard_bank_ranks_as_in_memory(tmp_path: Path) -> None:
    """Shards are read in steps and their pages let go mid-shard: nothing may change."""
    from geal.bank import BankWriter
    from geal.coverage import pruned as _pruned

    src = clustered_bank(4, 400, dim=24)
    w = BankWriter.create_or_resume(tmp_path / "b", {"model": "m"}, {"fingerprint": "f"}, 400, 64)
    for k in w.missing_shards():
        a, b = w.shard_range(k)
        lo, hi = int(src.offsets[a]), int(src.offsets[b])
        pats = src.patterns_array()[lo:hi].astype(np.float16)
        w.write(k, src.counts[a:b].astype(np.int32), pats, None, [])
    w.finish()
    bank = PatternBank.open(tmp_path / "b")
    assert len(bank.shards) == 7
    released: list[int] = []
    real = bank.release_block

    def spy(k: int) -> None:
        released.append(k)
        real(k)

    bank.release_block = spy  # type: ignore[method-assign]
    old = _pruned.BUILD_ROWS
    _pruned.BUILD_ROWS = 50  # several steps per shard
    try:
        mem = PatternBank.from_arrays(bank.patterns_array(), bank.counts)
        for strategy in ("fds", "prob"):
            ref = select(mem, 60, strategy, seed=3, run=RunSettings(prune="off"))
            for prune in ("on", "off"):
                released.clear()
                got = select(bank, 60, strategy, seed=3, run=RunSettings(prune=prune))
                assert got.order.tolist() == ref.order.tolist()
                assert np.array_equal(got.radius, ref.radius)
            # a pruned build samples shard 0 once, then steps through it twice,
            # letting its pages go after every step
            released.clear()
            select(bank, 1, strategy, seed=3, run=RunSettings(prune="on"))
            steps = -(-bank.shards[0].patterns.shape[0] // 50)
            assert steps >= 3 and released.count(0) == 1 + 2 * steps
    finally:
        _pruned.BUILD_ROWS = old


def test_resuming_with_another_labeled_set_of_the_same_size_starts_afresh(
    tmp_path: Path,
) -> None:
    bank = random_bank(7, 300, dim=16)
    journal = tmp_path / "j"
    # an interrupted run with labeled set A left 40 picks in the journal
    select(bank, 40, "prob", seed=1, labeled=[0, 1, 2], run=RunSettings(journal=journal))
    first = select(bank, 40, "prob", seed=1, labeled=[0, 1, 2]).order.tolist()
    # the user now labels three other images, some of them among A's picks
    other = first[:3]
    resumed = select(bank, 80, "prob", seed=1, labeled=other, run=RunSettings(journal=journal))
    fresh = select(bank, 80, "prob", seed=1, labeled=other)
    assert not set(other) & set(resumed.order.tolist())
    assert resumed.order.tolist() == fresh.order.tolist()


def _tied_bank(seed: int, n: int, dim: int, directions: int, dup: int) -> PatternBank:
    """Patterns drawn from a few directions (many exact ties), some images duplicated."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((directions, dim)).astype(np.float32)
    counts = rng.integers(1, 5, size=n)
    pats = base[rng.integers(0, directions, size=int(counts.sum()))]
    pats = pats + 0.05 * rng.integers(-1, 2, size=pats.shape).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for _ in range(dup):  # image b becomes an exact copy of image a (same count)
        a, b = rng.choice(n, size=2, replace=False)
        if counts[a] == counts[b]:
            pats[offsets[b] : offsets[b + 1]] = pats[offsets[a] : offsets[a + 1]]
    return PatternBank.from_arrays(pats, counts)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(150, 500),
    dim=st.sampled_from([8, 24, 2048]),
    directions=st.integers(2, 40),
    dup=st.integers(0, 30),
    group_size=st.sampled_from([2, 4, 16]),
    strategy=st.sampled_from(["fds", "prob"]),
    data=st.data(),
)
def test_pruned_engine_equals_plain_with_many_groups_duplicates_and_ties(
    seed: int,
    n: int,
    dim: int,
    directions: int,
    dup: int,
    group_size: int,
    strategy: str,
    data: st.DataObject,
) -> None:
    from geal.coverage import CoverageState, PrunedCoverage, greedy

    bank = _tied_bank(seed, n, dim, directions, dup)
    blocks = bank.pattern_blocks()
    labeled = data.draw(st.lists(st.integers(0, n - 1), max_size=5, unique=True))
    budget = data.draw(st.integers(1, min(60, n - len(labeled))))

    def step(c: CoverageState, t: int, rng: np.random.Generator) -> int:
        return int(c.farthest() if strategy == "fds" else c.draw(rng))

    def run(cov: CoverageState) -> tuple[list[int], list[float]]:
        p = greedy(cov, budget, step, strategy=strategy, seed=seed, labeled=labeled, params={})
        return p.order.tolist(), p.radius.tolist()

    pruned = PrunedCoverage(blocks, bank.counts, group_size=group_size, seed=seed)
    assert pruned.g >= min(n, 150) // group_size // 2  # many groups, not one or two
    assert run(pruned) == run(Coverage(blocks, bank.counts))


@pytest.mark.parametrize("strategy", sorted(SAMPLERS))
def test_a_sampler_that_would_exceed_memory_refuses_up_front(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = random_bank(3, 200, dim=16)
    sampler = SAMPLERS[strategy]
    from geal.sampling.base import BankShape

    need = sampler.memory_bytes(BankShape(bank.n, bank.n_patterns, bank.dim), 10)
    assert need > 0
    monkeypatch.setenv("GEAL_MEMORY_LIMIT", str(need // 2))
    with pytest.raises(SelectionError, match=f"strategy '{strategy}' needs about .* available"):
        select(bank, 10, strategy)
    monkeypatch.setenv("GEAL_MEMORY_LIMIT", str(need * 2))
    assert len(select(bank, 10, strategy, run=RunSettings(progress=False))) == 10


def test_memory_estimates_follow_the_chunk_and_the_pool() -> None:
    from geal.sampling.base import BankShape

    big = BankShape(200_000, 1_000_000, 384)
    probcover = SAMPLERS["probcover"]
    small_chunk = probcover.memory_bytes(big, 100, run=RunSettings(chunk=4096))
    huge_chunk = probcover.memory_bytes(big, 100, run=RunSettings(chunk=65536))
    assert huge_chunk - small_chunk > 40 * 2**30  # 65536^2 float32 blocks: tens of GiB
    for name in SAMPLERS:  # every estimate grows with the pool
        s = SAMPLERS[name]
        assert s.memory_bytes(big, 100) > s.memory_bytes(BankShape(2000, 10_000, 384), 100)


def test_samplers_that_do_not_scale_warn_before_far_more_work_than_measured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from geal.sampling import base

    line = base.scale_warning("kmeans", 1_000_000, 10_000)
    assert line is not None and "about 10 times the work" in line and "51 CPU minutes" in line
    assert "3.1 CPU hours" in str(base.scale_warning("kernelcover", 1_000_000, 27_000))
    assert base.scale_warning("kmeans", 100_000, 10_000) is None  # the measured size
    for scales in ("strata", "prob", "fds", "random"):
        assert base.scale_warning(scales, 10**7, 10**5) is None
    monkeypatch.setitem(base.MEASURED_RUNS, "kmeans", (10, 1, 1.0))
    with caplog.at_level(logging.WARNING, logger="geal.sampling.base"):
        select(random_bank(0, 40), 4, "kmeans", seed=0)
    assert "strategy 'kmeans' on 40 images with budget 4 is about 16 times" in caplog.text
