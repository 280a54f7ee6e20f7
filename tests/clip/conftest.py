"""A tiny randomly initialised CLIP (``tiny-clip-test``), built offline."""
import pytest
import torch

from plugin.clip import TINY_CLIP, ClipModel, load_clip


def tiny_clip(seed: int = 0) -> ClipModel:
    """``tiny-clip-test`` with random weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return load_clip(TINY_CLIP, "none")


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    """One tiny CLIP shared by a test module (frozen, so tests cannot change it)."""
    return tiny_clip(0)
