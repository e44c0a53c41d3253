"""Hugging Face ``datasets``: a dataset with an image column.

Three layouts are accepted:

- a dataset written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (Arrow
  files with ``state.json`` / ``dataset_dict.json``), opened with ``load_from_disk``;
- a folder of Parquet files (the Hub's ``data/train-00000-of-00001.parquet`` layout, or
  plain ``*.parquet``), or one Parquet file, read where they lie with ``pyarrow``;
- any other folder ``datasets.load_dataset`` understands, such as an ``imagefolder``
  tree with a ``metadata.csv``; only with ``--format hf``.

``auto`` recognises the first two only (they hold no loose images, so no other reader
claims them); a plain image folder stays a ``folder`` pool unless ``--format hf`` is
given. Parquet files are not converted into the ``datasets`` cache (a full copy of the
pool, and a long wait for a large one): ``datasets`` only resolves which files make up
each split (``load_dataset_builder``, its ``data_files``), the features come from the
files' schema (or the dataset card), the small columns (ids, labels) are read once, and
an image is read on demand from the image column of its row group. Other folders go
through ``load_dataset``, which builds them into the cache; saved datasets are already
Arrow files and are memory-mapped.

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

import bisect
import hashlib
import logging
import threading
from collections.abc import Callable
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


def _choose_split(names: list[str], path: Path, split: str | None) -> str:
    """The split to open among ``names``: ``split``, else ``train``, else the only one."""
    if split is None:
        if DEFAULT_SPLIT in names:
            split = DEFAULT_SPLIT
        elif len(names) == 1:
            split = names[0]
        else:
            raise PoolError(f"{path} holds splits {', '.join(names)}; pass --split with one")
    if split not in names:
        raise PoolError(f"{path} has no split {split!r}; it has {', '.join(names)}")
    return split


def _pick_split(found: Any, path: Path, split: str | None) -> tuple[Any, str | None]:
    """One split of a DatasetDict (``split``, else ``train``, else its only split)."""
    datasets = _datasets()
    if isinstance(found, datasets.Dataset):
        if split and split != str(found.split or split):
            raise PoolError(f"{path} holds one dataset (split {found.split}), not {split!r}")
        return found, str(found.split) if found.split is not None else split
    name = _choose_split(list(found.keys()), path, split)
    return found[name], name


@dataclass(frozen=True)
class ParquetSplit:
    """One split of a Parquet dataset, resolved as ``datasets`` resolves it, not built.

    Attributes:
        split: the split's name.
        files: its Parquet files, in the order ``datasets`` reads them.
        features: the dataset's features (the README's, else the Parquet schema's).
    """

    split: str
    files: list[Path]
    features: Any


def load_hf_dataset(path: Path, split: str | None = None) -> tuple[Any, str | None] | ParquetSplit:
    """One split of the dataset at ``path``, per the layouts above.

    Parquet files are only resolved (a :class:`ParquetSplit`), so nothing is converted
    into the ``datasets`` cache; other layouts give a ``datasets.Dataset`` and its split.
    """
    datasets = _datasets()
    from datasets.packaged_modules.parquet.parquet import Parquet

    path = Path(path)
    try:
        if path.is_dir() and _is_saved_dataset(path):
            return _pick_split(datasets.load_from_disk(str(path)), path, split)
        if path.is_file() and path.suffix == ".parquet":
            builder = datasets.load_dataset_builder("parquet", data_files=[str(path.absolute())])
        else:
            builder = datasets.load_dataset_builder(str(path.absolute()))
        if not isinstance(builder, Parquet):
            # an imagefolder and the like: built into the cache, as load_dataset does
            builder.download_and_prepare()
            return _pick_split(builder.as_dataset(), path, split)
        data_files = {str(name): list(files) for name, files in builder.config.data_files.items()}
        features = builder.info.features
    except (FileNotFoundError, ValueError) as exc:
        raise PoolError(f"cannot read {path} as a Hugging Face dataset: {exc}") from exc
    name = _choose_split(list(data_files), path, split)
    files = [Path(f) for f in data_files[name]]
    if not files or not all(f.is_file() for f in files):
        raise PoolError(
            f"cannot read {path} as a Hugging Face dataset: split {name} has no local files"
        )
    if features is None:
        # as the Parquet builder does: the features stored in the first file's schema
        first = next(iter(data_files.values()))[0]
        features = datasets.Features.from_arrow_schema(_pq().read_schema(first))
    return ParquetSplit(name, files, features)


def _pq() -> Any:
    import pyarrow.parquet as pq

    return pq


def _image_column(features: Any, path: Path) -> str:
    datasets = _datasets()
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return str(name)
    raise PoolError(
        f"Hugging Face dataset {path} has no image column (columns: {', '.join(features)})"
    )


def _ids(
    names: list[str], values: Callable[[str], list[Any]], n: int
) -> tuple[list[str], str | None]:
    """Item ids: a unique id column's values as text, else row numbers."""
    for column in ID_COLUMNS:
        if column in names:
            ids = [str(v) for v in values(column)]
            if len(set(ids)) == len(ids) and all(ids):
                return ids, column
            logger.warning("column %r holds repeated or empty values; ids are row numbers", column)
    return [str(i) for i in range(n)], None


