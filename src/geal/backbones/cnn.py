"""CNN backbone: the cells of one feature map are the tokens, their norms the saliency.

A CNN has no CLS attention, so a cell's L2 norm stands in for how much the network
responds there. The feature map comes from timm's ``features_only`` extractor at one
stage; later stages are not built at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from geal.backbones.base import Backbone, BackboneOutput, Preprocess, saliency_from_norms
from geal.errors import GealError

logger = logging.getLogger(__name__)


def default_stage(reductions: Sequence[int]) -> int:
    """The last stage with stride 16 if there is one (fine enough for patterns), else the last."""
    sixteen = [i for i, r in enumerate(reductions) if r == 16]
    return sixteen[-1] if sixteen else len(reductions) - 1


def describe_stages(feature_info: Sequence[dict]) -> str:
    """One-line list of the stages a CNN offers: index, stride and channels."""
    return ", ".join(
        f"{i} (stride {f['reduction']}, {f['num_chs']} ch)" for i, f in enumerate(feature_info)
    )


def check_stage(stage: int, feature_info: Sequence[dict], name: str) -> int:
    """Validate a user-given stage index against the model's stages."""
    if not 0 <= stage < len(feature_info):
        raise GealError(
            f"stage {stage} does not exist for {name!r}; stages: {describe_stages(feature_info)}"
        )
    return stage


class CNNBackbone(Backbone):
    """A frozen timm ``features_only`` CNN reduced to one stage (see module doc)."""

    def __init__(
        self,
        features: nn.Module,
        *,
        name: str,
        stage: int,
        preprocess: Preprocess,
        weights_id: str,
        weights_sha256: str | None,
    ) -> None:
        info: Any = features.feature_info
        super().__init__(
            name=name,
            kind="cnn",
            dim=int(info.channels()[-1]),
            stride=int(info.reduction()[-1]),
            preprocess=preprocess,
            weights_id=weights_id,
            weights_sha256=weights_sha256,
        )
        self.model = features
        self.stage = stage
        self.freeze()

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """One pass over a [B, 3, H, W] batch: tokens [B, h*w, C] in row-major cell order."""
        with torch.no_grad():
            fmap = self.model(images.to(self.device))[-1]
            if fmap.shape[1] != self.dim and fmap.shape[-1] == self.dim:  # NHWC extractors
                fmap = fmap.permute(0, 3, 1, 2)
            tokens = fmap.flatten(2).transpose(1, 2).float()
        return BackboneOutput(
            tokens=tokens, saliency=saliency_from_norms(tokens), global_=tokens.mean(dim=1)
        )
