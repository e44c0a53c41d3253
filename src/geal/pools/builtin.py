"""The builtin demo pool: real sample images shipped inside PyPI packages.

``foolbox`` (3.3.4) ships 20 samples each of ImageNet (JPEG), CIFAR-10, CIFAR-100,
MNIST and Fashion-MNIST in ``foolbox/data/``, named ``<source>_<nn>_<class>.<ext>``;
``scikit-image`` ships a few real photos in ``skimage/data/`` (astronaut, coffee, the
cat Chelsea, a rocket, ...). Together they make a small, mixed, labelled pool that
installs with ``pip install 'geal[demo]'`` and needs no network: the pool of
``geal demo``.

Each image's class is ``<source>/<class>`` (``imagenet/243``, ``mnist/7``,
``skimage/coffee``) and its ``subset`` is the source, so coverage can be counted per
class and per source. Items point at the package files; ids are
``foolbox/<file name>`` and ``skimage/<file name>``. The format is registered as
``builtin`` but never detected: a user's folder is never mistaken for it.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

SOURCES = ("imagenet", "cifar10", "cifar100", "mnist", "fashion-mnist", "skimage")
_FOOLBOX_SOURCE = {
    "imagenet": "imagenet",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "mnist": "mnist",
    "fashionMNIST": "fashion-mnist",
}
_FOOLBOX_FILE = re.compile(r"^(?P<source>[A-Za-z0-9]+)_(?P<n>\d+)_(?P<cls>\d+)\.(?:png|jpg)$")

# scikit-image's real photographs (file -> class). Synthetic test patterns (chessboard,
# colour wheel, logo, phantom, the horse silhouette) and the near-duplicate right view
# of the stereo pair are left out.
SKIMAGE_PHOTOS = {
    "astronaut.png": "astronaut",
    "brick.png": "brick",
    "camera.png": "camera",
    "cell.png": "cell",
    "chelsea.png": "cat",
    "clock_motion.png": "clock",
    "coffee.png": "coffee",
    "coins.png": "coins",
    "grass.png": "grass",
    "gravel.png": "gravel",
    "hubble_deep_field.jpg": "hubble",
    "ihc.png": "ihc",
    "microaneurysms.png": "retina-detail",
    "moon.png": "moon",
    "motorcycle_left.png": "motorcycle",
    "page.png": "page",
    "retina.jpg": "retina",
    "rocket.jpg": "rocket",
    "text.png": "text",
}

_INSTALL = "pip install 'geal[demo]'"

CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_NAMES = (
    "apple", "aquarium fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak tree", "orange", "orchid", "otter", "palm tree", "pear", "pickup truck", "pine tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow tree", "wolf", "woman", "worm",
)  # fmt: skip


def package_data_dir(package: str) -> Path:
    """``<package>/data`` of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location) / "data"
        if folder.is_dir():
            return folder
    raise PoolError(f"the builtin pool needs the package {package}: {_INSTALL}")


def source_of(class_name: str) -> str:
    """The source part of a builtin class name (``mnist/7`` -> ``mnist``)."""
    return class_name.split("/", 1)[0]


def class_description(class_name: str) -> str:
    """A person's name for a builtin class (``imagenet/243`` -> ``bull mastiff``).

    ImageNet names come from timm's class list; an unknown class keeps its number.
    """
    source, _, cls = class_name.partition("/")
    if not cls.isdigit():
        return cls
    k = int(cls)
    names: dict[str, Sequence[str]] = {"cifar10": CIFAR10_NAMES, "cifar100": CIFAR100_NAMES}
    if source == "fashion-mnist":
        from geal.pools.idx import FASHION_CLASSES

        names[source] = FASHION_CLASSES
    if source in names and k < len(names[source]):
        return names[source][k]
    if source == "mnist":
        return f"digit {k}"
    if source == "imagenet":
        imagenet = _imagenet_names()
        if k < len(imagenet):
            return imagenet[k]
    return cls


@lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    """ImageNet-1k class names from timm (first synonym), or none with an older timm."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(
            str(info.index_to_description(k)).split(",")[0] for k in range(info.num_classes())
        )
    except Exception:  # an older timm without class names: numbers will do
        logger.debug("no ImageNet class names in this timm", exc_info=True)
        return ()


def _foolbox_entries(folder: Path) -> list[tuple[str, Path, str]]:
    entries = []
    for path in sorted(folder.iterdir()):
        match = _FOOLBOX_FILE.match(path.name)
        if match and match["source"] in _FOOLBOX_SOURCE:
            source = _FOOLBOX_SOURCE[match["source"]]
            entries.append((f"foolbox/{path.name}", path, f"{source}/{int(match['cls'])}"))
    if not entries:
        raise PoolError(f"{folder} holds no foolbox sample images; reinstall with {_INSTALL}")
    return entries


def _skimage_entries(folder: Path) -> list[tuple[str, Path, str]]:
    entries = [
        (f"skimage/{name}", folder / name, f"skimage/{cls}")
        for name, cls in sorted(SKIMAGE_PHOTOS.items())
        if (folder / name).is_file()
    ]
    if not entries:
        raise PoolError(f"{folder} holds none of scikit-image's photos; reinstall with {_INSTALL}")
    return entries


def open_builtin_pool() -> Pool:
    """The builtin pool: foolbox's samples, then scikit-image's photos, in file-name order."""
    foolbox = package_data_dir("foolbox")
    entries = _foolbox_entries(foolbox) + _skimage_entries(package_data_dir("skimage"))
    classes = sorted({cls for _, _, cls in entries})
    label_of = {cls: k for k, cls in enumerate(classes)}
    items = [
        PoolItem(index=i, id=image_id, path=str(path), subset=source_of(cls), label=label_of[cls])
        for i, (image_id, path, cls) in enumerate(entries)
    ]
    logger.info("builtin pool: %d images, %d classes", len(items), len(classes))
    return Pool(root=foolbox, format="builtin", items=items, classes=classes, meta={"split": None})


def _never(path: Path) -> bool:
    """Never detected: only ``--format builtin`` (or ``geal demo``) opens it."""
    return False


@register_format(
    "builtin",
    _never,
    "sample images shipped in foolbox and scikit-image (geal demo); never auto-detected",
    priority=100,
)
def read_builtin(path: Path, *, split: str | None = None) -> Pool:
    """Open the builtin pool; ``path`` is where it was recorded, the images are in the packages."""
    if split:
        raise PoolError(f"the builtin pool has no splits; drop the split {split!r}")
    return open_builtin_pool()