def _labels(
    features: Any, values: Callable[[str], list[Any]], n: int
) -> tuple[list[str] | None, list[int | None]]:
    """Class names and labels from a ``ClassLabel`` column ``label`` (``-1``: no label)."""
    feature = features.get("label")
    if not isinstance(feature, _datasets().ClassLabel):
        return None, [None] * n
    labels = [int(v) if v is not None and int(v) >= 0 else None for v in values("label")]
    return [str(name) for name in feature.names], labels


def _pointed(stored: list[bool], pointed: list[str | None]) -> list[str | None]:
    """Rows that only point at a file keep that file (absolute), so exporters can name it;
    rows that store bytes have none."""
    return [
        str(Path(local).absolute()) if not has_bytes and local and Path(local).is_file() else None
        for has_bytes, local in zip(stored, pointed, strict=True)
    ]


class ParquetImages:
    """The image column of Parquet files, read where they lie, one row group at a time.

    Only row counts and file names are kept, so the object pickles cheaply to data-loader
    workers; each process keeps its last row group, since workers read consecutive rows.
    """

    def __init__(self, files: list[Path], column: str, feature: Any) -> None:
        self.files = [str(f) for f in files]
        self.column = column
        self.features = _datasets().Features({column: feature})
        # (file, row group) of every row group in order, and the first row of each
        self.groups: list[tuple[int, int]] = []
        self.starts: list[int] = []
        n = 0
        for f, name in enumerate(self.files):
            meta = _pq().ParquetFile(name).metadata
            for g in range(meta.num_row_groups):
                if rows := meta.row_group(g).num_rows:
                    self.groups.append((f, g))
                    self.starts.append(n)
                    n += rows
        self.rows = n
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._file: tuple[int, Any] | None = None
        self._group: tuple[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_file", "_group")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _parquet_file(self, f: int) -> Any:
        if self._file is None or self._file[0] != f:
            if self._file is not None:
                self._file[1].close()
            self._file = (f, _pq().ParquetFile(self.files[f]))
        return self._file[1]

    def column_values(self, column: str, features: Any) -> list[Any]:
        """One (small) column of every row, cast to its feature as ``datasets`` casts it."""
        from datasets.table import table_cast

        schema = _datasets().Features({column: features[column]}).arrow_schema
        values: list[Any] = []
        for name in self.files:
            table = _read_column(_pq().ParquetFile(name), column, schema)
            values += table_cast(table, schema).column(column).to_pylist()
        return values

    def pointed_files(self) -> list[str | None]:
        """Each row's file when it stores no bytes but names an existing file, else None.

        Reads the image struct's ``path`` field, and its ``bytes`` field only in row
        groups that hold paths and whose statistics do not show every row storing bytes.
        """
        pa = _pa()
        out: list[str | None] = []
        for name in self.files:
            pf = _pq().ParquetFile(name)
            if self.column not in pf.schema_arrow.names:
                out += [None] * pf.metadata.num_rows
                continue
            kind = pf.schema_arrow.field(self.column).type
            struct = pa.types.is_struct(kind) and kind.get_field_index("path") >= 0
            for g in range(pf.metadata.num_row_groups):
                group = pf.metadata.row_group(g)
                rows = group.num_rows
                if struct:
                    leaf = f"{self.column}.path"
                    if _null_count(group, leaf) == rows:
                        out += [None] * rows
                        continue
                    paths = pf.read_row_group(g, columns=[leaf]).column(self.column)
                    paths = paths.combine_chunks().field("path").to_pylist()
                    if kind.get_field_index("bytes") < 0:
                        stored = [False] * rows
                    elif _null_count(group, f"{self.column}.bytes") == 0:
                        stored = [True] * rows
                    else:
                        table = pf.read_row_group(g, columns=[f"{self.column}.bytes"])
                        column = table.column(self.column).combine_chunks()
                        stored = column.field("bytes").is_valid().to_pylist()
                    out += _pointed(stored, paths)
                elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
                    # a column of paths, which datasets casts to structs without bytes
                    paths = pf.read_row_group(g, columns=[self.column]).column(self.column)
                    out += _pointed([False] * rows, paths.to_pylist())
                else:  # stored bytes only
                    out += [None] * rows
        return out

    def _cast(self, table: Any) -> Any:
        """The image column as ``datasets`` stores it: a struct of ``bytes`` and ``path``."""
        from datasets.table import table_cast

        return table_cast(table, self.features.arrow_schema).column(self.column).combine_chunks()

    def raw(self, row: int) -> Any:
        """Row ``row``'s image struct (``{"bytes", "path"}``, or None), reading only the image
        column of its row group, and that once while consecutive rows are read."""
        at = bisect.bisect_right(self.starts, row) - 1
        with self._lock:
            if self._group is None or self._group[0] != at:
                f, g = self.groups[at]
                schema = self.features.arrow_schema
                table = _read_column(self._parquet_file(f), self.column, schema, g)
                self._group = (at, self._cast(table))
            struct = self._group[1]
        return struct[row - self.starts[at]].as_py()


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _read_column(pf: Any, column: str, schema: Any, group: int | None = None) -> Any:
    """``column`` of a Parquet file (or of one row group) as a table; nulls of the type in
    ``schema`` where the file lacks the column, as ``datasets`` fills them."""
    if column not in pf.schema_arrow.names:
        meta = pf.metadata if group is None else pf.metadata.row_group(group)
        return _pa().table({column: _pa().nulls(meta.num_rows, schema.field(column).type)})
    if group is None:
        return pf.read(columns=[column])
    return pf.read_row_group(group, columns=[column])


def _null_count(row_group: Any, leaf: str) -> int | None:
    """The null count the statistics of Parquet column ``leaf`` record, if they do."""
    for c in range(row_group.num_columns):
        chunk = row_group.column(c)
        if chunk.path_in_schema == leaf:
            stats = chunk.statistics
            if stats is not None and stats.has_null_count:
                return int(stats.null_count)
    return None


@dataclass
class HfPool(Pool):
    """Rows of a Hugging Face dataset; :meth:`load` decodes one row's image.

    Parquet files are read where they lie (:class:`ParquetImages`); other layouts through
    a memory-mapped ``datasets.Dataset``. Both pickle by file name, so data-loader workers
    get the pool without copying the images.
    """

    image_column: str = "image"
    dataset: Any = field(default=None, repr=False, compare=False)
    parquet: ParquetImages | None = field(default=None, repr=False, compare=False)

    def _raw(self, index: int) -> dict[str, Any]:
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"pool index {index} out of range")
        row = int(index) % len(self.items)
        if self.parquet is not None:
            raw = self.parquet.raw(row)
        else:
            raw = self.dataset[row][self.image_column]
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

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        """Image ``index`` decoded by Pillow as 8-bit RGB; decoding errors are raised."""
        if self.items[index].path is not None:
            return super().load(index, draft)
        return decode_bytes(self._bytes(index), draft)

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
    path = Path(path)
    found = load_hf_dataset(path, split)
    if isinstance(found, ParquetSplit):
        parts = _parquet_parts(found, path)
        split_name: str | None = found.split
    else:
        ds, split_name = found
        parts = _dataset_parts(ds, path)
    items = [
        PoolItem(
            index=i, id=parts.ids[i], path=parts.paths[i], subset=split_name, label=parts.labels[i]
        )
        for i in range(len(parts.ids))
    ]
    logger.info(
        "Hugging Face dataset %s%s: %d rows, image column %r, ids from %s%s",
        path,
        f" [{split_name}]" if split_name else "",
        len(items),
        parts.column,
        parts.id_column or "row numbers",
        f", {len(parts.classes)} classes" if parts.classes else "",
    )
    return HfPool(
        root=path,
        format="hf",
        items=items,
        classes=parts.classes,
        meta={"split": split_name, "files": parts.files},
        image_column=parts.column,
        dataset=parts.dataset,
        parquet=parts.parquet,
    )


