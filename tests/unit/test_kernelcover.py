"""kernelcover: representative first, then coverage; nested, seeded, exact bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geal.bank import PatternBank
from geal.errors import SelectionError
from geal.sampling import select


def blobs_bank() -> tuple[PatternBank, np.ndarray]:
    """A big blob (300 images), a medium one (100), a small one (30) and 5 far outliers."""
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:3] * 4.0 + 1.0
    sizes = [300, 100, 30]
    rows, which = [], []
    for c, (centre, n) in enumerate(zip(centres, sizes, strict=True)):
        rows.append(centre + 0.3 * rng.standard_normal((n, 16)))
        which += [c] * n
    outliers = rng.standard_normal((5, 16)) * 6
    outliers[:, 3:8] += 12.0
    rows.append(outliers)
    which += [3] * 5
    x = np.concatenate(rows).astype(np.float32)
    return PatternBank.from_arrays(x, np.ones(len(x))), np.array(which)


def test_first_picks_follow_the_mass_of_the_modes() -> None:
    bank, which = blobs_bank()
    r = select(bank, 5, "kernelcover", seed=0)
    assert which[r.order[0]] == 0  # the biggest mode first
    assert {0, 1} <= set(which[r.order[:3]].tolist())  # then the next biggest
    assert set(which[r.order].tolist()) == {0, 1, 2}  # every mode before any outlier
    longer = select(bank, 12, "kernelcover", seed=0)
    assert not (which[longer.order] == 3).any()  # outliers wait while modes hold mass


def test_outliers_wait_but_are_covered_eventually() -> None:
    bank, which = blobs_bank()
    r = select(bank, 120, "kernelcover", seed=0)
    first_outlier = (
        int(np.flatnonzero(which[r.order] == 3)[0]) if (which[r.order] == 3).any() else 999
    )
    assert first_outlier >= 3
    fds = select(bank, 10, "fds", seed=0)  # diversity alone grabs the outliers at once
    assert (which[fds.order] == 3).sum() >= 3
    assert np.all(np.diff(r.radius) <= 0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), n=st.integers(10, 80), k=st.integers(1, 4), data=st.data())
def test_nested_unique_labeled_never(seed: int, n: int, k: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, k + 1, size=n)
    counts[0] = 1
    bank = PatternBank.from_arrays(
        rng.standard_normal((int(counts.sum()), 6)).astype(np.float32), counts
    )
    valid = np.flatnonzero(bank.valid)
    labeled = data.draw(st.lists(st.sampled_from(valid.tolist()), max_size=3, unique=True))
    m = len(valid) - len(labeled)
    if m < 1:
        return
    big = select(bank, m, "kernelcover", seed=seed, labeled=labeled, sample=50)
    small = select(
        bank, data.draw(st.integers(1, m)), "kernelcover", seed=seed, labeled=labeled, sample=50
    )
    assert np.array_equal(big.order[: len(small)], small.order)
    assert len(set(big.order.tolist())) == m and bank.valid[big.order].all()
    assert not set(labeled) & set(big.order.tolist())


def test_seeded() -> None:
    bank, _ = blobs_bank()
    a = select(bank, 30, "kernelcover", seed=1, sample=100)
    b = select(bank, 30, "kernelcover", seed=1, sample=100)
    c = select(bank, 30, "kernelcover", seed=2, sample=100)
    assert np.array_equal(a.order, b.order)
    assert not np.array_equal(a.order, c.order)  # the client sample depends on the seed


def test_cosine_only() -> None:
    bank, _ = blobs_bank()
    with pytest.raises(SelectionError, match="cosine"):
        select(bank, 3, "kernelcover", distance="euclidean")


def test_same_ranking_with_or_without_the_dot_cache() -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, 150)  # some images without patterns
    bank = PatternBank.from_arrays(
        rng.standard_normal((int(counts.sum()), 12)).astype(np.float32), counts
    )
    cached = select(bank, 40, "kernelcover", seed=1)
    recomputed = select(bank, 40, "kernelcover", seed=1, cache_mb=0)
    assert cached.order.tolist() == recomputed.order.tolist()
    assert not (counts[cached.order] == 0).any()


def test_same_ranking_on_the_pruned_coverage_state() -> None:
    """The pruned state keeps its rows in group order; the kernel gains read them through
    its permutation, so the picks and radii are those of the plain state."""
    from geal.sampling import RunSettings

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 6, 400)
    centres = rng.standard_normal((12, 24))
    owner = rng.integers(0, 12, int(counts.sum()))
    x = (centres[owner] + 0.4 * rng.standard_normal((owner.size, 24))).astype(np.float32)
    bank = PatternBank.from_arrays(x, counts)
    plain = select(bank, 60, "kernelcover", seed=2, run=RunSettings(prune="off"))
    pruned = select(bank, 60, "kernelcover", seed=2, run=RunSettings(prune="on"))
    assert pruned.order.tolist() == plain.order.tolist()
    assert np.array_equal(pruned.radius, plain.radius)


def test_the_dot_table_may_take_half_the_available_memory_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geal.sampling.kernelcover import KernelCoverParams

    monkeypatch.setenv("GEAL_MEMORY_LIMIT", str(10 * 2**30))
    assert KernelCoverParams().cache_bytes() == 5 * 2**30
    monkeypatch.setenv("GEAL_MEMORY_LIMIT", str(2**29))  # little memory: still 1 GiB
    assert KernelCoverParams().cache_bytes() == 2**30
    assert KernelCoverParams(cache_mb=10).cache_bytes() == 10 * 2**20
    with pytest.raises(SelectionError, match="cache_mb"):
        KernelCoverParams(cache_mb=-1)
