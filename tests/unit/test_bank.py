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


def test_temporaries_of_a_killed_writer_are_removed_on_resume(tmp_path: Path) -> None:
    """A writer killed inside atomic_open leaves ``.shard-....tmp``; the next one removes it."""
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    w.write(0, np.ones(2, np.int32), np.zeros((2, 4), np.float16), None, [])
    stale = tmp_path / "b" / f".{shard_name(1)}.k1ll3d.tmp"
    stale.write_bytes(b"half a shard")
    w2 = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    assert not stale.exists()
    assert w2.missing_shards() == [1, 2]
    # a killed first run that left only a temporary is an empty directory, not "not a bank"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / f".{shard_name(0)}.k1ll3d.tmp").write_bytes(b"x")
    assert BankWriter.create_or_resume(fresh, OPTS, POOL, 5, shard_size=2).missing_shards() == [
        0,
        1,
        2,
    ]


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


def _shard_args(seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "start": 4,
        "counts": np.array([2, 0, 1], np.int32),
        "patterns": rng.standard_normal((3, 4)).astype(np.float16),
        "global_": rng.standard_normal((3, 4)).astype(np.float16),
        "keys": rng.integers(0, 256, (3, 32)).astype(np.uint8),
        "stat": np.array([[10, 123], [11, 456], [12, 789]], np.int64),
        "ids": ["a.png", "b/c.jpg", "d.png"],
    }


