"""Knowledge clusters: the attention-mass filter, then batched, masked, seeded k-means.

Both are pure functions on tensors. Every per-image result depends only on that image's
tokens, saliency and seed, never on the other images of the batch, so a pattern bank is
the same whatever the batch size, worker count or device order. Extraction seeds each
image from its content key, so an image gets the same patterns wherever it sits in the
pool, and a changed pool's bank can reuse the patterns of the images that stayed.
"""

from __future__ import annotations

import numpy as np
import torch

from geal.kmeans.batched import Clusters, batched_kmeans


def attention_filter(saliency: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Keep the smallest set of highest-saliency tokens whose saliency sums to >= threshold.

    Args:
        saliency: ``[B, T]`` non-negative weights, each row summing to 1.
        threshold: attention mass to keep, in (0, 1]; at least the top token is kept.

    Returns:
        ``[B, T]`` boolean mask of the kept tokens.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    s = saliency.float()
    order = torch.sort(s, dim=1, descending=True, stable=True)
    before = torch.cumsum(order.values, dim=1) - order.values  # mass of strictly higher tokens
    keep_sorted = before < threshold
    keep_sorted[:, 0] = True
    mask = torch.zeros_like(keep_sorted)
    mask.scatter_(1, order.indices, keep_sorted)
    return mask


def image_uniforms(seed: int, keys: np.ndarray | list[int], n: int) -> torch.Tensor:
    """``[B, n]`` uniforms in [0, 1) drawn from a generator seeded by (seed, image key).

    Seeding per image (not per batch) is what makes the bank independent of batching.
    ``keys`` are non-negative integers, one per image.
    """
    rows = [np.random.default_rng([int(seed), int(k)]).random(n) for k in keys]
    return torch.from_numpy(np.stack(rows)).float() if rows else torch.zeros(0, n)


def knowledge_clusters(
    tokens: torch.Tensor,
    saliency: torch.Tensor,
    keys: np.ndarray | list[int],
    *,
    threshold: float = 0.5,
    clusters: int = 5,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> Clusters:
    """Attention filter then per-image k-means: GEAL's knowledge clusters of a batch.

    Args:
        tokens: ``[B, T, D]`` dense tokens.
        saliency: ``[B, T]`` saliency rows summing to 1.
        keys: one non-negative integer per row that, with ``seed``, seeds its k-means++
            draws: extraction passes the image's content key
            (:func:`geal.internal.content.seed_of`).
        threshold: attention mass kept by :func:`attention_filter`.
        clusters: K; 1 means the mean of the kept tokens.
        seed: run seed.

    Returns:
        The clusters, with ``kept``: how many tokens hold ``threshold`` of each image's
        attention mass. Attention spread over many tokens means much in the image that
        the model looks at; on composite detection pools it grows with the object count
        (``docs/samplers.md``, pick ``objects`` of ``strata``).
    """
    mask = attention_filter(saliency, threshold)
    u = image_uniforms(seed, keys, clusters).to(tokens.device)
    return batched_kmeans(tokens, mask, clusters, u, max_iter=max_iter, tol=tol)
