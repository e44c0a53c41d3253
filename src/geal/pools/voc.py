"""PASCAL VOC devkit: the images of an image set (``ImageSets/Main/<split>.txt``).

Accepts a ``VOCdevkit`` folder holding ``VOC2007`` and/or ``VOC2012`` (the VOC07+12
pool GEAL selects from), a folder holding ``VOCdevkit`` (torchvision's layout), or a
single ``VOC20xx`` folder. Items come in year order, then in split-file order; the id
``<year>/<image_id>`` stays unique across years.

Opening also checks every item's ``Annotations/<image_id>.xml``: an image whose file is
missing or broken is still a valid image to rank, but not a valid detection training
image, so it is counted and named in one warning and recorded in
``meta["bad_annotations"]`` (id -> reason; :attr:`VocPool.bad_annotations`) for
detection exports to leave out or refuse. A broken file is never read as "no objects":
:meth:`VocPool.annotation` raises for it.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

DEFAULT_SPLIT = "trainval"

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip

_YEAR_DIR = re.compile(r"^VOC(\d{4})$")


def _is_year_dir(path: Path) -> bool:
    return (path / "ImageSets" / "Main").is_dir()


def find_year_dirs(path: Path) -> tuple[Path, dict[str, Path]]:
    """The devkit root and its year folders (``{"2007": .../VOC2007}``) in year order.

    A single year folder not named ``VOC<year>`` is keyed by its own name.
    """
    path = Path(path)
    if (path / "VOCdevkit").is_dir():
        path = path / "VOCdevkit"
    if _is_year_dir(path):
        match = _YEAR_DIR.match(path.name)
        return path.parent, {match.group(1) if match else path.name: path}
    years: dict[str, Path] = {}
    if path.is_dir():
        for child in sorted(path.iterdir()):
            match = _YEAR_DIR.match(child.name)
            if match and _is_year_dir(child):
                years[match.group(1)] = child
    return path, years


def _detect(path: Path) -> bool:
    return path.is_dir() and bool(find_year_dirs(path)[1])


def _read_split(split_file: Path) -> list[str]:
    try:
        text = split_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PoolError(f"cannot read VOC image set {split_file}: {exc}") from exc
    ids: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        # Main/<split>.txt holds bare ids; per-class sets add a +1/-1 column after them.
        image_id = fields[0]
        if image_id in seen:
            raise PoolError(f"VOC image set {split_file} lists image {image_id!r} twice")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def _text(node: ET.Element, tag: str, xml_path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise PoolError(f"VOC annotation {xml_path} lacks <{tag}> in <{node.tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, xml_path: Path) -> float:
    value = _text(node, tag, xml_path)
    try:
        return float(value)
    except ValueError:
        raise PoolError(f"VOC annotation {xml_path} has a non-numeric <{tag}>: {value!r}") from None


def _flag(node: ET.Element, tag: str, xml_path: Path) -> bool:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return False
    return _number(node, tag, xml_path) != 0


def read_voc_annotation(xml_path: str | Path) -> dict[str, Any]:
    """Parse one VOC annotation file.

    Returns:
        ``{"filename": str, "size": {"width", "height", "depth"}, "objects": [{"name",
        "bbox": [xmin, ymin, xmax, ymax] (floats, VOC's 1-based pixels), "difficult",
        "truncated"}]}``.

    Raises:
        PoolError: naming the file, when it is missing, is not well-formed XML or lacks a
            required field (filename, size width/height, object name/bndbox).
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise PoolError(f"VOC annotation {xml_path} is malformed XML: {exc}") from exc
    except OSError as exc:
        raise PoolError(f"cannot read VOC annotation {xml_path}: {exc.strerror or exc}") from exc
    if root.tag != "annotation":
        raise PoolError(f"VOC annotation {xml_path} has root <{root.tag}>, not <annotation>")
    size = root.find("size")
    if size is None:
        raise PoolError(f"VOC annotation {xml_path} lacks <size>")
    depth = size.find("depth")
    objects = []
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            raise PoolError(f"VOC annotation {xml_path} has an <object> without <bndbox>")
        objects.append(
            {
                "name": _text(obj, "name", xml_path),
                "bbox": [_number(box, tag, xml_path) for tag in ("xmin", "ymin", "xmax", "ymax")],
                "difficult": _flag(obj, "difficult", xml_path),
                "truncated": _flag(obj, "truncated", xml_path),
            }
        )
    return {
        "filename": _text(root, "filename", xml_path),
        "size": {
            "width": int(_number(size, "width", xml_path)),
            "height": int(_number(size, "height", xml_path)),
            "depth": int(_number(size, "depth", xml_path))
            if depth is not None and depth.text
            else 3,
        },
        "objects": objects,
    }


@dataclass
class VocPool(Pool):
    """A VOC pool; images load from ``JPEGImages``, annotations parse on request."""

    def year_dir(self, year: str) -> Path:
        """The ``VOC<year>`` folder holding images of ``year``."""
        return Path(self.meta["years"][year])

    def annotation_path(self, index: int) -> Path:
        """``Annotations/<image_id>.xml`` of item ``index``."""
        item = self.items[index]
        assert item.subset is not None  # every VOC item carries its year
        image_id = item.id.split("/", 1)[1]
        return self.year_dir(item.subset) / "Annotations" / f"{image_id}.xml"

    def annotation(self, index: int) -> dict[str, Any]:
        """Parsed annotation of item ``index`` (see :func:`read_voc_annotation`)."""
        return read_voc_annotation(self.annotation_path(index))

    @property
    def bad_annotations(self) -> dict[str, str]:
        """Ids of the images whose annotation was missing or broken when the pool was
        opened, each with the reason; detection split files must not list them."""
        return dict(self.meta.get("bad_annotations") or {})


def check_annotations(pool: VocPool) -> dict[str, str]:
    """Parse every item's annotation; ``{id: reason}`` of those missing or broken.

    Logs one warning naming the files (the first ten) when there are any.
    """
    bad: dict[str, str] = {}
    missing: list[str] = []
    broken: list[str] = []
    for index, item in enumerate(pool.items):
        path = pool.annotation_path(index)
        try:
            read_voc_annotation(path)
        except PoolError as exc:
            bad[item.id] = str(exc)
            name = f"VOC{item.subset}/Annotations/{path.name}"
            (missing if not path.exists() else broken).append(name)
    if bad:
        parts = [
            f"{what}: {_few(names)}" for what, names in (("missing", missing), ("broken", broken))
            if names
        ]  # fmt: skip
        logger.warning(
            "VOC devkit %s: %d of %d images have no readable annotation (%s); they can be "
            "ranked but are not valid detection training images",
            pool.meta.get("devkit"), len(bad), len(pool.items), "; ".join(parts),
        )  # fmt: skip
    return bad


def _few(names: list[str], n: int = 10) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


@register_format(
    "voc", _detect, "PASCAL VOC devkit (VOCdevkit/VOC2007, VOC2012), --split image set", priority=30
)
def read_voc(path: Path, *, split: str | None = None) -> VocPool:
    """Open the image set ``split`` (default ``trainval``) of every year in the devkit.

    Years without that split file are skipped with a warning; if no year has it, the
    error names the files looked for.
    """
    split = split or DEFAULT_SPLIT
    if "/" in split or "\\" in split or split.startswith("."):
        raise PoolError(f"VOC image set name {split!r} must be a plain name like 'trainval'")
    devkit, years = find_year_dirs(path)
    if not years:
        raise PoolError(
            f"{path} is not a VOC devkit: no VOC<year> folder with ImageSets/Main inside"
        )
    items: list[PoolItem] = []
    missing: list[Path] = []
    for year, year_dir in years.items():
        split_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            missing.append(split_file)
            continue
        images = year_dir.absolute() / "JPEGImages"
        for image_id in _read_split(split_file):
            items.append(
                PoolItem(
                    index=len(items),
                    id=f"{year}/{image_id}",
                    path=str(images / f"{image_id}.jpg"),
                    subset=year,
                )
            )
    if len(missing) == len(years):
        raise PoolError(
            f"VOC devkit {devkit} has no image set {split!r}: missing "
            + ", ".join(str(m) for m in missing)
        )
    for m in missing:
        logger.warning("VOC image set %s is missing; that year is left out", m)
    if not items:
        raise PoolError(f"VOC image set {split!r} in {devkit} lists no images")
    logger.info("VOC devkit %s, image set %s: %d images", devkit, split, len(items))
    pool = VocPool(
        root=Path(path),
        format="voc",
        items=items,
        classes=list(VOC_CLASSES),
        meta={
            "devkit": str(devkit.absolute()),
            "years": {y: str(d.absolute()) for y, d in years.items()},
            "split": split,
        },
    )
    pool.meta["bad_annotations"] = check_annotations(pool)
    return pool
