"""Format name -> reader, plus ``auto`` detection.

A reader is a function ``(path: Path, *, split: str | None) -> Pool``; a detector is a
function ``(path: Path) -> bool`` that looks at the path without reading images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geal.errors import PoolError
from geal.pools.base import Pool

Reader = Callable[..., Pool]
Detector = Callable[[Path], bool]


@dataclass(frozen=True)
class Format:
    name: str
    reader: Reader
    detect: Detector
    help: str


FORMATS: dict[str, Format] = {}


def register_format(name: str, detect: Detector, help: str) -> Callable[[Reader], Reader]:
    """Decorator registering a reader under ``name``; order of registration = detection order."""

    def wrap(reader: Reader) -> Reader:
        if name in FORMATS:
            raise ValueError(f"pool format {name!r} registered twice")
        FORMATS[name] = Format(name, reader, detect, help)
        return reader

    return wrap


def _load_builtin() -> None:
    # Imported for their registration side effect, most specific detector first.
    from geal.pools import (  # noqa: F401
        cifar,
        coco,
        folder,
        idx,
        listfile,
        voc,
    )


def detect_format(path: str | Path) -> str:
    """Name of the first registered format that recognises ``path``."""
    _load_builtin()
    p = Path(path)
    if not p.exists():
        raise PoolError(f"pool path {p} does not exist")
    for fmt in FORMATS.values():
        if fmt.detect(p):
            return fmt.name
    raise PoolError(
        f"cannot tell the format of {p}; pass --format with one of: {', '.join(FORMATS)}"
    )


def open_pool(path: str | Path, format: str = "auto", *, split: str | None = None) -> Pool:
    """Open the pool at ``path`` with the named reader (``auto`` detects it).

    Args:
        path: file or directory the user gave.
        format: registry name, or ``auto``.
        split: reader-specific subset (VOC image set name, IDX/CIFAR ``train``/``test``).
    """
    _load_builtin()
    p = Path(path).expanduser()
    if not p.exists():
        raise PoolError(f"pool path {p} does not exist")
    name = detect_format(p) if format == "auto" else format
    if name not in FORMATS:
        raise PoolError(f"unknown pool format {name!r}; known: auto, {', '.join(FORMATS)}")
    return FORMATS[name].reader(p, split=split)
