"""Format name -> reader, plus ``auto`` detection.

A reader is a function ``(path: Path, *, split: str | None) -> Pool``; a detector is a
function ``(path: Path) -> bool`` that looks at the path without reading images. Each
reader module registers itself when imported; ``geal.pools`` imports them all.

Detection asks formats in ``priority`` order (lower first, ties in registration order),
so a catch-all such as ``folder`` (any directory holding an image) is asked last no
matter which reader module happened to be imported first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geal.errors import PoolError
from geal.internal.registry import Registry
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

Reader = Callable[..., Pool]
Detector = Callable[[Path], bool]


@dataclass(frozen=True)
class Format:
    name: str
    reader: Reader
    detect: Detector
    help: str
    priority: int = 50
    named: bool = False  # the reader takes a name (a dataset of a library), not a path


FORMATS: Registry[Format] = Registry("pool format", error=PoolError)


def register_format(
    name: str, detect: Detector, help: str, *, priority: int = 50, named: bool = False
) -> Callable[[Reader], Reader]:
    """Decorator registering a reader under ``name``.

    Args:
        name: registry name users pass as ``--format``.
        detect: cheap test of whether a path is in this format (no image decoding).
        help: one line shown in the CLI help.
        priority: detection rank, lower asked first; built-in container formats use
            10-40, the list file 80 and the image folder catch-all 90, so a user format
            with the default 50 is asked before the catch-alls.
        named: the reader takes the name of a dataset kept by a library (FiftyOne), not
            a path; ``open_pool`` then does not ask that the path exists.
    """

    def wrap(reader: Reader) -> Reader:
        FORMATS.register(name, Format(name, reader, detect, help, priority, named))
        return reader

    return wrap


def detection_order() -> list[Format]:
    """Registered formats in the order ``auto`` asks them."""
    ranked = sorted(enumerate(FORMATS.values()), key=lambda pair: (pair[1].priority, pair[0]))
    return [fmt for _, fmt in ranked]


def detect_format(path: str | Path) -> str:
    """Name of the first registered format that recognises ``path``."""
    p = Path(path)
    if not p.exists():
        raise PoolError(f"pool path {p} does not exist")
    for fmt in detection_order():
        try:
            found = fmt.detect(p)
        except OSError as exc:  # unreadable directory or file: not this format
            logger.debug("format %s cannot inspect %s: %s", fmt.name, p, exc)
            found = False
        if found:
            return fmt.name
    if p.is_dir() and not any(p.iterdir()):
        raise PoolError(f"pool folder {p} is empty: no images to pick from")
    raise PoolError(
        f"found no images or known dataset layout in {p}, so cannot tell its format; "
        f"pass --format with one of: {', '.join(f.name for f in detection_order())}"
    )


def open_pool(path: str | Path, format: str = "auto", *, split: str | None = None) -> Pool:
    """Open the pool at ``path`` with the named reader (``auto`` detects it).

    Args:
        path: file or directory the user gave (a dataset name for ``named`` formats).
        format: registry name, or ``auto``.
        split: reader-specific subset (VOC image set name, IDX/CIFAR ``train``/``test``).
    """
    p = Path(path).expanduser()
    if format != "auto" and format not in FORMATS:
        raise PoolError(f"unknown pool format {format!r}; known: auto, {', '.join(FORMATS)}")
    if not (format != "auto" and FORMATS[format].named) and not p.exists():
        raise PoolError(f"pool path {p} does not exist")
    name = detect_format(p) if format == "auto" else format
    try:
        return FORMATS[name].reader(p, split=split)
    except PoolError:
        raise
    except OSError as exc:  # permissions, vanished files: still one line for the user
        raise PoolError(f"cannot read pool {p} as {name}: {exc}") from exc
