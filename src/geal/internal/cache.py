"""Where cached banks live and how they are keyed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$GEAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/geal``, else ``~/.cache/geal``."""
    if os.environ.get("GEAL_CACHE_DIR"):
        return Path(os.environ["GEAL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geal"


def bank_dir(
    pool_root: str | Path, pool_format: str, split: str | None, options: dict[str, Any]
) -> Path:
    """Cache directory of the bank of this pool with these options."""
    blob = json.dumps(
        {
            "root": str(Path(pool_root).resolve()),
            "format": pool_format,
            "split": split,
            "opts": options,
        },
        sort_keys=True,
        default=str,
    )
    return cache_root() / "banks" / hashlib.sha256(blob.encode()).hexdigest()[:20]
