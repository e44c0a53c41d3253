"""Frozen pre-trained backbones: dense tokens, their saliency and a global feature per image.

``create_backbone(name, weights, device)`` builds any registered backbone (``BACKBONES``)
or timm model; its ``forward`` maps a batch of preprocessed images to a
:class:`BackboneOutput` in one pass.
"""

from geal.backbones import dino, efficientnet_lite, focus  # noqa: F401  (register their specs)
from geal.backbones.base import Backbone, BackboneOutput, Preprocess
from geal.backbones.factory import create_backbone
from geal.backbones.registry import BACKBONES, BackboneSpec, get_spec, register_backbone

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneOutput",
    "BackboneSpec",
    "Preprocess",
    "create_backbone",
    "get_spec",
    "register_backbone",
]
