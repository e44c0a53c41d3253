"""Handing freed heap memory back to the system."""

from __future__ import annotations

import ctypes
import functools
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
