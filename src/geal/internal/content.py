"""Content keys: which images of a pool are the same as before, whatever their path.

An image's key is the sha256 of its content (:meth:`geal.pools.Pool.content_key`: the
file's bytes, or the decoded pixels of an image inside a container file). Extraction
keys its per-image work by it: the k-means draws of an image are seeded from its key
(:func:`seed_of`), and an image whose key is already in a bank made with the same
options takes its patterns from there instead of running the model again.

Hashing reads every file once, so a bank records the (size, mtime_ns) each file had
when it was hashed; a file whose size and time are unchanged keeps its recorded key
without being read (as ``make``, ``git`` and ``rsync`` decide what changed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from geal.internal.progress import Progress

if TYPE_CHECKING:
    from geal.pools.base import Pool

log = logging.getLogger(__name__)

KEY_BYTES = 32
NO_KEY = bytes(KEY_BYTES)
# Images hashed per round of the thread pool (bounds the futures alive at once).
_CHUNK = 4096
_TASK = 64  # files per hashing task


def seed_of(key: bytes) -> int:
    """The k-means seed key of an image: the first 8 bytes of its content key."""
    return int.from_bytes(key[:8], "little")


@dataclass
class ContentKeys:
    """Content keys of (some of) a pool's images, by pool index.

    Attributes:
        keys: uint8 ``[N, 32]`` sha256 digests; zero rows where not computed or unreadable.
        stat: int64 ``[N, 2]`` (size, mtime_ns) of each file when it was hashed; -1 for
            images not stored in a file of their own or not looked at.
        errors: pool index -> why the image could not be read, for unreadable ones.
        hashed: images actually read and hashed (the others kept a recorded key).
    """

    keys: np.ndarray
    stat: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    hashed: int = 0

    def key(self, index: int) -> bytes:
        return bytes(self.keys[index])

    @property
    def seeds(self) -> np.ndarray:
        """uint64 ``[N]``: :func:`seed_of` of every key (0 where none)."""
        return np.ascontiguousarray(self.keys[:, :8]).view("<u8").ravel().astype(np.uint64)


def _hash(pool: Pool, index: int) -> tuple[int, bytes | None, str | None]:
    try:
        return index, pool.content_key(index), None
    except Exception as e:  # any reading problem is reported per image, never fatal
        return index, None, f"{type(e).__name__}: {e}"


def content_keys(
    pool: Pool,
    indices: Iterable[int],
    known: Mapping[str, tuple[int, int, bytes]] | None = None,
    *,
    progress: bool | None = None,
    threads: int | None = None,
) -> ContentKeys:
    """Keys of the images ``indices`` of ``pool``, reading only files that changed.

    Args:
        pool: the images.
        indices: pool indices to key; the other rows stay empty.
        known: image id -> (size, mtime_ns, key) recorded for this pool's files; a file
            with the same size and time keeps that key unread.
        progress: show a progress bar (default: when stderr is a terminal).
        threads: reading threads (default: CPUs, at most 8).
    """
    n = len(pool)
    keys = np.zeros((n, KEY_BYTES), np.uint8)
    stat = np.full((n, 2), -1, np.int64)
    todo: list[int] = []
    for i in indices:
        st = pool.file_stat(i)
        if st is not None:
            stat[i] = st
            hit = known.get(pool[i].id) if known else None
            if hit is not None and (hit[0], hit[1]) == st:
                keys[i] = np.frombuffer(hit[2], np.uint8)
                continue
        todo.append(i)
    errors: dict[int, str] = {}
    if todo:
        workers = threads or min(8, os.cpu_count() or 1)
        log.info("hashing %d images to key their patterns by content", len(todo))
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="geal-hash") as ex,
            Progress(len(todo), unit="img", desc="hash", progress=progress) as bar,
        ):
            for a in range(0, len(todo), _CHUNK):
                chunk: Sequence[int] = todo[a : a + _CHUNK]
                # a task per few dozen files: one future per small file costs more than
                # hashing it
                step = max(1, min(_TASK, -(-len(chunk) // workers)))
                tasks = [chunk[b : b + step] for b in range(0, len(chunk), step)]
                for done in ex.map(lambda js: [_hash(pool, j) for j in js], tasks):
                    for i, digest, err in done:
                        if digest is None:
                            errors[i] = err or "unreadable"
                            stat[i] = -1
                        else:
                            keys[i] = np.frombuffer(digest, np.uint8)
                bar.update(len(chunk))
    return ContentKeys(keys, stat, errors, hashed=len(todo))
