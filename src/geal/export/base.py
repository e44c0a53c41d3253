"""The exporter registry and the checks every exporter shares.

An exporter is a function ``(pool, ranking, budget, out_dir, *, name="geal",
final_dir=None) -> list[Path]`` registered by name in :data:`EXPORTERS`; it writes the
split files of the selection of ``budget`` images (the ranking's first ``budget``
picks) into ``out_dir`` and returns the files written.

``final_dir`` exists because a selection directory is built in a temporary folder and
renamed into place once complete (see :mod:`geal.selection`): an exporter that writes a
path of its own output into a file (a dataset yaml naming its image list, a training
config naming its split root) must write where the file will be read, not where it is
being built. ``None`` means ``out_dir``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from geal.errors import GealError, SelectionError
from geal.internal.io import atomic_open
from geal.internal.registry import Registry
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Exporter(Protocol):
    def __call__(
        self,
        pool: Pool,
        ranking: Ranking,
        budget: int,
        out_dir: str | Path,
        *,
        name: str = ...,
        final_dir: str | Path | None = ...,
    ) -> list[Path]: ...


EXPORTERS: Registry[Exporter] = Registry("export format", error=SelectionError)

E = TypeVar("E", bound=Exporter)


def register_exporter(name: str) -> Callable[[E], E]:
    """Decorator adding an exporter to :data:`EXPORTERS` under ``name``."""

    def wrap(fn: E) -> E:
        EXPORTERS.register(name, fn)
        return fn

    return wrap


def check_formats(names: Iterable[str], *, exclude: Iterable[str] = ()) -> list[str]:
    """``names`` as a list, after checking each is a registered exporter.

    Args:
        exclude: registered names the caller does not accept here (``csv`` where the
            ranking is written anyway).

    Raises:
        SelectionError: naming the unknown format and the known ones.
    """
    skip = set(exclude)
    known = sorted(k for k in EXPORTERS if k not in skip)
    out = list(names)
    for fmt in out:
        if fmt not in known:
            raise SelectionError(f"unknown export format {fmt!r}; known: {', '.join(known)}")
    return out


def check_name(name: str) -> str:
    """``name`` if it is safe inside a file name (letters, digits, '.', '_', '-')."""
    if not _NAME.match(name):
        raise GealError(
            f"selection name {name!r} must be letters, digits, '.', '_' or '-' "
            "(it becomes part of file names)"
        )
    return name


def check_indices(pool: Pool, indices: np.ndarray) -> None:
    """Refuse indices outside ``pool`` or repeated: a ranking made from another pool."""
    if indices.size and (indices.min() < 0 or indices.max() >= len(pool)):
        raise SelectionError(
            f"the ranking holds pool index {int(indices.max())} but pool {pool.root} has "
            f"{len(pool)} images; was the ranking made from another pool?"
        )
    if np.unique(indices).size != indices.size:
        raise SelectionError("the ranking picks an image twice")


def selected_indices(pool: Pool, ranking: Ranking, budget: int) -> np.ndarray:
    """Pool indices of the first ``budget`` picks, in rank order, checked against the pool."""
    if budget < 1:
        raise SelectionError(f"budget must be at least 1, not {budget}")
    indices = ranking.selection(budget)
    check_indices(pool, indices)
    return indices


def final_path(path: Path, out_dir: str | Path, final_dir: str | Path | None) -> Path:
    """Where ``path``, written under ``out_dir``, will be read once in place (absolute)."""
    if final_dir is None:
        return path.absolute()
    return Path(final_dir).absolute() / path.absolute().relative_to(Path(out_dir).absolute())


def write_images(
    pool: Pool, indices: Iterable[int], folder: Path, names: Iterable[str], *, tool: str
) -> list[Path]:
    """Write the images ``indices`` of ``pool`` into ``folder`` as ``names`` (PNG when a
    name ends in ``.png``, else the image file copied byte for byte); return the files.

    For tools that need image files where the pool has none (images inside container
    files) or where its file names collide.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, name in zip(indices, names, strict=True):
        target = folder / name
        path = pool[index].path
        try:
            if path is not None and not name.endswith(".png"):
                with open(path, "rb") as src, atomic_open(target, "wb") as dst:
                    dst.write(src.read())
            else:
                with atomic_open(target, "wb") as dst:
                    pool.load(index).save(dst, format="PNG")
        except Exception as exc:
            raise GealError(f"cannot write image {pool[index].id!r} for {tool}: {exc}") from exc
        written.append(target)
    return written
