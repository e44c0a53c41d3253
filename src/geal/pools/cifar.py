"""CIFAR-10 python batches (``cifar-10-batches-py``), read without trusting pickle.

The official batches are Python 2 pickles of a dict holding a uint8 array ``data``
[n, 3072] (red plane, green plane, blue plane of a 32x32 image per row), ``labels``,
``filenames`` and ``batch_label``. ``pickle.load`` on a downloaded file can run any
code, so batches are read with :class:`SafeUnpickler`, which builds plain containers
and the numpy arrays the format needs and refuses every other global.

Split ``train`` (default) reads ``data_batch_1`` .. ``data_batch_5``, ``test`` reads
``test_batch``; naming one batch reads only that one. The pixels of the whole split sit
in one array (150 MB for train), so loading an image is a slice and a transpose.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META_FILE = "batches.meta"
FOLDER = "cifar-10-batches-py"
ROW_BYTES = 3 * 32 * 32


def _numpy_reconstruct() -> Callable[..., np.ndarray]:
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, numpy 1
        try:
            fn: Callable[..., np.ndarray] = importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
        return fn
    raise ImportError("numpy has no multiarray._reconstruct")


_RECONSTRUCT = _numpy_reconstruct()


class _NdarrayType:
    """Stands in for ``numpy.ndarray`` in a pickle: usable only as _reconstruct's subtype,
    so a pickle cannot call the array constructor with a shape of its choosing."""


def _reconstruct(subtype: object, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NdarrayType or tuple(shape) != (0,):
        raise pickle.UnpicklingError("unexpected array reconstruction arguments")
    return _RECONSTRUCT(np.ndarray, (0,), typecode)


def _dtype(*args: Any) -> np.dtype[Any]:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _dtype,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler limited to builtin containers, numbers, strings and plain numpy arrays.

    ``find_class`` resolves exactly the three numpy globals an array pickle names
    (``_reconstruct``, ``ndarray``, ``dtype``), each replaced by a checked stand-in, and
    refuses every other name, so a hostile file fails before anything runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing to load a persistent id")


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`, Python 2 strings kept as bytes.

    Raises:
        PoolError: naming the file, when it is unreadable, malformed or names a global
            outside the allowed set.
    """
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise PoolError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # anything a malformed or hostile pickle can raise
        raise PoolError(f"{path} cannot be read as a CIFAR pickle: {exc}") from exc


def _get(d: dict[Any, Any], key: str) -> Any:
    """Look ``key`` up as Python 2 bytes (official files) or as text (re-saved files)."""
    return d.get(key.encode(), d.get(key))


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels uint8 [n, 3072] and labels int64 [n] of one batch file, validated."""
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise PoolError(f"CIFAR batch {path} holds a {type(batch).__name__}, not a dict")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise PoolError(f"CIFAR batch {path} lacks 'data' or 'labels' (is it CIFAR-100?)")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise PoolError(f"CIFAR batch {path}: 'data' is not a 2-D uint8 array")
    if data.shape[1] != ROW_BYTES:
        raise PoolError(f"CIFAR batch {path}: rows hold {data.shape[1]} bytes, not {ROW_BYTES}")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise PoolError(f"CIFAR batch {path}: 'labels' are not integers") from exc
    if label_array.shape != (data.shape[0],):
        raise PoolError(f"CIFAR batch {path}: {label_array.size} labels for {data.shape[0]} images")
    return data, label_array


def _batch_dir(path: Path) -> Path:
    return path / FOLDER if (path / FOLDER).is_dir() else path


def _detect(path: Path) -> bool:
    folder = _batch_dir(path)
    return path.is_dir() and any(
        (folder / name).is_file() for name in (*TRAIN_BATCHES[:1], *TEST_BATCHES)
    )


def _classes(folder: Path) -> list[str]:
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        return list(CIFAR10_CLASSES)
    meta = safe_load_pickle(meta_file)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise PoolError(f"CIFAR meta file {meta_file} has no list of 'label_names'")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


@dataclass
class CifarPool(Pool):
    """CIFAR images held as raw rows in one array; :meth:`load` slices and transposes."""

    pixels: np.ndarray = field(
        default_factory=lambda: np.zeros((0, ROW_BYTES), np.uint8), repr=False, compare=False
    )

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        """Image ``index`` as a 32x32 RGB picture (``draft`` does not apply to raw pixels)."""
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"pool index {index} out of range")
        planes = self.pixels[index].reshape(3, 32, 32)
        return Image.fromarray(np.ascontiguousarray(planes.transpose(1, 2, 0)))


@register_format(
    "cifar10",
    _detect,
    "CIFAR-10 python batches (cifar-10-batches-py), --split train|test",
    priority=10,
)
def read_cifar10(path: Path, *, split: str | None = None) -> CifarPool:
    """Open the ``train`` (default) or ``test`` split, or one named batch."""
    folder = _batch_dir(Path(path))
    split = split or "train"
    if split == "train":
        names: tuple[str, ...] = TRAIN_BATCHES
    elif split == "test":
        names = TEST_BATCHES
    elif split in TRAIN_BATCHES + TEST_BATCHES:
        names = (split,)
    else:
        raise PoolError(f"CIFAR split must be 'train', 'test' or a batch name, not {split!r}")
    files = [folder / name for name in names]
    for f in files:
        if not f.is_file():
            raise PoolError(f"CIFAR batch {f} is missing")

    pixels: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    items: list[PoolItem] = []
    for f in files:
        data, batch_labels = read_batch(f)
        for row, label in enumerate(batch_labels.tolist()):
            items.append(
                PoolItem(index=len(items), id=f"{f.name}/{row}", subset=f.name, label=label)
            )
        pixels.append(data)
        labels.append(batch_labels)
    classes = _classes(folder)
    all_labels = np.concatenate(labels)
    if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= len(classes)):
        raise PoolError(
            f"CIFAR batches in {folder} hold labels outside 0..{len(classes) - 1} "
            f"({len(classes)} class names)"
        )
    meta_files = [folder / META_FILE] if (folder / META_FILE).is_file() else []
    logger.info("CIFAR %s split %s: %d images", folder, split, len(items))
    return CifarPool(
        root=Path(path),
        format="cifar10",
        items=items,
        classes=classes,
        meta={"split": split, "files": [str(f.absolute()) for f in files + meta_files]},
        pixels=pixels[0] if len(pixels) == 1 else np.concatenate(pixels),
    )
