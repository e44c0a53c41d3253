"""``create_backbone``: one factory for every backbone, named or plain timm."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from geal.backbones import _weights
from geal.backbones.base import _RESAMPLE, Backbone, Preprocess
from geal.backbones.cnn import CNNBackbone, check_stage, default_stage
from geal.backbones.registry import BackboneSpec, get_spec
from geal.backbones.sizing import input_side
from geal.backbones.vit import ViTBackbone, check_supported
from geal.errors import GealError
from geal.internal.device import resolve_device

logger = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def create_backbone(
    name: str = "dino_vits16",
    weights: str | None = None,
    device: str | torch.device = "auto",
    *,
    image_size: int | None = None,
    stage: int | None = None,
    image_side: int | None = None,
) -> Backbone:
    """Build a frozen backbone ready for :meth:`Backbone.forward`.

    Args:
        name: a registered name (see ``BACKBONES``) or any timm model name. Models with
            ``blocks`` and ``patch_embed`` are treated as ViTs, others as CNNs.
        weights: None for the published weights (local cache or hub), ``"random"`` for an
            untrained model, or a path to a checkpoint file.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda:N"``, ...
        image_size: square input side; ViTs need a multiple of their patch size.
        stage: CNN feature stage index (default: the spec's measured stage if it names one,
            else the last stride-16 stage).
        image_side: the longest side of the images to encode, when known; without
            ``image_size`` it fits the input side to small images
            (:func:`geal.backbones.sizing.input_side`).

    Raises:
        GealError: unknown model, unsupported variant, bad size or stage.
        WeightsError: weights not found, unreadable or not fitting the model.
    """
    dev = resolve_device(device)
    spec = get_spec(name)
    probe = _probe(spec)
    cfg: dict[str, Any] = dict(getattr(probe, "pretrained_cfg", None) or {})
    vit = hasattr(probe, "blocks") and hasattr(probe, "patch_embed")
    if vit:
        if stage is not None:
            raise GealError(f"--stage applies to CNN backbones; {name!r} is a ViT")
        check_supported(probe, name)
        stride = int(probe.patch_embed.patch_size[0])
    else:
        info = list(getattr(probe, "feature_info", None) or [])
        if not info:
            raise GealError(
                f"model {name!r} does not describe its feature stages; it cannot be a CNN backbone"
            )
        if stage is not None:
            chosen = check_stage(stage, info, name)
        elif spec.stage is not None:
            chosen = spec.stage
        else:
            chosen = default_stage([int(f["reduction"]) for f in info])
        stride = int(info[chosen]["reduction"])
    size = int(image_size or input_side(spec.image_size, stride, image_side))
    if size != (image_size or spec.image_size):
        logger.info(
            "images of about %d px: %s runs at %d px instead of %d (%d tokens a side; "
            "--image-size chooses)", image_side, name, size, spec.image_size, -(-size // stride),
        )  # fmt: skip
    preprocess = _preprocess(spec, cfg, size)

    backbone: Backbone
    if vit:
        if size % stride:
            raise GealError(
                f"image size {size} is not a multiple of {name!r}'s patch size {stride}"
            )
        resolved = _weights.resolve_weights(spec, weights, cfg)
        model = _create(spec, cfg, resolved, num_classes=0, dynamic_img_size=True)
        if resolved.state_dict is not None:
            _weights.load_into_model(
                model, resolved.state_dict, model_name=name, source=resolved.weights_id
            )
        if spec.fit_input is not None:
            spec.fit_input(model, size)
        backbone = ViTBackbone(
            model,
            name=name,
            preprocess=preprocess,
            weights_id=resolved.weights_id,
            weights_sha256=resolved.sha256,
        )
    else:
        resolved = _weights.resolve_weights(spec, weights, cfg)
        features = _create(spec, cfg, resolved, features_only=True, out_indices=(chosen,))
        if resolved.state_dict is not None:
            _weights.load_into_features(
                features, probe, resolved.state_dict, model_name=name, source=resolved.weights_id
            )
        backbone = CNNBackbone(
            features,
            name=name,
            stage=chosen,
            preprocess=preprocess,
            weights_id=resolved.weights_id,
            weights_sha256=resolved.sha256,
        )
    backbone.to(dev)
    logger.info(
        "backbone %s: %s, dim %d, stride %d, %d px, weights %s, on %s",
        name,
        backbone.kind,
        backbone.dim,
        backbone.stride,
        size,
        backbone.weights_id,
        dev,
    )
    return backbone


def _probe(spec: BackboneSpec) -> Any:
    """The headless model built without memory (meta device) to read its structure and config."""
    import timm

    try:
        with torch.device("meta"):
            return timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
    except GealError:
        raise
    except Exception:
        logger.debug(
            "meta-device build of %s failed; building on the CPU", spec.timm_name, exc_info=True
        )
    try:
        return timm.create_model(spec.timm_name, pretrained=False, num_classes=0)
    except Exception as exc:
        raise GealError(f"cannot build model {spec.name!r}: {_weights._first_line(exc)}") from exc


def _create(
    spec: BackboneSpec, cfg: dict[str, Any], resolved: _weights.ResolvedWeights, **kwargs: Any
) -> nn.Module:
    import timm

    if resolved.source == "hub":
        with _weights.hub_errors(spec, cfg):
            return timm.create_model(spec.timm_name, pretrained=True, **kwargs)
    try:
        # "random" weights are a fixed draw (seed 0) so that banks made with them are
        # reproducible across processes, e.g. when an interrupted extraction resumes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    except Exception as exc:
        raise GealError(f"cannot build model {spec.name!r}: {_weights._first_line(exc)}") from exc


def _preprocess(spec: BackboneSpec, cfg: dict[str, Any], size: int) -> Preprocess:
    mean = tuple(float(v) for v in (spec.mean or cfg.get("mean") or _IMAGENET_MEAN))
    std = tuple(float(v) for v in (spec.std or cfg.get("std") or _IMAGENET_STD))
    interpolation = spec.interpolation or cfg.get("interpolation") or "bicubic"
    if interpolation not in _RESAMPLE:
        interpolation = "bicubic"
    if len(mean) != 3 or len(std) != 3:  # single-channel models normalise one value
        mean, std = (mean[0],) * 3, (std[0],) * 3
    return Preprocess(size, (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]), interpolation)
