"""Detection-aware evaluation: multi-object pools, coverage measures, a small detector.

GEAL's headline result is object detection (PASCAL VOC), where one image holds several
objects and one vector per image cannot describe it. This module makes that setting
measurable on one CPU:

- :func:`geal.evaluate.composites.build_composite_pool` writes a COCO pool of
  *composite* images (real objects pasted on crops of real photographs) with exact
  boxes and classes.
- :func:`detection_coverage` measures a selection without training: the fraction of
  object instances it contains and the fraction of (class x size bucket) combinations
  it covers.
- :func:`downstream_map` trains a small FCOS detector (torchvision, from scratch, a fixed
  recipe) on the selected images and returns its mAP@0.5 on held-out images.

Needs the ``eval`` extra (torchmetrics, pycocotools) for the mAP, and scikit-image for
the default backgrounds.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from geal.errors import GealError
from geal.internal.device import torch_threads
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ coverage measures


@dataclass
class Instances:
    """The object instances of a COCO pool, one row each, keyed by pool index.

    Attributes:
        image: pool index of the image holding each instance.
        category: contiguous class index (0..C-1, in category-id order).
        box: ``[M, 4]`` boxes, ``x1, y1, x2, y2`` in pixels.
        n_images: images in the pool.
        classes: class names, in index order.
    """

    image: np.ndarray
    category: np.ndarray
    box: np.ndarray
    n_images: int
    classes: list[str]

    @property
    def area(self) -> np.ndarray:
        """Box areas (width x height) in square pixels."""
        return (self.box[:, 2] - self.box[:, 0]) * (self.box[:, 3] - self.box[:, 1])


def load_instances(pool: Pool) -> Instances:
    """Read the instances of a ``coco`` pool's annotation file (crowd boxes skipped)."""
    from geal.pools.coco import load_coco_json

    annotation_file = pool.meta.get("annotation_file")
    if pool.format != "coco" or annotation_file is None:
        raise GealError(f"detection measures need a COCO pool, not a {pool.format} pool")
    doc = load_coco_json(annotation_file)
    cat_ids = sorted(int(c["id"]) for c in doc["categories"])
    cat_index = {cid: k for k, cid in enumerate(cat_ids)}
    names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
    image, category, box = [], [], []
    for ann in doc["annotations"]:
        if ann.get("iscrowd"):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        image.append(pool.index_of(str(ann["image_id"])))
        category.append(cat_index[int(ann["category_id"])])
        box.append([x, y, x + w, y + h])
    return Instances(
        image=np.asarray(image, np.int64),
        category=np.asarray(category, np.int64),
        box=np.asarray(box, np.float32).reshape(-1, 4),
        n_images=len(pool),
        classes=[names[c] for c in cat_ids],
    )


