"""Random and block token masks: exact counts, kNN-ball shape, determinism, validation."""
import pytest
import torch

from plugin.errors import ConfigError
from plugin.models.backbones.masking import block_token_mask, random_token_mask


@pytest.mark.parametrize("ratio, tokens", [(0.0, 64), (0.6, 64), (0.75, 10), (0.5, 7), (0.99, 5)])
def test_random_mask_counts(ratio, tokens):
    mask = random_token_mask(5, tokens, ratio)
    assert mask.shape == (5, tokens) and mask.dtype == torch.bool
    assert (mask.sum(1) == round(ratio * tokens)).all()


def test_random_mask_varies_across_samples_and_is_deterministic():
    a = random_token_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(3))
    b = random_token_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(3))
    c = random_token_mask(8, 64, 0.6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) == 8


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6, 0.9])
def test_block_mask_is_a_knn_ball(ratio):
    torch.manual_seed(0)
    centers = torch.randn(6, 40, 3)
    mask = block_token_mask(centers, ratio, generator=torch.Generator().manual_seed(1))
    n_mask = round(ratio * 40)
    assert mask.shape == (6, 40) and (mask.sum(1) == n_mask).all()
    if n_mask == 0:
        return
    for b in range(6):   # brute force: some masked centre has exactly the masked set as its n_mask nearest
        dist = torch.cdist(centers[b], centers[b])                       # (G, G)
        balls = [set(dist[i].argsort()[:n_mask].tolist()) for i in mask[b].nonzero()[:, 0].tolist()]
        assert set(mask[b].nonzero()[:, 0].tolist()) in balls


def test_block_mask_deterministic_under_generator():
    centers = torch.randn(4, 32, 3)
    a = block_token_mask(centers, 0.5, generator=torch.Generator().manual_seed(7))
    b = block_token_mask(centers, 0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_validated(ratio):
    with pytest.raises(ConfigError, match="outside \\[0, 1\\)"):
        random_token_mask(2, 8, ratio)
    with pytest.raises(ConfigError, match="outside \\[0, 1\\)"):
        block_token_mask(torch.randn(2, 8, 3), ratio)
