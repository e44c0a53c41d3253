"""IDX files: MNIST and Fashion-MNIST images (``*-images-idx3-ubyte[.gz]``) and labels.

Accepts a folder holding ``train-*`` and ``t10k-*`` files (``split`` ``train``, the
default, or ``test``/``t10k``; torchvision's ``raw/`` subfolder is looked into too), or
a single images file, whose labels file is found beside it. The header (magic, element
type, dimensions) is checked against the file size, so a truncated download fails at
open with the file named. Plain files are memory-mapped; gzip files are decompressed
once (Fashion-MNIST train is 47 MB raw). Grey images load as RGB.
"""

from __future__ import annotations

import gzip
import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(d) for d in range(10)]

# IDX element type codes -> numpy dtypes (multi-byte types are big-endian).
_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_NAME = re.compile(
    r"^(?P<prefix>train|t10k)-(?P<kind>images|labels)[-.]idx(?P<ndim>[13])-ubyte(?P<gz>\.gz)?$"
)
_IMAGES_FILE = re.compile(r"idx3[-_.]ubyte(\.gz)?$")
_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}


@dataclass(frozen=True)
class IdxHeader:
    """Element type, dimensions and data offset of an IDX file."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def parse_idx_header(head: bytes, path: Path) -> IdxHeader:
    """Parse the magic number and dimensions at the start of an IDX file.

    Args:
        head: at least the first ``4 + 4 * ndim`` bytes of the (decompressed) file.
        path: the file, named in errors.
    """
    if len(head) < 4:
        raise PoolError(f"IDX file {path} is truncated: no header")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise PoolError(f"{path} is not an IDX file (magic {head[:4].hex()})")
    if len(head) < 4 + 4 * ndim:
        raise PoolError(f"IDX file {path} is truncated: header incomplete")
    shape = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    return IdxHeader(np.dtype(_DTYPES[code]), tuple(int(d) for d in shape), 4 + 4 * ndim)


def _check_size(header: IdxHeader, size: int, path: Path) -> None:
    expected = header.offset + header.nbytes
    if size < expected:
        raise PoolError(
            f"IDX file {path} is truncated: {size} bytes, the header {header.shape} needs {expected}"
        )
    if size > expected:
        raise PoolError(
            f"IDX file {path} is {size} bytes, more than the {expected} its header {header.shape} needs"
        )


def read_idx(path: str | Path, *, mmap: bool = True) -> np.ndarray:
    """The array stored in an IDX file, gzip or not, with its size checked.

    Args:
        path: the file; a ``.gz`` suffix means gzip.
        mmap: memory-map a plain file instead of reading it (gzip files are always read).

    Raises:
        PoolError: naming the file, when it cannot be read, is not IDX or is truncated.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
            header = parse_idx_header(raw[:1024], path)
            _check_size(header, len(raw), path)
            return np.frombuffer(
                raw, dtype=header.dtype, count=int(np.prod(header.shape)), offset=header.offset
            ).reshape(header.shape)
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
        header = parse_idx_header(head, path)
        _check_size(header, path.stat().st_size, path)
        if mmap and header.nbytes > 0:
            return np.memmap(
                path, dtype=header.dtype, mode="r", offset=header.offset, shape=header.shape
            )
        data = path.read_bytes()
        return np.frombuffer(data, dtype=header.dtype, offset=header.offset).reshape(header.shape)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise PoolError(f"IDX file {path} is a truncated or damaged gzip file: {exc}") from exc
    except OSError as exc:
        raise PoolError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc


def _candidates(folder: Path, prefix: str, kind: str) -> list[Path]:
    """Every spelling of the ``prefix``-``kind`` file, plain before gzip (memory-mappable)."""
    ndim = "3" if kind == "images" else "1"
    return [
        folder / f"{prefix}-{kind}{sep}idx{ndim}-ubyte{gz}"
        for gz in ("", ".gz")
        for sep in ("-", ".")
    ]


def _find(folder: Path, prefix: str, kind: str) -> Path | None:
    """The ``prefix``-``kind`` file in ``folder``, or ``None``; a few stats, no listing."""
    return next((f for f in _candidates(folder, prefix, kind) if f.is_file()), None)


def _folder(path: Path) -> Path:
    """``path`` or its ``raw/`` subfolder (torchvision's layout), whichever holds images."""
    for folder in (path, path / "raw"):
        if any(_find(folder, prefix, "images") for prefix in ("train", "t10k")):
            return folder
    return path