@dataclass
class _Parts:
    """What a pool is made of, read from either kind of source."""

    column: str
    ids: list[str]
    id_column: str | None
    labels: list[int | None]
    classes: list[str] | None
    paths: list[str | None]
    files: list[str]
    dataset: Any = None
    parquet: ParquetImages | None = None


def _parquet_parts(found: ParquetSplit, path: Path) -> _Parts:
    """Ids, labels and pointed files from the small columns; images stay in the files."""
    pa = _pa()
    column = _image_column(found.features, path)
    try:
        images = ParquetImages(found.files, column, found.features[column])
        if images.rows == 0:
            raise PoolError(f"Hugging Face dataset {path} holds no rows")
        names = list(found.features)

        def values(name: str) -> list[Any]:
            return images.column_values(name, found.features)

        ids, id_column = _ids(names, values, images.rows)
        classes, labels = _labels(found.features, values, images.rows)
        paths = images.pointed_files()
    except (OSError, pa.ArrowException) as exc:
        raise PoolError(f"cannot read {path} as a Hugging Face dataset: {exc}") from exc
    return _Parts(
        column=column,
        ids=ids,
        id_column=id_column,
        labels=labels,
        classes=classes,
        paths=paths,
        # the split's own files, in the order their rows are listed
        files=[str(f.absolute()) for f in found.files],
        parquet=images,
    )


def _dataset_parts(ds: Any, path: Path) -> _Parts:
    """Ids, labels and pointed files of a ``datasets.Dataset`` (saved, or an imagefolder)."""
    datasets = _datasets()
    if len(ds) == 0:
        raise PoolError(f"Hugging Face dataset {path} holds no rows")
    column = _image_column(ds.features, path)
    ds = ds.cast_column(column, datasets.Image(decode=False))

    def values(name: str) -> list[Any]:
        return list(ds[name])

    ids, id_column = _ids(ds.column_names, values, len(ds))
    classes, labels = _labels(ds.features, values, len(ds))
    table = ds.select_columns([column]).with_format("arrow")[:]
    struct = table.column(column).combine_chunks()
    paths = _pointed(struct.field("bytes").is_valid().to_pylist(), struct.field("path").to_pylist())
    # a saved dataset's own Arrow files; an imagefolder's rows count by their paths (its
    # cache files are not the source and may be rebuilt)
    files = (
        sorted(str(Path(f["filename"]).absolute()) for f in ds.cache_files)
        if path.is_dir() and _is_saved_dataset(path)
        else []
    )
    return _Parts(column, ids, id_column, labels, classes, paths, files, dataset=ds)
