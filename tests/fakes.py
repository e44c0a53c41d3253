"""Builders for tiny fake pools on disk, one per reader format.

Every builder writes into ``root`` and returns a :class:`FakePool` saying what the
reader must produce: the path to open, the ids in pool order, the labels and the
expected RGB pixels of each image. Images are derived from their index so a test can
tell whether ``load`` returned the right picture.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

FILE_EXTENSIONS = (".png", ".JPG", ".bmp", ".webp", ".tiff", ".jpeg", ".PNG", ".tif")
CIFAR_NAMES = [
    b"airplane", b"automobile", b"bird", b"cat", b"deer",
    b"dog", b"frog", b"horse", b"ship", b"truck",
]  # fmt: skip


@dataclass
class FakePool:
    """What a reader must return for a fake pool.

    Attributes:
        path: what to pass to ``open_pool``.
        ids: item ids in pool order.
        labels: item labels in pool order.
        images: expected RGB arrays [H, W, 3] in pool order.
        tol: largest per-pixel difference allowed (JPEG is lossy).
        files: image files in pool order (``None`` for container formats).
        test: the ``test`` split, for formats that have one.
        extra: format-specific facts (annotation file, per-image annotations, ...).
    """

    path: Path
    ids: list[str]
    labels: list[int | None]
    images: list[np.ndarray]
    tol: int = 0
    files: list[Path] | None = None
    test: FakePool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def colour(i: int) -> tuple[int, int, int]:
    """A colour for image ``i``, far (in every channel sum) from its neighbours'."""
    return ((i * 67 + 20) % 256, (i * 131 + 90) % 256, (i * 199 + 160) % 256)


