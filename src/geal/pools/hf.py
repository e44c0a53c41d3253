"""Hugging Face ``datasets``: a dataset with an image column, read through the library.

Three layouts are accepted:

- a dataset written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (Arrow
  files with ``state.json`` / ``dataset_dict.json``), opened with ``load_from_disk``;
- a folder of Parquet files (the Hub's ``data/train-00000-of-00001.parquet`` layout, or
  plain ``*.parquet``), or one Parquet file, opened with ``load_dataset("parquet")``;
- any other folder ``datasets.load_dataset`` understands, such as an ``imagefolder``
  tree with a ``metadata.csv``; only with ``--format hf``.

``auto`` recognises the first two only (they hold no loose images, so no other reader
claims them); a plain image folder stays a ``folder`` pool unless ``--format hf`` is
given. Loading through ``load_dataset`` converts the files once into the ``datasets``
cache (``HF_DATASETS_CACHE``); the rows are then memory-mapped.

A dataset dictionary opens its ``--split`` (default ``train``, or its only split). The
image column is the first column of feature type ``Image``. Ids come from the first of
the columns ``id``, ``image_id``, ``file_name`` whose values are unique, else from the
row number. A ``label`` column of type ``ClassLabel`` gives labels and class names (``-1``,
the library's "no label", becomes no label). Rows keep the dataset's order, so every
open lists the same items in the same order.

Images are read undecoded (the stored bytes, or the file a row points at) and decoded
with Pillow in :meth:`HfPool.load`, so an unreadable row fails there, where the
extractor catches and lists it. The content key of a row is the sha256 of its stored
bytes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from geal.errors import PoolError
from geal.internal.images import decode_bytes
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

ID_COLUMNS = ("id", "image_id", "file_name")
DEFAULT_SPLIT = "train"


def _is_saved_dataset(path: Path) -> bool:
    """A ``save_to_disk`` folder: a Dataset (state.json + arrow) or a DatasetDict."""
    if (path / "dataset_dict.json").is_file():
        return True
    return (path / "state.json").is_file() and any(path.glob("*.arrow"))


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files of ``path`` (itself, or under it), sorted; none for other paths."""
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".parquet"
    if not path.is_dir():
        return False
    if _is_saved_dataset(path):
        return True
    # Parquet directly in the folder or in the Hub's data/ subfolder; image files alone
    # never count, so a plain image folder stays ``folder`` unless --format hf is given.
    return any(path.glob("*.parquet")) or any((path / "data").glob("*.parquet"))


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise PoolError(
            "reading a Hugging Face dataset needs the 'datasets' package: pip install 'geal[hf]'"
        ) from exc
    return datasets


def _pick_split(found: Any, path: Path, split: str | None) -> tuple[Any, str | None]:
    """One split of a DatasetDict (``split``, else ``train``, else its only split)."""
    datasets = _datasets()
    if isinstance(found, datasets.Dataset):
        if split and split != str(found.split or split):
            raise PoolError(f"{path} holds one dataset (split {found.split}), not {split!r}")
        return found, str(found.split) if found.split is not None else split
    names = list(found.keys())
    if split is None:
        if DEFAULT_SPLIT in names:
            split = DEFAULT_SPLIT
        elif len(names) == 1:
            split = names[0]
        else:
            raise PoolError(f"{path} holds splits {', '.join(names)}; pass --split with one")
    if split not in names:
        raise PoolError(f"{path} has no split {split!r}; it has {', '.join(names)}")
    return found[split], split


