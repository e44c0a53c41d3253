"""Attention filter and batched k-means: hand-computed cases and invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geal.kmeans import batched_kmeans as kmeans
from geal.patterns import attention_filter, image_uniforms, knowledge_clusters


@pytest.mark.parametrize(
    ("saliency", "tau", "kept"),
    [
        ([0.4, 0.3, 0.2, 0.1], 0.5, [1, 1, 0, 0]),  # 0.4 < 0.5, 0.7 >= 0.5
        ([0.4, 0.3, 0.2, 0.1], 0.4, [1, 0, 0, 0]),  # top token alone reaches tau exactly
        ([0.1, 0.2, 0.3, 0.4], 0.75, [0, 1, 1, 1]),  # order of tokens does not matter
        ([0.9, 0.05, 0.05, 0.0], 0.5, [1, 0, 0, 0]),
        ([0.25, 0.25, 0.25, 0.25], 1.0, [1, 1, 1, 1]),
        ([0.25, 0.25, 0.25, 0.25], 0.3, [1, 1, 0, 0]),  # ties broken by position
        ([0.05, 0.05, 0.9, 0.0], 0.01, [0, 0, 1, 0]),  # at least the top token
    ],
)
def test_filter_keeps_minimal_top_set(saliency: list[float], tau: float, kept: list[int]) -> None:
    mask = attention_filter(torch.tensor([saliency]), tau)
    assert mask.long().tolist() == [kept]


def test_filter_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError):
        attention_filter(torch.ones(1, 3) / 3, 0.0)


def _blobs(
    n_img: int, k: int, per: int, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_img, k, dim, generator=g) * 10
    noise = torch.randn(n_img, k, per, dim, generator=g) * 0.05
    x = (centres.unsqueeze(2) + noise).reshape(n_img, k * per, dim)
    perm = torch.randperm(k * per, generator=g)
    return x[:, perm], centres


def test_kmeans_recovers_separable_blobs() -> None:
    x, centres = _blobs(3, 4, 15, 8)
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    cl = kmeans(x, mask, 4, image_uniforms(0, [0, 1, 2], 4))
    assert cl.counts.tolist() == [4, 4, 4]
    for b in range(3):
        # every true centre is matched by a found centre within the noise level
        d = torch.cdist(centres[b], cl.centers[b])
        assert float(d.min(1).values.max()) < 0.1
        assert sorted(d.argmin(1).tolist()) == [0, 1, 2, 3]


def test_k1_is_mean_of_kept_tokens() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 10, 4, generator=g)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, [1, 3, 5]] = True
    mask[1, :] = True
    cl = kmeans(x, mask, 1, image_uniforms(0, [0, 1], 1))
    torch.testing.assert_close(cl.centers[0, 0], x[0, [1, 3, 5]].mean(0))
    torch.testing.assert_close(cl.centers[1, 0], x[1].mean(0))


def test_few_kept_tokens_are_their_own_patterns() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 6, 3, generator=g)
    mask = torch.tensor([[False, True, False, True, False, False]])
    cl = kmeans(x, mask, 5, image_uniforms(0, [0], 5))
    assert int(cl.counts[0]) == 2
    got = {tuple(r.tolist()) for r in cl.centers[0, :2]}
    assert got == {tuple(x[0, 1].tolist()), tuple(x[0, 3].tolist())}


def test_batched_equals_per_image_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(9, 49, 16, generator=g)
    sal = torch.softmax(torch.randn(9, 49, generator=g) * 3, dim=1)
    idx = list(range(100, 109))
    whole = knowledge_clusters(tokens, sal, idx, threshold=0.6, clusters=5, seed=7)
    for b in range(9):
        one = knowledge_clusters(
            tokens[b : b + 1], sal[b : b + 1], idx[b : b + 1], threshold=0.6, clusters=5, seed=7
        )
        assert torch.equal(one.counts[0], whole.counts[b])
        assert torch.equal(one.centers[0], whole.centers[b])


def test_seed_is_per_image_and_changes_result() -> None:
    u1 = image_uniforms(0, [5, 6], 3)
    u2 = image_uniforms(0, [6], 3)
    assert torch.equal(u1[1], u2[0])  # image 6 draws the same whatever its neighbours
    assert not torch.equal(image_uniforms(1, [5], 3), image_uniforms(0, [5], 3))


def test_clusters_sorted_largest_first() -> None:
    g = torch.Generator().manual_seed(4)
    big = torch.randn(30, 4, generator=g) * 0.01
    small = torch.randn(5, 4, generator=g) * 0.01 + 5
    x = torch.cat([small, big]).unsqueeze(0)
    cl = kmeans(x, torch.ones(1, 35, dtype=torch.bool), 2, image_uniforms(0, [0], 2))
    assert float(cl.centers[0, 0].abs().max()) < 1  # the 30-token blob at the origin first
    assert np.isclose(float(cl.centers[0, 1].mean()), 5, atol=0.1)


def test_more_clusters_than_tokens_keeps_the_tokens_and_pads_to_k() -> None:
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(3, 4, 6, generator=g)
    sal = torch.softmax(torch.randn(3, 4, generator=g), dim=1)
    big = knowledge_clusters(tokens, sal, [0, 1, 2], threshold=1.0, clusters=50)
    same = knowledge_clusters(tokens, sal, [0, 1, 2], threshold=1.0, clusters=4)
    assert big.centers.shape == (3, 50, 6)
    assert big.counts.tolist() == [4, 4, 4]  # every token, each its own pattern
    assert torch.equal(big.centers[:, :4], same.centers)
    assert not big.centers[:, 4:].any()