def solid(i: int, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    """Image ``i`` as a solid colour, ``size`` = (width, height)."""
    w, h = size
    return np.broadcast_to(np.array(colour(i), np.uint8), (h, w, 3)).copy()


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        im.save(path, format="JPEG", quality=95, subsampling=0)
    elif ext == ".webp":
        im.save(path, format="WEBP", lossless=True)
    else:
        im.save(path)
    return path


# ---------------------------------------------------------------------------- folder


def make_folder_pool(
    root: Path, n: int, classes: list[str] | None = None, *, nested: bool = False
) -> FakePool:
    """``n`` images under ``root`` in every supported extension (mixed case).

    With ``classes`` the images go to ``root/<class>/`` round-robin (ImageFolder
    layout); with ``nested`` some go two levels down. Non-image and hidden files are
    added too and must be ignored.
    """
    root = Path(root)
    entries = []
    for i in range(n):
        name = f"img_{i:03d}{FILE_EXTENSIONS[i % len(FILE_EXTENSIONS)]}"
        if classes:
            rel = f"{classes[i % len(classes)]}/{name}"
        elif nested and i % 3 == 1:
            rel = f"sub/deeper/{name}"
        else:
            rel = name
        save_image(root / rel, solid(i))
        entries.append((rel, i))
    (root / "notes.txt").write_text("not an image\n")
    save_image(root / ".hidden" / "skip.png", solid(999))
    (root / "._img_000.jpg").write_bytes(b"resource fork, not an image")
    entries.sort()
    class_of = {c: k for k, c in enumerate(sorted(classes))} if classes else {}
    return FakePool(
        path=root,
        ids=[rel for rel, _ in entries],
        labels=[class_of[rel.split("/")[0]] if classes else None for rel, _ in entries],
        images=[solid(i) for _, i in entries],
        tol=6,
        files=[root / rel for rel, _ in entries],
    )


# ------------------------------------------------------------------------------- VOC


def voc_annotation_xml(
    filename: str, width: int, height: int, objects: list[dict[str, Any]]
) -> str:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC"
    ET.SubElement(ann, "filename").text = filename
    size = ET.SubElement(ann, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for obj in objects:
        node = ET.SubElement(ann, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bbox"], strict=True):
            ET.SubElement(box, tag).text = str(value)
    return ET.tostring(ann, encoding="unicode")


def make_voc_devkit(
    root: Path, years: tuple[str, ...] = ("2007", "2012"), n_per_year: int = 3
) -> FakePool:
    """``root/VOCdevkit/VOC<year>`` with JPEGs, Annotations and ``trainval.txt``.

    The split file lists ids in reverse order, so a reader sorting them would be caught.
    ``extra["annotations"]`` maps each id to the objects written for it.
    """
    devkit = Path(root) / "VOCdevkit"
    ids, images, files = [], [], []
    annotations: dict[str, list[dict[str, Any]]] = {}
    k = 0
    for year in years:
        year_dir = devkit / f"VOC{year}"
        main = year_dir / "ImageSets" / "Main"
        main.mkdir(parents=True)
        image_ids = [
            f"{i * 2 + 5:06d}" if year == "2007" else f"{year}_{i + 1:06d}"
            for i in range(n_per_year)
        ]
        for image_id in image_ids:
            save_image(year_dir / "JPEGImages" / f"{image_id}.jpg", solid(k))
            objects = [
                {"name": "dog", "bbox": [1, 2, 8, 9], "difficult": False},
                {"name": "person", "bbox": [2, 1, 11, 10], "difficult": k % 2 == 0},
            ][: 1 + k % 2]
            (year_dir / "Annotations").mkdir(exist_ok=True)
            (year_dir / "Annotations" / f"{image_id}.xml").write_text(
                voc_annotation_xml(f"{image_id}.jpg", 12, 10, objects)
            )
            annotations[f"{year}/{image_id}"] = objects
            k += 1
        listed = image_ids[::-1]
        (main / "trainval.txt").write_text("".join(f"{i}\n" for i in listed))
        order = {image_id: n for n, image_id in enumerate(image_ids)}
        base = k - n_per_year
        for image_id in listed:
            ids.append(f"{year}/{image_id}")
            images.append(solid(base + order[image_id]))
            files.append(year_dir / "JPEGImages" / f"{image_id}.jpg")
    return FakePool(
        path=devkit,
        ids=ids,
        labels=[None] * len(ids),
        images=images,
        tol=6,
        files=files,
        extra={"annotations": annotations},
    )


# ------------------------------------------------------------------------------ COCO

COCO_CATEGORIES = [
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
]


def make_coco(root: Path, n: int, split: str = "train2017") -> FakePool:
    """``root/annotations/instances_<split>.json`` and ``root/<split>/*.jpg``.

    Image ids are sparse and listed out of order; each image has 1-3 annotations;
    ``info`` and ``licenses`` are present. ``extra["json"]`` is the written document.
    """
    root = Path(root)
    image_ids = [1000 - 7 * i for i in range(n)]  # descending, so sorting is tested
    images, annotations = [], []
    ann_id = 1
    for i, image_id in enumerate(image_ids):
        file_name = f"{image_id:012d}.jpg"
        save_image(root / split / file_name, solid(i))
        images.append(
            {"license": 1, "file_name": file_name, "height": 10, "width": 12, "id": image_id}
        )
        for j in range(1 + i % 3):
            category = COCO_CATEGORIES[(i + j) % len(COCO_CATEGORIES)]["id"]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [1.0, 1.0, 5.0, 4.0],
                    "area": 20.0,
                    "iscrowd": 0,
                    "segmentation": [[1, 1, 6, 1, 6, 5]],
                }
            )
            ann_id += 1
    doc = {
        "info": {"description": "fake COCO", "version": "1.0", "year": 2017},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://example.org"}],
        "images": images,
        "annotations": annotations,
        "categories": COCO_CATEGORIES,
    }
    annotation_file = root / "annotations" / f"instances_{split}.json"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    annotation_file.write_text(json.dumps(doc))
    order = sorted(range(n), key=lambda i: image_ids[i])
    return FakePool(
        path=root,
        ids=[str(image_ids[i]) for i in order],
        labels=[None] * n,
        images=[solid(i) for i in order],
        tol=6,
        files=[root / split / f"{image_ids[i]:012d}.jpg" for i in order],
        extra={"annotation_file": annotation_file, "json": doc},
    )


# ----------------------------------------------------------------------------- CIFAR


def _reconstruct() -> Any:
    import importlib

    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy has no _reconstruct")


# The pure-Python pickler lets a subclass replace how bytes are written.
_PurePickler: Any = pickle._Pickler


class Py2Pickler(_PurePickler):
    """Writes what Python 2's cPickle wrote for the official CIFAR batches (protocol 2).

    Byte strings become Python 2 ``str`` opcodes and numpy arrays are reduced the way
    numpy 1 did, through ``numpy.core.multiarray._reconstruct`` (rewritten in
    :func:`dump_py2`).
    """

    dispatch: ClassVar[dict[type, Any]] = dict(_PurePickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:
            state = (1, obj.shape, obj.dtype, False, obj.tobytes())
            return (_reconstruct(), (np.ndarray, (0,), b"b"), state)
        if isinstance(obj, np.dtype):
            return (np.dtype, (obj.str[1:].encode(), 0, 1), (3, b"|", None, None, None, -1, -1, 0))
        return NotImplemented


def dump_py2(obj: Any) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 lives in numpy._core; the official files name numpy 1's numpy.core.
    return buf.getvalue().replace(
        b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n"
    )


def cifar_image(g: int) -> np.ndarray:
    """Image ``g``: red and green constant, blue rising along x (catches a transpose)."""
    r, gr, _ = colour(g)
    im = np.empty((32, 32, 3), np.uint8)
    im[..., 0] = r
    im[..., 1] = gr
    im[..., 2] = (np.arange(32, dtype=np.uint8) * 8)[None, :]
    return im


def make_cifar10(root: Path, n_per_batch: int, *, with_meta: bool = True) -> FakePool:
    """``root/cifar-10-batches-py`` with ``data_batch_1..5``, ``test_batch``, ``batches.meta``.

    Pixels are stored like the official files: one uint8 row of 3072 bytes per image,
    the red plane, then green, then blue. Labels are the global index modulo 10.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    splits: dict[str, FakePool] = {}
    g = 0
    for split, names in (
        ("train", [f"data_batch_{b}" for b in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        ids: list[str] = []
        labels: list[int | None] = []
        images: list[np.ndarray] = []
        for b, name in enumerate(names):
            batch_images = [cifar_image(g + i) for i in range(n_per_batch)]
            batch_labels = [(g + i) % 10 for i in range(n_per_batch)]
            data = np.stack([im.transpose(2, 0, 1).reshape(-1) for im in batch_images])
            batch = {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                b"labels": batch_labels,
                b"data": data,
                b"filenames": [f"img_{g + i}.png".encode() for i in range(n_per_batch)],
            }
            (folder / name).write_bytes(dump_py2(batch))
            ids += [f"{name}/{row}" for row in range(n_per_batch)]
            labels += batch_labels
            images += batch_images
            g += n_per_batch
        splits[split] = FakePool(path=Path(root), ids=ids, labels=labels, images=images)
    if with_meta:
        meta = {b"num_cases_per_batch": n_per_batch, b"label_names": CIFAR_NAMES, b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(dump_py2(meta))
    train = splits["train"]
    train.test = splits["test"]
    train.extra["folder"] = folder
    return train


# ------------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format: magic 0x0000 08 <ndim>, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_image(g: int) -> np.ndarray:
    """Grey image ``g``: a base level plus a ramp along x, 28x28."""
    ramp = (colour(g)[0] + 3 * np.arange(28)) % 256
    return np.tile(ramp, (28, 1)).astype(np.uint8)


def make_idx(root: Path, n: int, gz: bool = True, *, fashion: bool = False) -> FakePool:
    """``train-*`` (``n`` images) and ``t10k-*`` (``n // 2 + 1``) IDX files in a folder.

    The folder is ``root/fashion-mnist`` with ``fashion`` (the reader names the classes
    after it) and ``root/mnist`` otherwise.
    """
    folder = Path(root) / ("fashion-mnist" if fashion else "mnist")
    folder.mkdir(parents=True)
    suffix = ".gz" if gz else ""
    splits = {}
    g = 0
    for split, prefix, count in (("train", "train", n), ("test", "t10k", n // 2 + 1)):
        grey = [idx_image(g + i) for i in range(count)]
        labels = [(g + i * 3) % 10 for i in range(count)]
        for kind, array in (
            ("images-idx3", np.stack(grey)),
            ("labels-idx1", np.array(labels, np.uint8)),
        ):
            data = idx_bytes(array)
            path = folder / f"{prefix}-{kind}-ubyte{suffix}"
            path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        splits[split] = FakePool(
            path=folder,
            ids=[f"{split}/{i}" for i in range(count)],
            labels=list(labels),
            images=[np.repeat(im[..., None], 3, axis=2) for im in grey],
        )
        g += count
    train = splits["train"]
    train.test = splits["test"]
    return train
