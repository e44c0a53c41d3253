"""Memory: what is available, and handing freed heap memory back to the system."""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any


def trim_heap() -> None:
    """Hand freed heap memory back to the system (glibc only; elsewhere a no-op).

    glibc keeps freed blocks of up to twice its adaptive mmap threshold, which grows with
    every large temporary freed; after building a big state that is tens of MB counted
    as resident for nothing.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to load this way (e.g. Windows)
        return None


def available_bytes() -> int | None:
    """Memory this process can still take without swapping (Linux ``MemAvailable``, capped
    by a cgroup limit when one is set); None where it cannot be read."""
    if os.environ.get("GEAL_MEMORY_LIMIT"):  # an explicit budget, e.g. for a shared machine
        return int(float(os.environ["GEAL_MEMORY_LIMIT"]))
    found: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    try:  # cgroup v2: a container's own limit may be far below the machine's
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max" and found is not None:
            found = min(found, int(limit) - used)
    except (OSError, ValueError):
        pass
    return found


def gib(n: float) -> str:
    """Bytes as GiB with one decimal, for messages."""
    return f"{n / 2**30:.1f} GiB"