def load_hf_dataset(path: Path, split: str | None = None) -> tuple[Any, str | None]:
    """The ``datasets.Dataset`` at ``path`` and the split it is, per the layouts above."""
    datasets = _datasets()
    path = Path(path)
    try:
        if path.is_dir() and _is_saved_dataset(path):
            found = datasets.load_from_disk(str(path))
        else:
            files = parquet_files(path)
            if path.is_file() and files:
                found = datasets.load_dataset("parquet", data_files=[str(f) for f in files])
            else:
                found = datasets.load_dataset(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise PoolError(f"cannot read {path} as a Hugging Face dataset: {exc}") from exc
    return _pick_split(found, path, split)


def _image_column(ds: Any, path: Path) -> str:
    datasets = _datasets()
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            return str(name)
    raise PoolError(
        f"Hugging Face dataset {path} has no image column (columns: {', '.join(ds.column_names)})"
    )


def _ids(ds: Any) -> tuple[list[str], str | None]:
    """Item ids: a unique id column's values as text, else row numbers."""
    for column in ID_COLUMNS:
        if column in ds.column_names:
            values = [str(v) for v in ds[column]]
            if len(set(values)) == len(values) and all(values):
                return values, column
            logger.warning("column %r holds repeated or empty values; ids are row numbers", column)
    return [str(i) for i in range(len(ds))], None


@dataclass
class HfPool(Pool):
    """Rows of a ``datasets.Dataset``; :meth:`load` decodes one row's image.

    The dataset is memory-mapped and pickles by file name, so data-loader workers get it
    without copying the images.
    """

    image_column: str = "image"
    dataset: Any = field(default=None, repr=False, compare=False)

    def _raw(self, index: int) -> dict[str, Any]:
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"pool index {index} out of range")
        raw = self.dataset[int(index) % len(self.items)][self.image_column]
        if not isinstance(raw, dict):
            raise PoolError(f"row {index} of {self.root} has no image")
        return raw

    def _bytes(self, index: int) -> bytes:
        raw = self._raw(index)
        if raw.get("bytes") is not None:
            return bytes(raw["bytes"])
        if raw.get("path"):
            return Path(raw["path"]).read_bytes()
        raise PoolError(f"row {index} of {self.root} has no image")

    def load(self, index: int) -> Image.Image:
        """Image ``index`` decoded by Pillow as 8-bit RGB; decoding errors are raised."""
        if self.items[index].path is not None:
            return super().load(index)
        return decode_bytes(self._bytes(index))

    def content_key(self, index: int) -> bytes:
        """sha256 of the row's stored image bytes (its file's bytes when it points at one)."""
        if self.items[index].path is not None:
            return super().content_key(index)
        return hashlib.sha256(self._bytes(index)).digest()


@register_format(
    "hf",
    _detect,
    "Hugging Face datasets: save_to_disk folder, Parquet files, or (named only) an imagefolder; --split",
    priority=35,
)
def read_hf(path: Path, *, split: str | None = None) -> HfPool:
    """Open one split of the Hugging Face dataset at ``path`` (see the module docstring)."""
    datasets = _datasets()
    path = Path(path)
    ds, split_name = load_hf_dataset(path, split)
    if len(ds) == 0:
        raise PoolError(f"Hugging Face dataset {path} holds no rows")
    column = _image_column(ds, path)
    ds = ds.cast_column(column, datasets.Image(decode=False))

    classes: list[str] | None = None
    labels: list[int | None] = [None] * len(ds)
    label_feature = ds.features.get("label")
    if isinstance(label_feature, datasets.ClassLabel):
        classes = [str(n) for n in label_feature.names]
        labels = [int(v) if v is not None and int(v) >= 0 else None for v in ds["label"]]

    ids, id_column = _ids(ds)
    # Rows that only point at a file (an imagefolder) keep that file as their path, so
    # exporters can name it; rows that store bytes have none.
    table = ds.select_columns([column]).with_format("arrow")[:]
    struct = table.column(column).combine_chunks()
    stored = struct.field("bytes").is_valid().to_pylist()
    pointed = struct.field("path").to_pylist()
    paths: list[str | None] = [
        str(Path(local).absolute()) if not has_bytes and local and Path(local).is_file() else None
        for has_bytes, local in zip(stored, pointed, strict=True)
    ]

    items = [
        PoolItem(index=i, id=ids[i], path=paths[i], subset=split_name, label=labels[i])
        for i in range(len(ds))
    ]
    # the source files (not a load_dataset cache, which may be rebuilt): a saved
    # dataset's Arrow files, or the Parquet files; imagefolder rows count by their paths
    if path.is_dir() and _is_saved_dataset(path):
        files = sorted(str(Path(f["filename"]).absolute()) for f in ds.cache_files)
    else:
        files = [str(f.absolute()) for f in parquet_files(path)]
    logger.info(
        "Hugging Face dataset %s%s: %d rows, image column %r, ids from %s%s",
        path,
        f" [{split_name}]" if split_name else "",
        len(items),
        column,
        id_column or "row numbers",
        f", {len(classes)} classes" if classes else "",
    )
    return HfPool(
        root=path,
        format="hf",
        items=items,
        classes=classes,
        meta={"split": split_name, "files": files},
        image_column=column,
        dataset=ds,
    )
