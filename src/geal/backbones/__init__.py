"""Frozen pre-trained backbones: dense tokens, their saliency and a global feature per image.

``create_backbone(name, weights, device)`` builds any registered backbone (``BACKBONES``)
or timm model; its ``forward`` maps a batch of preprocessed images to a
:class:`BackboneOutput` in one pass.
"""

from geal.backbones import focus as focus  # registers focus_vits14
from geal.backbones.base import Backbone, BackboneOutput, Preprocess
from geal.backbones.factory import create_backbone
from geal.backbones.registry import BACKBONES, BackboneSpec, get_spec, register_backbone
from geal.backbones.vit import two_pass_reference

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneOutput",
    "BackboneSpec",
    "Preprocess",
    "create_backbone",
    "get_spec",
    "register_backbone",
    "two_pass_reference",
]
