"""Named backbones: a registry of specs, with any timm model name accepted as a fallback.

Pure bookkeeping: each backbone module registers its own specs when imported
(``dino.py``, ``efficientnet_lite.py``, ...); this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from geal.errors import GealError
from geal.internal.registry import Registry

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone.

    Attributes:
        name: registry name users type (``--model``).
        timm_name: timm architecture, with a pretrained tag where weights exist.
        image_size: default square input side.
        mean: input normalisation; None takes the timm pretrained config's.
        std: as ``mean``.
        interpolation: resampling filter for preprocessing; None takes timm's (or bicubic).
        weights_url: where the published weights can be downloaded by hand (shown in the
            offline error); None uses the timm config's URL or hub page.
        packaged_weights: returns a local weights file shipped by a Python package; used
            when no weights are given, instead of the hub.
        convert: maps a foreign state dict (as loaded) onto the timm key names; must pass
            a timm-format state dict through unchanged.
        fit_input: ViTs only: sets the loaded model to the input side (e.g. resamples its
            position table the way the weights' source does, where timm's run-time
            resampling would differ); None leaves that to timm.
        stage: default feature stage for CNNs (None: the last stride-16 stage).
        description: one line for listings.
    """

    name: str
    timm_name: str
    image_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None
    weights_url: str | None = None
    packaged_weights: Callable[[], Path] | None = None
    convert: Callable[[StateDict], StateDict] | None = None
    fit_input: Callable[[torch.nn.Module, int], None] | None = None
    stage: int | None = None
    description: str = ""


BACKBONES: Registry[BackboneSpec] = Registry("model")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to :data:`BACKBONES` under its name; names are unique."""
    return BACKBONES.register(spec.name, spec)


def get_spec(name: str) -> BackboneSpec:
    """The registered spec for ``name``, or a plain spec for a timm model name."""
    if name in BACKBONES:
        return BACKBONES[name]
    from timm.models import is_model, split_model_name_tag

    arch, _tag = split_model_name_tag(name)
    if is_model(arch):
        return BackboneSpec(name=name, timm_name=name)
    raise GealError(
        f"unknown model {name!r}: use one of {', '.join(BACKBONES)} or a timm model name"
    )
