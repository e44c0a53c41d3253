"""Batched, masked k-means on tokens: every image of a batch at once, on any device.

Serves the knowledge clusters (:func:`geal.patterns.knowledge_clusters`). Each image's
result depends only on its own tokens, mask and uniforms, never on the other images of
the batch, so a bank does not depend on batch size, worker count or device order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Clusters:
    """Per-image knowledge clusters, padded to K: ``centers[B, K, D]``, ``counts[B]``.

    Row b's first ``counts[b]`` centers are valid, largest cluster first. ``kept[B]`` is
    how many tokens they were fitted on (the mask's tokens: in the knowledge clusters,
    those the attention filter kept; see :func:`geal.patterns.knowledge_clusters`).
    """

    centers: torch.Tensor
    counts: torch.Tensor
    kept: torch.Tensor

    def split(self) -> list[torch.Tensor]:
        return [self.centers[b, : int(c)] for b, c in enumerate(self.counts.tolist())]


def _pairwise_sq(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[B, T, K]`` between tokens and centers."""
    c_sq = (c * c).sum(-1)  # [B, K]
    d = x_sq.unsqueeze(-1) - 2.0 * torch.bmm(x, c.transpose(1, 2)) + c_sq.unsqueeze(1)
    return d.clamp_min_(0.0)


def _pick(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Gather ``x[b, pos[b]]`` -> ``[B, D]``."""
    return x[torch.arange(x.shape[0], device=x.device), pos]


def batched_kmeans(
    x: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    uniforms: torch.Tensor,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> Clusters:
    """Batched, masked k-means with k-means++ initialisation (Euclidean).

    Args:
        x: ``[B, T, D]`` tokens.
        mask: ``[B, T]`` tokens taking part (at least one per image).
        k: clusters per image. K = 1 gives the mean of the kept tokens. An image with
            at most K kept tokens gets those tokens as its clusters; so does every image
            when K is at least the T tokens an image has (the output is still padded to K).
        uniforms: ``[B, >= K]`` uniforms in [0, 1) that drive the k-means++ draws
            (see :func:`image_uniforms`), so results are seeded per image.
        max_iter: Lloyd iterations at most.
        tol: an image stops once its centers move less than ``tol`` times its mean
            squared token spread; stopped images are frozen, the rest go on.

    Returns:
        :class:`Clusters` with centers sorted by cluster size (largest first, ties by
        first-drawn).
    """
    if k < 1:
        raise ValueError(f"clusters must be >= 1, got {k}")
    x = x.float()
    b, t, dim = x.shape
    k_out, k = k, min(k, t)  # no image keeps more than T tokens: K > T changes nothing
    m = mask.bool()
    mf = m.float()
    n_kept = m.sum(1)  # [B]
    if bool((n_kept == 0).any()):
        raise ValueError("every image needs at least one kept token")
    x_sq = (x * x).sum(-1)  # [B, T]

    # --- k-means++ seeding, every image at once ------------------------------------
    # first center: the floor(u * n)-th kept token
    rank = torch.cumsum(m.long(), 1) - 1  # rank of each kept token among kept ones
    target0 = (uniforms[:, 0] * n_kept.float()).long().clamp(max=n_kept - 1)
    pos0 = torch.argmax((m & (rank == target0.unsqueeze(1))).long(), dim=1)
    centers = [_pick(x, pos0)]
    d2 = _pairwise_sq(x, centers[0].unsqueeze(1), x_sq).squeeze(-1) * mf
    for j in range(1, k):
        cum = torch.cumsum(d2.double(), 1)
        total = cum[:, -1]
        target = uniforms[:, j].double() * total
        pos = torch.searchsorted(cum, target.unsqueeze(1), right=True).squeeze(1)
        pos = pos.clamp(max=t - 1)
        # all remaining mass zero (duplicates): fall back to the first kept token
        pos = torch.where(total > 0, pos, pos0)
        cj = _pick(x, pos)
        centers.append(cj)
        d2 = torch.minimum(d2, _pairwise_sq(x, cj.unsqueeze(1), x_sq).squeeze(-1) * mf)
    c = torch.stack(centers, 1)  # [B, K, D]

    # --- Lloyd iterations, converged images frozen -----------------------------------
    mean = (x * mf.unsqueeze(-1)).sum(1) / n_kept.unsqueeze(1)
    spread = (((x - mean.unsqueeze(1)) ** 2).sum(-1) * mf).sum(1) / n_kept  # [B]
    limit = tol * spread
    active = n_kept > k
    onehot = torch.zeros(b, t, k, dtype=x.dtype, device=x.device)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        assign = _pairwise_sq(x, c, x_sq).argmin(-1)  # [B, T]
        onehot.zero_().scatter_(2, assign.unsqueeze(-1), 1.0)
        onehot.mul_(mf.unsqueeze(-1))
        size = onehot.sum(1)  # [B, K]
        sums = torch.bmm(onehot.transpose(1, 2), x)  # [B, K, D]
        new_c = torch.where(size.unsqueeze(-1) > 0, sums / size.clamp_min(1).unsqueeze(-1), c)
        shift = ((new_c - c) ** 2).sum(-1).sum(-1)  # [B]
        c = torch.where(active.view(b, 1, 1), new_c, c)
        active = active & (shift > limit)

    # final assignment decides sizes and empty clusters
    assign = _pairwise_sq(x, c, x_sq).argmin(-1)
    onehot.zero_().scatter_(2, assign.unsqueeze(-1), 1.0)
    onehot.mul_(mf.unsqueeze(-1))
    size = onehot.sum(1)
    size = torch.where(size > 0, size, torch.full_like(size, -1.0))

    # images with <= K kept tokens: the tokens themselves, in saliency-independent order
    few = n_kept <= k
    if bool(few.any()):
        kept_order = torch.sort((~m).long(), dim=1, stable=True).indices[:, :k]  # kept first
        own = torch.gather(x, 1, kept_order.unsqueeze(-1).expand(-1, -1, dim))
        own_size = (torch.arange(k, device=x.device).unsqueeze(0) < n_kept.unsqueeze(1)).float()
        own_size = torch.where(own_size > 0, own_size, torch.full_like(own_size, -1.0))
        c = torch.where(few.view(b, 1, 1), own, c)
        size = torch.where(few.unsqueeze(1), own_size, size)

    order = torch.sort(size, dim=1, descending=True, stable=True).indices
    c = torch.gather(c, 1, order.unsqueeze(-1).expand(-1, -1, dim))
    counts = (size > 0).sum(1)
    if k_out > k:
        c = torch.cat([c, c.new_zeros(b, k_out - k, dim)], 1)
    return Clusters(centers=c, counts=counts, kept=n_kept)