def size_thresholds(areas: np.ndarray) -> tuple[float, float]:
    """Box-area terciles: the small/medium and medium/large boundaries of a pool."""
    if areas.size == 0:
        raise GealError("no instances to take size terciles of")
    lo, hi = np.quantile(areas, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def size_bucket(areas: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """0 (small), 1 (medium) or 2 (large) per area: ``area < lo``, ``< hi``, else."""
    return np.searchsorted(np.asarray(thresholds), areas, side="right")


def detection_coverage(
    instances: Instances,
    selected: Sequence[int] | np.ndarray,
    thresholds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """How much of a pool's object variety a selection holds, without any training.

    Returns:
        ``images``; ``instances`` (objects in the selected images); ``instance_coverage``
        (those over all the pool's objects); ``objects_per_image`` (mean over the
        selection); ``classes_covered`` (fraction of the pool's classes present);
        ``class_size_coverage`` (fraction of the pool's (class x size bucket)
        combinations present in the selection; buckets by ``thresholds``, default the
        pool's box-area terciles).
    """
    chosen = np.unique(np.asarray(selected, dtype=np.int64))
    if thresholds is None:
        thresholds = size_thresholds(instances.area)
    inside = np.isin(instances.image, chosen)
    bucket = size_bucket(instances.area, thresholds)
    combos = set(zip(instances.category.tolist(), bucket.tolist(), strict=True))
    got = set(zip(instances.category[inside].tolist(), bucket[inside].tolist(), strict=True))
    classes = set(instances.category.tolist())
    total = int(instances.image.size)
    return {
        "images": int(chosen.size),
        "instances": int(inside.sum()),
        "instance_coverage": float(inside.sum() / total) if total else 0.0,
        "objects_per_image": float(inside.sum() / chosen.size) if chosen.size else 0.0,
        "classes_covered": len(set(instances.category[inside].tolist())) / max(1, len(classes)),
        "class_size_coverage": len(got) / max(1, len(combos)),
    }


# -------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DetectorRecipe:
    """The fixed training recipe of the downstream detector.

    A torchvision FCOS (anchor-free, one-stage) on a small from-scratch backbone: a
    stride-4 stem, two stride-2 stages feeding a two-level FPN (strides 8 and 16), and
    FCOS heads of ``head_convs`` GroupNorm convolutions. AdamW with linear warm-up and
    cosine decay, ``steps`` steps of ``batch_size`` images whatever the budget (small
    selections are seen more often), random horizontal flips. Images are resized to
    ``input_size`` once, before training.
    """

    input_size: int = 128
    steps: int = 300
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    width: int = 32
    head_convs: int = 2
    flip: bool = True
    score_thresh: float = 0.05
    threads: int = 1


class _Backbone(nn.Module):
    """A plain conv-BN-ReLU network with a two-level FPN, ``out_channels`` wide."""

    def __init__(self, width: int):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

        def block(i: int, o: int, s: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)
            )

        self.stem = nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 32, 1))
        self.c3 = nn.Sequential(block(32, 64, 2), block(64, 64, 1))
        self.c4 = nn.Sequential(block(64, 96, 2), block(96, 96, 1))
        self.fpn = FeaturePyramidNetwork([64, 96], width)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        p3 = self.c3(self.stem(x))
        p4 = self.c4(p3)
        out: OrderedDict[str, torch.Tensor] = self.fpn(OrderedDict([("p3", p3), ("p4", p4)]))
        return out


def build_detector(num_classes: int, recipe: DetectorRecipe | None = None) -> nn.Module:
    """An untrained FCOS for ``num_classes`` object classes (background excluded).

    Uses the global torch RNG for initialisation; :func:`train_detector` seeds it inside
    a forked RNG state.
    """
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    r = recipe or DetectorRecipe()
    backbone = _Backbone(r.width)
    return FCOS(
        backbone,
        num_classes=num_classes + 1,
        min_size=r.input_size,
        max_size=r.input_size,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        anchor_generator=AnchorGenerator(((8,), (16,)), ((1.0,), (1.0,))),
        head=FCOSHead(r.width, 1, num_classes + 1, num_convs=r.head_convs),
        score_thresh=r.score_thresh,
    )


