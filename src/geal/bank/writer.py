"""BankWriter: creating, resuming and rebuilding a bank by reuse, under a lock."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geal.bank.manifest import (
    FAILED,
    MANIFEST,
    combine_digests,
    make_manifest,
    mismatches,
    option_mismatches,
    read_manifest,
    same_pool,
)
from geal.bank.reader import PatternBank
from geal.bank.shards import NO_KEPT, Shard, read_shard, shard_name, write_shard
from geal.errors import BankError
from geal.internal.content import NO_KEY
from geal.internal.io import atomic_write_json
from geal.internal.lock import file_lock

log = logging.getLogger(__name__)


# --- rows to reuse -----------------------------------------------------------------------
@dataclass
class ReusedRow:
    """One image's result taken from an earlier bank: patterns, or why it failed."""

    patterns: np.ndarray
    global_: np.ndarray | None
    failed: dict[str, Any] | None
    kept: int = NO_KEPT


class ReusableRows:
    """The rows of earlier banks made with the same options, by content key.

    Also gathers, from banks of the same pool, the (size, mtime_ns, key) recorded for
    each image id, so files that did not change are not hashed again.
    """

    def __init__(self) -> None:
        self._rows: dict[bytes, tuple[Shard, int, int]] = {}
        self._failed: dict[int, dict[int, dict[str, Any]]] = {}
        self._bank_keys: dict[Path, list[bytes]] = {}
        self.known: dict[str, tuple[int, int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def add_bank(self, root: Path, *, trust_stat: bool) -> int:
        """Index the readable shards of the bank at ``root``; returns the rows indexed."""
        try:
            manifest = read_manifest(root)
        except BankError:
            return 0
        added = 0
        for k in range(int(manifest.get("n_shards", 0))):
            path = root / shard_name(k)
            if not path.exists():
                continue
            try:
                shard = read_shard(path)
            except BankError as e:
                log.warning("not reusing %s: %s", path, e)
                continue
            added += self._add_shard(shard, trust_stat=trust_stat)
            if shard.keys is not None:
                self._bank_keys.setdefault(root, []).extend(bytes(k) for k in shard.keys)
        return added

    def clear(self) -> None:
        """Let go of the earlier banks' shards (and their memory maps)."""
        self._rows.clear()
        self._failed.clear()

    def matched(self, root: Path, keys: set[bytes]) -> int:
        """Rows of the bank at ``root`` (as added) whose content key is in ``keys``."""
        return sum(1 for k in self._bank_keys.get(root, ()) if k != NO_KEY and k in keys)

    def _add_shard(self, shard: Shard, *, trust_stat: bool) -> int:
        if shard.keys is None:
            return 0
        sid = id(shard)
        self._failed[sid] = {int(f["index"]) - shard.start: f for f in shard.failed}
        offsets = np.concatenate([[0], np.cumsum(shard.counts, dtype=np.int64)])
        added = 0
        for r in range(shard.counts.shape[0]):
            key = shard.keys[r].tobytes()
            if key == NO_KEY:
                continue
            if key not in self._rows:
                self._rows[key] = (shard, r, int(offsets[r]))
                added += 1
            if trust_stat and shard.ids is not None and shard.stat is not None:
                size, mtime = int(shard.stat[r, 0]), int(shard.stat[r, 1])
                if size >= 0:
                    self.known[shard.ids[r]] = (size, mtime, key)
        return added

    def get(self, key: bytes) -> ReusedRow | None:
        """The row recorded for content ``key``, if any."""
        hit = self._rows.get(key)
        if hit is None:
            return None
        shard, r, a = hit
        pats = shard.patterns[a : a + int(shard.counts[r])]
        glob = shard.global_[r] if shard.global_ is not None else None
        kept = int(shard.kept[r]) if shard.kept is not None else NO_KEPT
        return ReusedRow(pats, glob, self._failed[id(shard)].get(r), kept)


# --- writing -----------------------------------------------------------------------------
def _staging(root: Path) -> Path:
    return root.parent / f".{root.name}.staging"


def _retired(root: Path) -> Path:
    return root.parent / f".{root.name}.old"


def _recover(root: Path) -> None:
    """Clean up after a killed writer: remove its temporary files and finish a replacement
    interrupted between its two renames (see :meth:`BankWriter.finish`). Called holding
    :func:`bank_lock`, so no live writer owns those files."""
    staging, old = _staging(root), _retired(root)
    for where in (root, staging):  # a killed writer's half-written files (atomic_open)
        if where.is_dir():
            for tmp in where.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
    if not root.exists() and staging.is_dir():
        with contextlib.suppress(BankError):
            if read_manifest(staging).get("complete"):
                os.rename(staging, root)
                log.info("finished replacing bank %s", root)
    if root.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _is_empty(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


class BankWriter:
    """Creates, resumes or replaces a bank directory shard by shard.

    Attributes:
        root: where shards are written now (the bank, or a staging directory beside it
            while a changed pool's bank is being built).
        target: where the finished bank lives.
        manifest: the manifest being written.
        sources: earlier bank directories made with the same options whose rows may be
            reused, each with whether its recorded file times apply to this pool.
        replaced: rows of the bank being replaced (0 when none).
        why: why it is being replaced.
        removed: rows of the replaced bank matching no image of the new pool (set by
            the extraction once it knows the new pool's keys).
    """

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        *,
        target: Path | None = None,
        sources: Sequence[tuple[Path, bool]] = (),
        replaced: int = 0,
        why: str = "",
    ):
        self.root = Path(root)
        self.target = Path(target) if target is not None else self.root
        self.manifest = manifest
        self.sources = list(sources)
        self.replaced = replaced
        self.why = why
        self.removed = 0

    @property
    def replacing(self) -> bool:
        return self.target != self.root

    @classmethod
    def create_or_resume(
        cls,
        root: str | Path,
        options: dict[str, Any],
        pool: dict[str, Any],
        n: int,
        shard_size: int,
        *,
        overwrite: bool = False,
    ) -> BankWriter:
        """Start a new bank at ``root`` or resume the matching one already there.

        A bank made with other options or from a changed pool is never reused silently:
        it is a :class:`BankError` unless ``overwrite`` (then its shards are deleted).
        """
        root = Path(root)
        _recover(root)
        if (root / MANIFEST).exists():
            old = _manifest_or_none(root, overwrite)
            diff = mismatches(old, options, pool) if old is not None else ["format"]
            same_layout = old is not None and (old.get("n"), old.get("shard_size")) == (
                n,
                shard_size,
            )
            if old is not None and not diff and same_layout:
                return cls(root, old, sources=[(root, True)])
            if not overwrite:
                raise BankError(
                    f"bank {root} was made with other settings ({'; '.join(diff) or 'shard size'}); "
                    "use another --out or pass --overwrite"
                )
            _clear(root)
        elif not _is_empty(root):
            raise BankError(
                f"{root} exists and is not a pattern bank; choose an empty or new --out"
            )
        return cls._fresh(root, options, pool, n, shard_size)

    @classmethod
    def prepare(
        cls,
        root: str | Path,
        options: dict[str, Any],
        pool: dict[str, Any],
        n: int,
        shard_size: int,
        *,
        overwrite: bool = False,
    ) -> BankWriter:
        """The writer an extraction into ``root`` needs; call it holding :func:`bank_lock`.

        - no bank there: a new one;
        - a bank with the same options from the same, unchanged pool: resumed (or, when
          complete, reused as it is);
        - the same options, but the pool's images (or the shard size) changed: a new bank
          built in a staging directory beside it, reusing the rows of every image whose
          content it already holds, and renamed into place by :meth:`finish`;
        - other options, an older format or another pool: a :class:`BankError` unless
          ``overwrite``; then a new bank is built beside it in the same way (from
          scratch for other options or formats, reusing rows by content for another
          pool), so the old bank stays whole until the new one replaces it.
        """
        root = Path(root)
        _recover(root)
        if not (root / MANIFEST).exists():
            if not _is_empty(root):
                raise BankError(
                    f"{root} exists and is not a pattern bank; choose an empty or new --out"
                )
            shutil.rmtree(_staging(root), ignore_errors=True)
            return cls._fresh(root, options, pool, n, shard_size)
        old = _manifest_or_none(root, overwrite)
        diff = option_mismatches(old, options) if old is not None else ["an older format"]
        if diff and not overwrite:
            raise BankError(
                f"bank {root} was made with other settings ({'; '.join(diff)}); "
                "use another --out or pass --overwrite"
            )
        was = old.get("pool", {}) if old is not None else {}
        if not diff and not same_pool(was, pool) and not overwrite:
            raise BankError(
                f"bank {root} was made from another pool ({was.get('format')} {was.get('root')}"
                f"{', split ' + str(was.get('split')) if was.get('split') else ''}); "
                "use another --out or pass --overwrite"
            )
        unchanged = (
            old is not None
            and not diff
            and same_pool(was, pool)
            and (was.get("fingerprint"), old.get("n"), old.get("shard_size"))
            == (pool.get("fingerprint"), n, shard_size)
        )
        if unchanged:
            shutil.rmtree(_staging(root), ignore_errors=True)
            return cls(root, old or {}, sources=[(root, True)])
        staging = _staging(root)
        manifest = None
        with contextlib.suppress(BankError):
            have = read_manifest(staging)
            if (
                not mismatches(have, options, pool)
                and same_pool(have.get("pool", {}), pool)
                and have.get("n") == n
                and have.get("shard_size") == shard_size
            ):
                manifest = have  # an interrupted replacement: go on with it
        if manifest is None:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            manifest = make_manifest(options, pool, n, None, shard_size)
            atomic_write_json(staging / MANIFEST, manifest)
        sources = [(staging, True)]
        if not diff:  # rows made with the same options: reusable by content
            sources.append((root, same_pool(was, pool)))
        if diff:
            why = "other settings, --overwrite"
        elif not same_pool(was, pool):
            why = "made from another pool, --overwrite"
        elif old is not None and (was.get("fingerprint"), old.get("n")) == (
            pool.get("fingerprint"),
            n,
        ):
            why = "another shard size"
        else:
            why = "the pool changed"
        replaced = int(old.get("n", 0)) if old is not None else 0
        return cls(staging, manifest, target=root, sources=sources, replaced=replaced, why=why)

    @classmethod
    def _fresh(
        cls, root: Path, options: dict[str, Any], pool: dict[str, Any], n: int, shard_size: int
    ) -> BankWriter:
        root.mkdir(parents=True, exist_ok=True)
        manifest = make_manifest(options, pool, n, None, shard_size)
        atomic_write_json(root / MANIFEST, manifest)
        return cls(root, manifest)

    @property
    def complete(self) -> bool:
        """The bank is finished and needs nothing more (a deleted shard is written again)."""
        return (
            bool(self.manifest.get("complete")) and not self.replacing and not self.missing_shards()
        )

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    def shard_range(self, k: int) -> tuple[int, int]:
        s = self.shard_size
        return k * s, min((k + 1) * s, int(self.manifest["n"]))

    def missing_shards(self) -> list[int]:
        return [
            k for k in range(self.manifest["n_shards"]) if not (self.root / shard_name(k)).exists()
        ]

    def reusable_rows(self) -> ReusableRows:
        """Rows of this writer's sources, by content key (see :class:`ReusableRows`)."""
        rows = ReusableRows()
        for root, trust_stat in self.sources:
            rows.add_bank(root, trust_stat=trust_stat)
        return rows

    def write(
        self,
        k: int,
        counts: np.ndarray,
        patterns: np.ndarray,
        global_: np.ndarray | None,
        failed: list[dict[str, Any]],
        *,
        keys: np.ndarray | None = None,
        stat: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
        kept: np.ndarray | None = None,
    ) -> None:
        start, stop = self.shard_range(k)
        if counts.shape[0] != stop - start:
            raise ValueError(f"shard {k} needs {stop - start} images, got {counts.shape[0]}")
        dim = int(patterns.shape[1])
        if self.manifest.get("dim") is None:
            self.manifest["dim"] = dim
            atomic_write_json(self.root / MANIFEST, self.manifest)
        write_shard(
            self.root / shard_name(k), start, counts, patterns, global_, failed,
            keys=keys, stat=stat, ids=ids, kept=kept,
        )  # fmt: skip

    def finish(self) -> PatternBank:
        """Mark the bank complete, write ``failed.json`` and return it opened.

        A bank built beside the one it replaces is renamed into place: the old bank is
        renamed aside, the new one takes its name, the old one is deleted. Readers see
        the old bank or the new one, never a mix; a crash between the two renames is
        finished by the next :meth:`prepare`.
        """
        missing = self.missing_shards()
        if missing:
            raise BankError(f"bank {self.root} still lacks shards {missing[:5]}")
        bank = PatternBank.open(self.root, require_complete=False)
        atomic_write_json(self.root / FAILED, bank.failed)
        self.manifest["complete"] = True
        self.manifest["dim"] = bank.dim
        self.manifest["n_patterns"] = bank.n_patterns
        self.manifest["n_failed"] = len(bank.failed)
        self.manifest["content_sha256"] = combine_digests([s.content_digest() for s in bank.shards])
        atomic_write_json(self.root / MANIFEST, self.manifest)
        bank.manifest = self.manifest
        if self.replacing:
            old = _retired(self.target)
            shutil.rmtree(old, ignore_errors=True)
            if self.target.exists():
                os.rename(self.target, old)
            os.rename(self.root, self.target)
            shutil.rmtree(old, ignore_errors=True)
            self.root = bank.root = self.target
        return bank


def _manifest_or_none(root: Path, overwrite: bool) -> dict[str, Any] | None:
    """The manifest at ``root``; None for an unreadable or older one when ``overwrite``."""
    try:
        return read_manifest(root)
    except BankError:
        if overwrite:
            return None
        raise


def _clear(root: Path) -> None:
    """Delete a bank's files (not the directory, nor anything else in it)."""
    for p in root.glob("shard-*.safetensors"):
        p.unlink()
    (root / FAILED).unlink(missing_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)


def lock_path(root: str | Path) -> Path:
    """The lock file of the bank at ``root``: beside it, so it survives the bank's
    replacement (see :meth:`BankWriter.finish`)."""
    root = Path(root)
    return root.parent / f".{root.name}.lock"


@contextlib.contextmanager
def bank_lock(root: str | Path) -> Iterator[None]:
    """Hold the bank at ``root`` for writing; a second writer waits, then finds it done."""
    with file_lock(lock_path(root), f"bank {root}"):
        yield
