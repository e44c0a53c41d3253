"""Engine plumbing: the Ray actors rebuild exactly the driver's backbone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from geal.backbones import create_backbone
from geal.engines.ray import backbone_request


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("test_vit", {"image_size": 64}), ("resnet18", {"image_size": 64, "stage": 2})],
)
def test_backbone_request_rebuilds_the_same_model(name: str, kwargs: dict[str, int]) -> None:
    built = create_backbone(name, weights="random", device="cpu", **kwargs)
    again = create_backbone(**backbone_request(built), device="cpu")
    assert (again.name, again.kind, again.dim, again.preprocess) == (
        built.name,
        built.kind,
        built.dim,
        built.preprocess,
    )
    assert getattr(again, "stage", None) == getattr(built, "stage", None)
    assert (again.weights_id, again.weights_sha256) == (built.weights_id, built.weights_sha256)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(again(images).tokens, built(images).tokens)


def test_backbone_request_fetches_hub_weights_by_name() -> None:
    hub = SimpleNamespace(
        name="dino_vits16",
        weights_id="hub:vit_small_patch16_224.dino",
        preprocess=SimpleNamespace(image_size=224),
    )
    assert backbone_request(hub) == {
        "name": "dino_vits16",
        "weights": None,
        "image_size": 224,
        "stage": None,
    }
