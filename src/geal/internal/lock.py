"""An exclusive lock between processes on one file (``fcntl.flock``, POSIX).

The lock belongs to the open file, so it is released when the holder closes it or dies;
a lock file left behind by a killed process locks nothing. The file itself is never
deleted (deleting it would let two processes lock two different files of one name).
Where ``fcntl`` is missing (Windows) or the file cannot be created, the block runs
unlocked after a log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block, waiting for it if need be.

    Args:
        path: the lock file (created if missing).
        what: what the lock guards, for the log line of a process that has to wait.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        log.debug("no fcntl here; %s is not locked", what)
        yield
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        log.warning("cannot lock %s (%s); a concurrent run may repeat its work", what, e)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another geal process writing %s", what)
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("waited %.1f s for %s", time.monotonic() - t0, what)
        yield
    finally:
        os.close(fd)  # releases the lock