def test_shards_are_byte_reproducible_and_plain_safetensors(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from geal.bank import write_shard

    args = _shard_args()
    failed = [{"index": 5, "id": "b/c.jpg", "path": "/x/b/c.jpg", "reason": "OSError: bad"}]
    reordered = [{k: failed[0][k] for k in reversed(list(failed[0]))}]  # same, other key order
    write_shard(tmp_path / "a.safetensors", failed=failed, **args)  # type: ignore[arg-type]
    write_shard(tmp_path / "b.safetensors", failed=reordered, **args)  # type: ignore[arg-type]
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    # readable by safetensors itself, tensors aligned and unchanged
    loaded = load_file(str(tmp_path / "a.safetensors"))
    for name, key in (("counts", "counts"), ("patterns", "patterns"), ("global", "global_"),
                      ("keys", "keys"), ("stat", "stat")):  # fmt: skip
        np.testing.assert_array_equal(loaded[name], args[key])  # type: ignore[arg-type]
    with safe_open(str(tmp_path / "a.safetensors"), "np") as f:
        meta = f.metadata()
    assert json.loads(meta["ids"]) == args["ids"] and meta["start"] == "4"
    shard = read_shard(tmp_path / "a.safetensors")
    assert shard.ids == args["ids"] and shard.failed == failed
    np.testing.assert_array_equal(shard.keys, args["keys"])  # type: ignore[arg-type]


def test_content_hash_follows_the_content_not_file_times(tmp_path: Path) -> None:
    from geal.bank import write_shard

    args = _shard_args()
    write_shard(tmp_path / "a.safetensors", failed=[], **args)  # type: ignore[arg-type]
    write_shard(tmp_path / "b.safetensors", failed=[], **(args | {"stat": args["stat"] + 1}))  # type: ignore[arg-type, operator]
    other = dict(args, patterns=args["patterns"] * 2)  # type: ignore[operator]
    write_shard(tmp_path / "c.safetensors", failed=[], **other)  # type: ignore[arg-type]
    a, b, c = (read_shard(tmp_path / f"{x}.safetensors") for x in "abc")
    assert a.content_digest() == b.content_digest() != c.content_digest()
    bank_a = PatternBank([a], {"n": 3})
    assert bank_a.content_sha256 == PatternBank([b], {"n": 3}).content_sha256
    assert bank_a.content_sha256 != PatternBank([c], {"n": 3}).content_sha256


def test_finished_bank_records_its_content_hash(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    _fill(w)
    bank = w.finish()
    again = PatternBank.open(tmp_path / "b")
    recorded = json.loads((tmp_path / "b" / "bank.json").read_text())["content_sha256"]
    assert again.content_sha256 == bank.content_sha256 == recorded
    again.manifest.pop("content_sha256")
    assert again.content_sha256 == recorded  # recomputed from the shards, the same


def test_bank_of_an_older_format_says_re_extract(tmp_path: Path) -> None:
    w = BankWriter.create_or_resume(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    _fill(w)
    w.finish()
    manifest = json.loads((tmp_path / "b" / "bank.json").read_text())
    (tmp_path / "b" / "bank.json").write_text(json.dumps(manifest | {"format_version": 1}))
    with pytest.raises(BankError, match=r"format version 1.*re-extract"):
        PatternBank.open(tmp_path / "b")
    with pytest.raises(BankError, match="re-extract"):
        BankWriter.prepare(tmp_path / "b", OPTS, POOL, 5, shard_size=2)
    w2 = BankWriter.prepare(tmp_path / "b", OPTS, POOL, 5, shard_size=2, overwrite=True)
    assert w2.missing_shards() == [0, 1, 2] and w2.replacing
    assert w2.sources == [(w2.root, True)]  # nothing reused from the old format
    _fill(w2)
    assert w2.finish().manifest["format_version"] == 2
    assert PatternBank.open(tmp_path / "b").n == 5


def test_replacement_interrupted_between_its_renames_is_finished_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import geal.bank.writer as bank_module

    root = tmp_path / "b"
    w = BankWriter.prepare(root, OPTS, POOL, 5, shard_size=2)
    _fill(w)
    w.finish()
    changed = POOL | {"fingerprint": "changed"}
    w2 = BankWriter.prepare(root, OPTS, changed, 5, shard_size=2)
    assert w2.replacing and w2.root != root and w2.why == "the pool changed"
    _fill(w2)
    renames: list[tuple[object, object]] = []
    real_rename = os.rename

    def crash_on_second(src: object, dst: object) -> None:
        renames.append((src, dst))
        if len(renames) == 2:
            raise KeyboardInterrupt  # killed between the two renames
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(bank_module.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        w2.finish()
    monkeypatch.undo()
    assert not root.exists()  # the old bank is aside, the new one not yet in place
    w3 = BankWriter.prepare(root, OPTS, changed, 5, shard_size=2)
    assert w3.complete and w3.root == root
    assert PatternBank.open(root).manifest["pool"]["fingerprint"] == "changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # nothing left beside it


def test_kept_counts_round_trip_and_count_in_the_content_hash(tmp_path: Path) -> None:
    from geal.bank import NO_KEPT, write_shard

    args = _shard_args()
    write_shard(tmp_path / "a.safetensors", failed=[], **args)  # type: ignore[arg-type]
    write_shard(tmp_path / "b.safetensors", failed=[], kept=np.array([7, 0, 3]), **args)  # type: ignore[arg-type]
    write_shard(tmp_path / "c.safetensors", failed=[], kept=np.array([7, 0, 4]), **args)  # type: ignore[arg-type]
    a, b, c = (read_shard(tmp_path / f"{x}.safetensors") for x in "abc")
    assert a.kept is None and b.kept is not None and b.kept.tolist() == [7, 0, 3]
    assert len({a.content_digest(), b.content_digest(), c.content_digest()}) == 3
    assert PatternBank([a], {"n": 3}).kept_tokens is None  # a shard made before it was recorded
    assert PatternBank([b], {"n": 3}).kept_tokens.tolist() == [7, 0, 3]  # type: ignore[union-attr]
    write_shard(
        tmp_path / "d.safetensors",
        failed=[],
        kept=np.array([7, NO_KEPT, 3]),
        **args,  # type: ignore[arg-type]
    )
    assert PatternBank([read_shard(tmp_path / "d.safetensors")], {"n": 3}).kept_tokens is None
