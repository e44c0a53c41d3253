"""Composite detection pools: real objects pasted on crops of real photographs.

:func:`build_composite_pool` writes a COCO pool of *composite* images: 1-6 real
Fashion-MNIST objects pasted at random scales and places on random crops of real
scikit-image photographs, with exact boxes and classes. They are composites of real
objects, not natural images; results on them say how a selection treats images that
hold several objects of different classes, not how it does on VOC.

Needs scikit-image for the default backgrounds (the ``eval`` extra).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geal.errors import GealError
from geal.internal.io import atomic_open
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# scikit-image's bundled photographs large enough for 160 px crops (colour and texture).
BACKGROUND_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "rocket",
    "immunohistochemistry", "hubble_deep_field", "moon", "coins", "cell", "clock",
)  # fmt: skip

SIZE_BUCKETS = ("small", "medium", "large")


# ------------------------------------------------------------------- composite pools


def load_backgrounds(names: Sequence[str] = BACKGROUND_PHOTOS) -> list[np.ndarray]:
    """RGB uint8 arrays of scikit-image's bundled photographs (grey ones repeated to RGB).

    Photos missing from the installed scikit-image are skipped with a log line.
    """
    return list(_named_backgrounds(names).values())


def _named_backgrounds(names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        from skimage import data as skdata
    except ImportError as exc:  # pragma: no cover - scikit-image is in the eval extra
        raise GealError(
            "composite pools draw their backgrounds from scikit-image: pip install scikit-image"
        ) from exc
    out = {}
    for name in names:
        try:
            photo = np.asarray(getattr(skdata, name)())
        except Exception as exc:  # a photo absent from this release, or needing a download
            logger.info("skipping background %s: %s", name, exc)
            continue
        if photo.dtype != np.uint8:
            photo = (np.clip(photo, 0, 1) * 255).astype(np.uint8)
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        out[name] = np.ascontiguousarray(photo[..., :3])
    if not out:
        raise GealError("no scikit-image background photo could be loaded")
    return out


def _background(
    photos: Sequence[np.ndarray], canvas: int, rng: np.random.Generator, jitter: bool = False
) -> tuple[int, np.ndarray]:
    """A random photo's index and a random square crop of it (canvas size to short side).

    With ``jitter`` the crop may be as small as a quarter of the canvas side (zoomed in),
    and it is turned by a random multiple of 90 degrees, its colour channels permuted
    and its contrast and brightness scaled, so that crops of one photo rarely look alike.
    """
    which = int(rng.integers(len(photos)))
    photo = photos[which]
    h, w = photo.shape[:2]
    short = min(h, w)
    smallest = max(8, canvas // 4) if jitter else canvas
    side = int(rng.integers(min(smallest, short), short + 1))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side])
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = np.asarray(crop.resize((canvas, canvas), Image.Resampling.BILINEAR), dtype=np.float32)
    if jitter:
        img = np.rot90(img, int(rng.integers(4)))[..., rng.permutation(3)]
        contrast, brightness = rng.uniform(0.5, 1.2), rng.uniform(-40.0, 40.0)
        img = np.clip((img - img.mean()) * contrast + img.mean() + brightness, 0.0, 255.0)
        img = np.ascontiguousarray(img, dtype=np.float32)
    return which, img


def _object(
    grey: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """An item scaled so its longer side is ``size`` px: (RGB colour [h,w,3], alpha [h,w]).

    The alpha comes from the item's own pixels, so the background shows around (and
    through the gaps of) the object. ``None`` for an empty item.
    """
    ys, xs = np.nonzero(grey > 0)
    if ys.size == 0:
        return None
    crop = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    g = np.asarray(Image.fromarray(crop).resize(new, Image.Resampling.BILINEAR), np.float32) / 255
    alpha = np.clip((g - 0.03) / 0.1, 0.0, 1.0)
    alpha[alpha < 0.25] = 0.0  # no faint fringe: every painted pixel is inside the box
    if not alpha.any():
        return None
    tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32)
    tint /= tint.max()
    colour = (0.3 + 0.7 * g)[..., None] * tint * 255.0
    return colour, alpha


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller of the two boxes' areas (xyxy)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def class_weights(n_classes: int, ratio: float) -> np.ndarray:
    """Class frequencies falling geometrically from class 0 to the last, first/last = ratio."""
    if ratio < 1:
        raise GealError("class_ratio must be at least 1 (1 = balanced classes)")
    w = ratio ** (-np.arange(n_classes) / max(1, n_classes - 1))
    return w / w.sum()


def build_composite_pool(
    out: str | Path,
    n: int,
    objects: Pool,
    *,
    split: str = "train",
    seed: int = 0,
    canvas: int = 160,
    objects_per_image: tuple[int, int] = (1, 6),
    object_size: tuple[int, int] = (20, 80),
    max_overlap: float = 0.2,
    class_ratio: float = 1.0,
    backgrounds: Sequence[np.ndarray] | None = None,
    jitter_backgrounds: bool = False,
) -> Path:
    """Write ``n`` composite images with exact boxes as a COCO pool; return its json.

    Each canvas is a random crop of a real photograph with 1-6 real objects of
    ``objects`` (e.g. Fashion-MNIST: ``open_pool(dir, "idx", split="train")``) pasted on
    it through their own pixel masks, at a random size (longer side log-uniform in
    ``object_size``) and place, overlapping another object's box by at most
    ``max_overlap`` of the smaller box. The object count per image is uniform in
    ``objects_per_image`` (fewer when a canvas has no room left). These are composites
    of real objects, not natural images.

    Layout: ``out/annotations/instances_<split>.json`` and ``out/<split>/NNNNNN.png``,
    which :func:`geal.pools.open_pool` reads as a ``coco`` pool. Image ``i`` depends only
    on ``(seed, i)``, so the same arguments write the same pool. Each image entry also
    records its ``background`` (an index into ``info["backgrounds"]``), for analyses of
    what a selection picked.

    Args:
        objects: a labeled pool; its ``classes`` (or Fashion-MNIST's names for ten
            classes) name the categories, ids 1..C.
        class_ratio: frequency of the most common class over the least common one
            (classes in index order, geometric in between); 1 is balanced.
        backgrounds: RGB uint8 photos to crop (default :func:`load_backgrounds`).
        jitter_backgrounds: zoom, turn, recolour and re-light every background crop
            (see ``_background``), so that backgrounds repeat less and a frozen
            backbone's view of a canvas depends more on its objects.
    """
    if n < 1:
        raise GealError("a composite pool needs at least one image")
    lo, hi = objects_per_image
    if not 1 <= lo <= hi:
        raise GealError(f"objects_per_image must be 1 <= min <= max, not {objects_per_image}")
    if not 1 <= object_size[0] <= object_size[1] <= canvas:
        raise GealError(f"object_size must lie in [1, canvas={canvas}], not {object_size}")
    labels = np.array([-1 if item.label is None else item.label for item in objects])
    if (labels < 0).any():
        raise GealError(f"pool {objects.root} has unlabeled items; objects need a class")
    n_classes = int(labels.max()) + 1
    names = list(objects.classes or [])
    if len(names) < n_classes:
        names = (
            list(FASHION_MNIST_CLASSES) if n_classes == 10 else [str(c) for c in range(n_classes)]
        )
    by_class = [np.flatnonzero(labels == c) for c in range(n_classes)]
    present = np.array([c for c in range(n_classes) if by_class[c].size])
    weights = class_weights(n_classes, class_ratio)[present]
    weights /= weights.sum()
    if backgrounds is None:
        named = _named_backgrounds(BACKGROUND_PHOTOS)
        photos, photo_names = list(named.values()), list(named)
    else:
        photos, photo_names = list(backgrounds), [f"photo {k}" for k in range(len(backgrounds))]

    out = Path(out)
    image_dir = out / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    log_lo, log_hi = math.log(object_size[0]), math.log(object_size[1])
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        background, img = _background(photos, canvas, rng, jitter_backgrounds)
        boxes: list[list[float]] = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            cls = int(rng.choice(present, p=weights))
            source = int(rng.choice(by_class[cls]))
            grey = np.asarray(objects.load(source).convert("L"))
            size = round(math.exp(rng.uniform(log_lo, log_hi)))
            made = _object(grey, size, rng)
            if made is None:
                continue
            colour, alpha = made
            h, w = alpha.shape
            ys, xs = np.nonzero(alpha)
            for _try in range(30):
                y0 = int(rng.integers(0, canvas - h + 1))
                x0 = int(rng.integers(0, canvas - w + 1))
                box = [
                    float(x0 + xs.min()),
                    float(y0 + ys.min()),
                    float(x0 + xs.max() + 1),
                    float(y0 + ys.max() + 1),
                ]
                if all(_overlap(box, other) <= max_overlap for other in boxes):
                    break
            else:
                continue  # no room left on this canvas
            a = alpha[..., None]
            region = img[y0 : y0 + h, x0 : x0 + w]
            img[y0 : y0 + h, x0 : x0 + w] = a * colour + (1 - a) * region
            boxes.append(box)
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(np.count_nonzero(alpha)),
                    "iscrowd": 0,
                    "source_index": source,
                }
            )
        file_name = f"{i + 1:06d}.png"
        Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).save(image_dir / file_name)
        images.append(
            {
                "id": i + 1,
                "file_name": file_name,
                "width": canvas,
                "height": canvas,
                "background": background,
            }
        )

    doc = {
        "info": {
            "description": "composite images: real objects from "
            f"{objects.root} pasted on crops of real photographs; not natural images",
            "seed": seed,
            "canvas": canvas,
            "objects_per_image": list(objects_per_image),
            "object_size": list(object_size),
            "max_overlap": max_overlap,
            "class_ratio": class_ratio,
            "jitter_backgrounds": jitter_backgrounds,
            "backgrounds": photo_names,
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": c + 1, "name": names[c], "supercategory": "object"} for c in range(n_classes)
        ],
    }
    target = out / "annotations" / f"instances_{split}.json"
    with atomic_open(target, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    logger.info("composite pool %s: %d images, %d objects", target, len(images), len(annotations))
    return target