@dataclass
class DetectionSet:
    """Images resized to a square side and their boxes, held in memory.

    Attributes:
        images: ``[N, 3, S, S]`` uint8.
        boxes: per image, ``[m, 4]`` float32 ``x1, y1, x2, y2`` in the resized pixels.
        labels: per image, ``[m]`` int64 in 1..C (0 is FCOS's background).
        classes: class names, label ``c`` is ``classes[c - 1]``.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_detection_set(
    pool: Pool, indices: Sequence[int] | np.ndarray | None = None, *, size: int = 128
) -> DetectionSet:
    """The images ``indices`` of a COCO pool (all when ``None``) with their boxes, at ``size`` px."""
    instances = load_instances(pool)
    order = np.arange(len(pool)) if indices is None else np.asarray(indices, dtype=np.int64)
    rows: dict[int, list[int]] = {}
    for row, image in enumerate(instances.image.tolist()):
        rows.setdefault(image, []).append(row)
    images = torch.empty((len(order), 3, size, size), dtype=torch.uint8)
    boxes, labels = [], []
    for k, index in enumerate(order.tolist()):
        im = pool.load(index)
        sx, sy = size / im.width, size / im.height
        resized = im.resize((size, size), Image.Resampling.BILINEAR)
        images[k] = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        mine = rows.get(index, [])
        b = instances.box[mine].reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        boxes.append(torch.from_numpy(b.astype(np.float32)))
        labels.append(torch.from_numpy(instances.category[mine] + 1))
    return DetectionSet(images, boxes, labels, list(instances.classes))


def _batch(
    data: DetectionSet, idx: list[int], flip: torch.Tensor | None, device: torch.device
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    side = data.images.shape[-1]
    for j, i in enumerate(idx):
        x = data.images[i].to(device).float() / 255.0
        b = data.boxes[i].clone()
        if flip is not None and bool(flip[j]):
            x = x.flip(-1)
            b[:, [0, 2]] = side - b[:, [2, 0]]
        images.append(x)
        targets.append({"boxes": b.to(device), "labels": data.labels[i].to(device)})
    return images, targets


def train_detector(
    data: DetectionSet,
    recipe: DetectorRecipe | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train a fresh detector on ``data`` with the fixed recipe; deterministic per seed on CPU.

    ``device`` only changes the speed (and, on a GPU, the last bits of the result).
    """
    r = recipe or DetectorRecipe()
    dev = torch.device(device)
    if len(data) == 0:
        raise GealError("cannot train a detector on no images")
    with torch_threads(r.threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_detector(len(data.classes), r).to(dev)
        gen = torch.Generator().manual_seed(seed)
        optimise(
            model,
            len(data),
            r.steps,
            lr=r.lr,
            weight_decay=r.weight_decay,
            warmup=r.warmup,
            batch_size=r.batch_size,
            flip=r.flip,
            gen=gen,
            losses_of=lambda idx, flip: model(*_batch(data, idx, flip, dev)),
        )
    model.eval()
    return model


def optimise(
    model: nn.Module,
    n: int,
    steps: int,
    *,
    lr: float,
    weight_decay: float,
    warmup: int,
    batch_size: int,
    flip: bool,
    gen: torch.Generator,
    losses_of: Callable[[list[int], torch.Tensor | None], dict[str, torch.Tensor]],
) -> None:
    """The detectors' shared schedule: AdamW (no decay on biases and norms), linear
    warm-up then cosine decay, ``steps`` batches of ``batch_size`` items drawn from
    reshuffled passes over the ``n`` items, each flipped with probability 1/2 when
    ``flip``, gradients clipped at norm 10. ``losses_of(indices, flips)`` runs the model
    on a batch; every draw comes from ``gen``, so training is deterministic per seed."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    perm: list[int] = []
    for _step in range(steps):
        idx: list[int] = []
        while len(idx) < batch_size:
            if not perm:
                perm = torch.randperm(n, generator=gen).tolist()
            idx.append(perm.pop())
        flips = torch.rand(len(idx), generator=gen) < 0.5 if flip else None
        losses = losses_of(idx, flips)
        loss = torch.stack(list(losses.values())).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()


@torch.no_grad()
def evaluate_map(
    model: nn.Module, data: DetectionSet, *, batch_size: int = 32, threads: int = 1
) -> dict[str, Any]:
    """mAP@0.5 (COCO-style 101-point, torchmetrics on pycocotools) of ``model`` on ``data``.

    Returns:
        ``{"map50": float, "per_class": {name: AP@0.5}}``; classes absent from ``data``
        are left out of both.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)
    model.eval()
    dev = next(model.parameters()).device
    cpu = torch.device("cpu")
    with torch_threads(threads):
        for a in range(0, len(data), batch_size):
            idx = list(range(a, min(a + batch_size, len(data))))
            images, targets = _batch(data, idx, None, dev)
            preds = model(images)
            metric.update(
                [{k: p[k].to(cpu) for k in ("boxes", "scores", "labels")} for p in preds],
                [{k: v.to(cpu) for k, v in t.items()} for t in targets],
            )
        res = metric.compute()
    per_class = {}
    classes = res["classes"].reshape(-1).tolist()
    for c, ap in zip(classes, res["map_per_class"].reshape(-1).tolist(), strict=True):
        if ap >= 0:
            per_class[data.classes[int(c) - 1]] = float(ap)
    return {"map50": max(0.0, float(res["map"])), "per_class": per_class}


def downstream_map(
    pool: Pool,
    selected: Sequence[int] | np.ndarray,
    test: DetectionSet,
    recipe: DetectorRecipe | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train the recipe's detector on the ``selected`` images of ``pool``; mAP@0.5 on ``test``.

    Returns:
        ``map50``, ``per_class`` (AP@0.5 per class), ``train_seconds``, ``images``,
        ``recipe``.
    """
    r = recipe or DetectorRecipe()
    train = load_detection_set(pool, selected, size=r.input_size)
    t0 = time.perf_counter()
    model = train_detector(train, r, seed=seed, device=device)
    seconds = time.perf_counter() - t0
    result = evaluate_map(model, test, threads=r.threads)
    result.update(train_seconds=round(seconds, 2), images=len(train), recipe=asdict(r))
    return result
