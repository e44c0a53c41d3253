"""FiftyOne datasets, by name: ``geal run NAME --format fiftyone``.

A FiftyOne dataset is a list of samples whose ``filepath`` is an image file; the pool's
items are its samples in the dataset's order, each with its sample id as ``id`` and its
file as ``path``, so the bank and the exporters read the images as files. ``--split``
keeps only the samples with that tag (FiftyOne's usual ``train``/``val`` tags). The
dataset is found in the FiftyOne database of the running environment (its
``fiftyone-db`` or the database ``FIFTYONE_DATABASE_URI`` names); ``fiftyone`` is
imported only here, when such a pool is opened.

Use :func:`geal.integrations.fiftyone.tag_selection` to bring a selection back to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format


@dataclass
class FiftyOnePool(Pool):
    """A pool over the samples of a FiftyOne dataset; ``root`` is the dataset's name."""

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["root"] = self.meta["dataset"]  # a name, reopened by name, not a path
        return out


def load_dataset(name: str) -> Any:
    """The FiftyOne dataset ``name``, or a one-line :class:`PoolError`."""
    try:
        import fiftyone as fo
    except ImportError:
        raise PoolError(
            "--format fiftyone needs the fiftyone package: pip install 'geal[fiftyone]'"
        ) from None
    if not fo.dataset_exists(name):
        known = ", ".join(sorted(fo.list_datasets())) or "none"
        raise PoolError(f"no FiftyOne dataset named {name!r}; datasets: {known}")
    return fo.load_dataset(name)


def _never(path: Path) -> bool:
    return False  # a name, not a path: asked for by --format fiftyone only


@register_format(
    "fiftyone",
    _never,
    "FiftyOne dataset by name (--format fiftyone); --split keeps samples with that tag",
    priority=95,
    named=True,
)
def read_fiftyone(path: Path, *, split: str | None = None) -> FiftyOnePool:
    """Open the FiftyOne dataset named ``path`` (see the module docstring)."""
    name = str(path)
    dataset = load_dataset(name)
    view = dataset.match_tags(split) if split else dataset
    ids, paths = view.values(["id", "filepath"])
    if not ids:
        where = f" with tag {split!r}" if split else ""
        raise PoolError(f"FiftyOne dataset {name!r} holds no samples{where}")
    items = [
        PoolItem(index=i, id=str(sample_id), path=str(filepath), subset=split)
        for i, (sample_id, filepath) in enumerate(zip(ids, paths, strict=True))
    ]
    return FiftyOnePool(
        root=Path(name), format="fiftyone", items=items, meta={"dataset": name, "split": split}
    )