def _detect(path: Path) -> bool:
    if path.is_file():
        return bool(_IMAGES_FILE.search(path.name))
    if not path.is_dir():
        return False
    folder = _folder(path)
    return any(_find(folder, prefix, "images") for prefix in ("train", "t10k"))


def _labels_beside(images_file: Path) -> Path | None:
    name = images_file.name.replace("images", "labels").replace("idx3", "idx1")
    candidates = [images_file.with_name(name)]
    if name.endswith(".gz"):
        candidates.append(images_file.with_name(name[:-3]))
    else:
        candidates.append(images_file.with_name(name + ".gz"))
    return next((c for c in candidates if c != images_file and c.is_file()), None)


@dataclass
class IdxPool(Pool):
    """IDX images, memory-mapped (or decompressed once); :meth:`load` slices one out.

    Pickling drops a memory map and the copy reopens the file on first use, so sending
    the pool to data-loader workers does not copy the images.
    """

    images_file: str = ""
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    def _array(self) -> np.ndarray:
        if self.pixels is None:
            pixels = read_idx(self.images_file)
            if pixels.shape[0] != len(self.items):
                raise PoolError(f"IDX file {self.images_file} changed since the pool was opened")
            self.pixels = pixels
        return self.pixels

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        """Image ``index`` as RGB (the grey value repeated in every channel); ``draft``
        does not apply to raw pixels."""
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"pool index {index} out of range")
        return Image.fromarray(np.asarray(self._array()[index])).convert("RGB")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(state.get("pixels"), np.memmap):
            state["pixels"] = None
        return state


def _split_name(images_file: Path) -> str:
    match = _NAME.match(images_file.name)
    if match:
        return "train" if match["prefix"] == "train" else "test"
    return images_file.name.split(".")[0]


@register_format(
    "idx",
    _detect,
    "MNIST / Fashion-MNIST IDX files (folder or images file), --split train|test",
    priority=20,
)
def read_idx_pool(path: Path, *, split: str | None = None) -> IdxPool:
    """Open the ``train`` (default) or ``test`` images of an IDX folder, or one images file."""
    path = Path(path)
    if path.is_file():
        if split:
            raise PoolError(f"{path} is a single IDX file; drop the split {split!r}")
        images_file: Path = path
        labels_file = _labels_beside(path)
    else:
        prefix = _SPLITS.get(split or "train")
        if prefix is None:
            raise PoolError(f"IDX split must be 'train' or 'test', not {split!r}")
        folder = _folder(path)
        found = _find(folder, prefix, "images")
        if found is None:
            raise PoolError(f"IDX folder {folder} has no {prefix}-images-idx3-ubyte[.gz]")
        images_file = found
        labels_file = _find(folder, prefix, "labels")

    pixels = read_idx(images_file)
    if pixels.ndim != 3 or pixels.dtype != np.uint8:
        raise PoolError(
            f"IDX file {images_file} holds {pixels.dtype} of shape {pixels.shape}, "
            "not uint8 images [n, rows, cols]"
        )
    n = pixels.shape[0]
    labels: list[int] | list[None] = [None] * n
    if labels_file is not None:
        label_array = read_idx(labels_file, mmap=False)
        if label_array.ndim != 1 or label_array.shape[0] != n:
            raise PoolError(
                f"IDX labels {labels_file} hold shape {label_array.shape} for {n} images"
            )
        labels = label_array.astype(np.int64).tolist()

    classes = FASHION_CLASSES if "fashion" in str(images_file.absolute()).lower() else DIGIT_CLASSES
    top = max((label for label in labels if label is not None), default=-1)
    if top >= len(classes):
        classes = [str(c) for c in range(top + 1)]
    split_name = _split_name(images_file)
    items = [
        PoolItem(index=i, id=f"{split_name}/{i}", subset=split_name, label=label)
        for i, label in enumerate(labels)
    ]
    files = [images_file] + ([labels_file] if labels_file is not None else [])
    logger.info("IDX %s: %d images%s", images_file, n, " with labels" if labels_file else "")
    return IdxPool(
        root=path,
        format="idx",
        items=items,
        classes=list(classes),
        meta={"split": split_name, "files": [str(f.absolute()) for f in files]},
        images_file=str(images_file.absolute()),
        pixels=pixels,
    )
