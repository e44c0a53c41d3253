"""One batch of images -> knowledge clusters: the computation every engine runs.

Keeping it in one function is what makes the engines interchangeable: the local engine
calls it in this process, the Ray engine inside its model actors, and both get the same
patterns for the same image (see ``geal.patterns`` for why batching does not matter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geal.patterns import knowledge_clusters

if TYPE_CHECKING:
    from geal.backbones import Backbone


def encode_batch(
    backbone: Backbone, images: torch.Tensor, seeds: list[int], options: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One forward pass + knowledge clusters of a batch of preprocessed images.

    Args:
        backbone: the frozen model.
        images: ``[B, 3, S, S]`` preprocessed images, on any device.
        seeds: seed key of each image (from its content key,
            :func:`geal.internal.content.seed_of`); seeds its k-means draws.
        options: the bank's options (``precision``, ``threshold``, ``clusters``, ``seed``,
            ``max_iter``, ``tol``).

    Returns:
        ``(centers[B, K, D], counts[B], global[B, D], kept[B])`` as numpy arrays; image
        ``b`` has ``counts[b]`` patterns, the first rows of ``centers[b]``, fitted on the
        ``kept[b]`` tokens the attention filter kept.
    """
    dev = backbone.device
    autocast = torch.autocast(
        dev.type, dtype=torch.bfloat16, enabled=options["precision"] == "bf16"
    )
    with torch.inference_mode(), autocast:
        out = backbone(images.to(dev, non_blocking=True))
    with torch.inference_mode():
        cl = knowledge_clusters(
            out.tokens.float(),
            out.saliency.float(),
            seeds,
            threshold=options["threshold"],
            clusters=options["clusters"],
            seed=options["seed"],
            max_iter=options["max_iter"],
            tol=options["tol"],
        )
    return (
        cl.centers.cpu().numpy(),
        cl.counts.cpu().numpy(),
        out.global_.float().cpu().numpy(),
        cl.kept.cpu().numpy(),
    )
