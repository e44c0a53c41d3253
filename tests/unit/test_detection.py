"""Composite detection pools, coverage measures and the downstream detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geal.evaluate.composites import FASHION_MNIST_CLASSES, build_composite_pool, class_weights
from geal.evaluate.detection import (
    DetectorRecipe,
    Instances,
    detection_coverage,
    evaluate_map,
    load_detection_set,
    load_instances,
    size_bucket,
    size_thresholds,
    train_detector,
)
from geal.pools import open_pool
from geal.pools.base import Pool, PoolItem

BACKGROUND = (40, 90, 160)


class DiscPool(Pool):
    """Labeled 28x28 items: a bright disc on black, as Fashion-MNIST objects sit on black."""

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        yy, xx = np.mgrid[:28, :28]
        radius = 6 + index % 7
        disc = ((yy - 14) ** 2 + (xx - 14) ** 2 <= radius**2) * (150 + index % 100)
        return Image.fromarray(disc.astype(np.uint8)).convert("RGB")


def disc_pool(n: int = 40) -> DiscPool:
    items = [PoolItem(index=i, id=f"train/{i}", label=i % 10) for i in range(n)]
    return DiscPool(root=Path("discs"), format="idx", items=items)


def solid_background(side: int = 200) -> np.ndarray:
    return np.broadcast_to(np.array(BACKGROUND, np.uint8), (side, side, 3)).copy()


def build(root: Path, n: int = 12, **kw: object) -> Path:
    args: dict[str, object] = {
        "canvas": 64,
        "object_size": (12, 30),
        "backgrounds": [solid_background()],
    }
    args.update(kw)
    return build_composite_pool(root, n, disc_pool(), **args)  # type: ignore[arg-type]


# -------------------------------------------------------------------- composite pools


def test_composite_boxes_lie_inside_the_canvas_with_valid_classes(tmp_path: Path) -> None:
    doc = json.loads(build(tmp_path / "p", n=30).read_text())
    assert len(doc["images"]) == 30
    cat_ids = {c["id"] for c in doc["categories"]}
    assert [c["name"] for c in doc["categories"]] == list(FASHION_MNIST_CLASSES)
    per_image: dict[int, int] = {}
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
        assert ann["category_id"] in cat_ids
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    counts = [per_image.get(image["id"], 0) for image in doc["images"]]
    assert min(counts) >= 1 and max(counts) <= 6
    assert len(set(counts)) >= 3  # the object count varies from image to image
    assert "not natural images" in doc["info"]["description"]
    backgrounds = doc["info"]["backgrounds"]
    assert all(0 <= image["background"] < len(backgrounds) for image in doc["images"])


def test_boxes_are_tight_and_the_background_shows_around_each_object(tmp_path: Path) -> None:
    ann_file = build(tmp_path / "p", n=8, objects_per_image=(1, 1))
    doc = json.loads(ann_file.read_text())
    for image, ann in zip(doc["images"], doc["annotations"], strict=True):
        pixels = np.asarray(Image.open(ann_file.parents[1] / "train" / image["file_name"]))
        is_object = np.abs(pixels.astype(int) - BACKGROUND).sum(axis=2) > 3
        x, y, w, h = (int(v) for v in ann["bbox"])
        inside = np.zeros_like(is_object)
        inside[y : y + h, x : x + w] = True
        assert not (is_object & ~inside).any()  # nothing of the object outside its box
        # every edge of the box touches the object (tight)
        assert is_object[y, x : x + w].any() and is_object[y + h - 1, x : x + w].any()
        assert is_object[y : y + h, x].any() and is_object[y : y + h, x + w - 1].any()
        assert not is_object[y, x]  # a disc leaves the box corners to the background


def test_the_coco_reader_opens_a_composite_pool(tmp_path: Path) -> None:
    ann_file = build(tmp_path / "p", n=5)
    pool = open_pool(ann_file.parents[1])
    assert pool.format == "coco" and len(pool) == 5
    assert pool.classes == list(FASHION_MNIST_CLASSES)
    assert pool.load(4).size == (64, 64)
    instances = load_instances(pool)
    doc = json.loads(ann_file.read_text())
    assert instances.image.size == len(doc["annotations"])
    first = doc["annotations"][0]
    assert instances.image[0] == pool.index_of(str(first["image_id"]))
    assert instances.category[0] == first["category_id"] - 1


def test_same_seed_same_pool_other_seed_other_pool(tmp_path: Path) -> None:
    a = build(tmp_path / "a", n=6, seed=3)
    b = build(tmp_path / "b", n=6, seed=3)
    c = build(tmp_path / "c", n=6, seed=4)
    assert a.read_bytes() == b.read_bytes()
    for name in ("000001.png", "000006.png"):
        assert (a.parents[1] / "train" / name).read_bytes() == (
            b.parents[1] / "train" / name
        ).read_bytes()
    assert json.loads(a.read_text())["annotations"] != json.loads(c.read_text())["annotations"]


def test_class_ratio_makes_the_first_class_the_most_frequent() -> None:
    w = class_weights(10, 8.0)
    assert w.sum() == pytest.approx(1) and w[0] / w[-1] == pytest.approx(8)
    assert np.all(np.diff(w) < 0)
    assert np.allclose(class_weights(4, 1.0), 0.25)


def test_default_backgrounds_are_real_photos(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    ann_file = build_composite_pool(tmp_path / "p", 2, disc_pool(), canvas=48, object_size=(10, 20))
    pixels = np.asarray(Image.open(ann_file.parents[1] / "train" / "000001.png"))
    assert pixels.shape == (48, 48, 3) and pixels.std() > 5


# ------------------------------------------------------------------ coverage measures


def hand_instances() -> Instances:
    # image 0: class 0 small + class 1 medium; image 1: class 0 large; image 2: class 2
    # small; image 3: nothing. Areas 10, 100, 1000, 10 with buckets split at 50 and 500.
    sides = [np.sqrt(10), 10.0, np.sqrt(1000), np.sqrt(10)]
    return Instances(
        image=np.array([0, 0, 1, 2]),
        category=np.array([0, 1, 0, 2]),
        box=np.array([[0, 0, s, s] for s in sides], np.float32),
        n_images=4,
        classes=["a", "b", "c"],
    )


def test_coverage_measures_match_a_hand_computed_case() -> None:
    inst = hand_instances()
    cov = detection_coverage(inst, [0], thresholds=(50, 500))
    assert cov == {
        "images": 1,
        "instances": 2,
        "instance_coverage": 0.5,
        "objects_per_image": 2.0,
        "classes_covered": pytest.approx(2 / 3),
        "class_size_coverage": 0.5,  # (a, small), (b, medium) of 4 combinations
    }
    cov = detection_coverage(inst, [1, 3], thresholds=(50, 500))
    assert cov["instance_coverage"] == 0.25 and cov["objects_per_image"] == 0.5
    assert cov["class_size_coverage"] == 0.25  # (a, large)
    full = detection_coverage(inst, [0, 1, 2, 3], thresholds=(50, 500))
    assert full["instance_coverage"] == 1.0 and full["class_size_coverage"] == 1.0


def test_size_buckets_split_at_the_terciles() -> None:
    areas = np.arange(1, 10, dtype=np.float32)
    lo, hi = size_thresholds(areas)
    assert size_bucket(areas, (lo, hi)).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert size_bucket(np.array([49.0, 50.0, 499.0, 500.0]), (50, 500)).tolist() == [0, 1, 1, 2]


# ------------------------------------------------------------------------- detector


def test_detector_smoke_run_gives_a_map_in_range_and_is_seeded(tmp_path: Path) -> None:
    ann_file = build(tmp_path / "p", n=10, canvas=32, object_size=(8, 16))
    pool = open_pool(ann_file)
    recipe = DetectorRecipe(input_size=32, steps=3, batch_size=4, warmup=1)
    data = load_detection_set(pool, range(8), size=32)
    assert data.images.shape == (8, 3, 32, 32) and data.images.dtype == torch.uint8
    first = train_detector(data, recipe, seed=1)
    again = train_detector(data, recipe, seed=1)
    for p, q in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    result = evaluate_map(first, load_detection_set(pool, [8, 9], size=32))
    assert 0.0 <= result["map50"] <= 1.0
    assert set(result["per_class"]) <= set(FASHION_MNIST_CLASSES)


def test_jittered_backgrounds_vary_the_crops_and_keep_the_pool_reproducible(
    tmp_path: Path,
) -> None:
    yy, xx = np.mgrid[:200, :200]
    ramp = np.stack([xx, yy, (xx + yy) // 2], axis=2).astype(np.uint8)
    plain = build(tmp_path / "a", n=4, backgrounds=[ramp])
    jitter = build(tmp_path / "b", n=4, backgrounds=[ramp], jitter_backgrounds=True)
    again = build(tmp_path / "c", n=4, backgrounds=[ramp], jitter_backgrounds=True)
    assert json.loads(jitter.read_text())["info"]["jitter_backgrounds"] is True
    assert json.loads(plain.read_text())["info"]["jitter_backgrounds"] is False
    name = "000002.png"
    assert (jitter.parents[1] / "train" / name).read_bytes() == (
        again.parents[1] / "train" / name
    ).read_bytes()
    a = np.asarray(Image.open(plain.parents[1] / "train" / name), np.float32)
    b = np.asarray(Image.open(jitter.parents[1] / "train" / name), np.float32)
    assert a.shape == b.shape and np.abs(a - b).mean() > 5
    for ann in json.loads(jitter.read_text())["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
