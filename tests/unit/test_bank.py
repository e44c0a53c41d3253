"""PatternBank on disk: round trip, memory mapping, resume and refusal of mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geal.bank import BankWriter, PatternBank, read_shard, shard_name
from geal.errors import BankError

OPTS = {
    "model": "m",
    "weights": "random",
    "threshold": 0.5,
    "clusters": 3,
    "seed": 0,
    "dtype": "float16",
}
POOL = {"root": "/x", "format": "folder", "n": 5, "fingerprint": "abc"}


def _fill(w: BankWriter, dim: int = 4) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    per_image: dict[int, np.ndarray] = {}
    for k in w.missing_shards():
        a, b = w.shard_range(k)
        counts = np.array([(i % 3) + (0 if i == 3 else 1) for i in range(a, b)], np.int32)
        pats = rng.standard_normal((int(counts.sum()), dim)).astype(np.float16)
        glob = rng.standard_normal((b - a, dim)).astype(np.float16)
        failed = (
            [{"index": 3, "id": "img3", "path": "/x/3.jpg", "reason": "OSError"}]
            if a <= 3 < b
            else []
        )
        w.write(k, counts, pats, glob, failed)
        off = np.concatenate([[0], np.cumsum(counts)])
        for j, i in enumerate(range(a, b)):
            per_image[i] = pats[off[j] : off[j + 1]]
    return per_image


def test_round_trip_and_mmap(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "bank", OPTS, POOL, 5, shard_size=2)
    assert w.missing_shards() == [0, 1, 2]
    per_image = _fill(w)
    bank = w.finish()
    again = PatternBank.open(tmp_path / "bank")
    assert again.n == 5 and again.dim == 4
    assert again.counts.tolist() == [1, 2, 3, 0, 2]
    assert not again.valid[3]
    for i in range(5):
        np.testing.assert_array_equal(again.patterns_of(i), per_image[i])
    assert again.failed == [{"index": 3, "id": "img3", "path": "/x/3.jpg", "reason": "OSError"}]
    assert json.loads((tmp_path / "bank" / "failed.json").read_text())[0]["id"] == "img3"
    # shards are memory-mapped, not copied
    shard = read_shard(tmp_path / "bank" / shard_name(0))
    assert not shard.patterns.flags.owndata and not shard.patterns.flags.writeable
    assert bank.manifest_hash() == again.manifest_hash()
    assert again.global_features().shape == (5, 4)


def test_incomplete_bank_is_refused_then_resumed(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    w.write(0, np.ones(2, np.int32), np.zeros((2, 4), np.float16), None, [])
    with pytest.raises(BankError, match="incomplete"):
        PatternBank.open(tmp_path / "b")
    w2 = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    assert w2.missing_shards() == [1, 2]


def test_mismatched_options_are_refused(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    _fill(w)
    w.finish()
    with pytest.raises(BankError, match="clusters"):
        BankWriter.create_or_resume(tmp_path / "b", OPTS | {"clusters": 5}, POOL, 5, shard_size=2)
    with pytest.raises(BankError, match="pool"):
        BankWriter.create_or_resume(
            tmp_path / "b", OPTS, POOL | {"fingerprint": "zzz"}, 5, shard_size=2
        )
    w3 = BankWriter.create_or_resume(
        tmp_path / "b", OPTS | {"clusters": 5}, POOL, 5, shard_size=2, overwrite=True
    )
    assert w3.missing_shards() == [0, 1, 2]


def test_damaged_shard_gives_clear_error(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    _fill(w)
    w.finish()
    p = tmp_path / "b" / shard_name(1)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(BankError, match="damaged"):
        PatternBank.open(tmp_path / "b")


def test_not_a_bank(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not a pattern bank"):
        PatternBank.open(tmp_path)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(BankError, match="not a pattern bank"):
        BankWriter.create_or_resume(tmp_path, OPTS, POOL, 5, shard_size=2)


def test_global_falls_back_to_pattern_mean() -> None:
    pats = np.array([[1, 0], [0, 1], [2, 2]], np.float32)
    bank = PatternBank.from_arrays(pats, np.array([2, 0, 1]))
    np.testing.assert_allclose(bank.global_features(), [[0.5, 0.5], [0, 0], [2, 2]])
