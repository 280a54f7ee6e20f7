"""Zero-shot logits (CLIP2Point Eq. 11) on constructed cases with known answers."""
import pytest
import torch

from plugin.clip import zero_shot_logits
from plugin.errors import BadInputError


def test_logits_average_the_per_view_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    views, text = torch.randn(4, 3, 8, generator=g), torch.randn(5, 8, generator=g)
    logits = zero_shot_logits(views, text)
    assert logits.shape == (4, 5)
    by_hand = torch.zeros(4, 5)
    for b in range(4):
        for c in range(5):
            cosines = [torch.dot(views[b, v], text[c]) / (views[b, v].norm() * text[c].norm()) for v in range(3)]
            by_hand[b, c] = sum(cosines) / 3
    assert torch.allclose(logits, by_hand, atol=1e-6)
    assert torch.allclose(zero_shot_logits(views * 7.0, text * 0.1), logits, atol=1e-6)  # scale-free
    assert torch.allclose(zero_shot_logits(views[:, 0], text), zero_shot_logits(views[:, :1], text))


def test_logits_reject_mismatched_dimensions() -> None:
    with pytest.raises(BadInputError, match="same CLIP"):
        zero_shot_logits(torch.zeros(2, 3, 8), torch.zeros(5, 4))
