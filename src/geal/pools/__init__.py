"""Pool readers: one module per input format, resolved by name through a registry.

``open_pool(path, format="auto")`` is the single entry point; ``auto`` asks every
reader whether it recognises the path, in registry order (most specific first).
"""

from __future__ import annotations

# the reader modules register themselves; most specific formats are asked first
from geal.pools import (  # noqa: F401
    builtin,
    cifar,
    coco,
    fiftyone,
    folder,
    hf,
    idx,
    listfile,
    voc,
    wds,
)
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import FORMATS, detect_format, open_pool, register_format

__all__ = ["FORMATS", "Pool", "PoolItem", "detect_format", "open_pool", "register_format"]
