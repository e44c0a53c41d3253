"""DINO and DINOv2 ViTs (self-supervised), GEAL's backbones: their specs and weights URLs.

The published weights come from the model hub; offline, download the file the URL
names and pass ``--weights FILE`` (DINO's plain and full checkpoints both load).
"""

from __future__ import annotations

from geal.backbones.registry import BackboneSpec, register_backbone

_DINO = "https://dl.fbaipublicfiles.com/dino"

DINO_VITS16 = register_backbone(
    BackboneSpec(
        "dino_vits16",
        "vit_small_patch16_224.dino",
        weights_url=f"{_DINO}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
        description="DINO ViT-S/16, self-supervised on ImageNet (the GEAL default)",
    )
)
DINO_VITS8 = register_backbone(
    BackboneSpec(
        "dino_vits8",
        "vit_small_patch8_224.dino",
        weights_url=f"{_DINO}/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
        description="DINO ViT-S/8: 4x the tokens of ViT-S/16, finer patterns, slower",
    )
)
DINO_VITB16 = register_backbone(
    BackboneSpec(
        "dino_vitb16",
        "vit_base_patch16_224.dino",
        weights_url=f"{_DINO}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        description="DINO ViT-B/16",
    )
)
DINOV2_VITS14 = register_backbone(
    BackboneSpec(
        "dinov2_vits14",
        "vit_small_patch14_dinov2.lvd142m",
        weights_url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        description="DINOv2 ViT-S/14 (224 px = 16 x 16 patches)",
    )
)
