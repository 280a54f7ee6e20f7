"""Text classifiers: normalised template ensembles, cached on disk per weights, classes and templates."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from plugin.clip import encode_prompts, text_classifier

from .conftest import tiny_clip

CLASSES = ["airplane", "night_stand", "chair"]
TEMPLATES = ["image of a {}.", "a point cloud of a {}."]


def test_normalised_ensemble_matches_hand_computation(clip) -> None:
    features = text_classifier(clip, CLASSES, TEMPLATES)
    assert features.shape == (3, clip.embed_dim)
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    per_template = [encode_prompts(clip, [t.format(name.replace("_", " ")) for name in CLASSES]) for t in TEMPLATES]
    expected = F.normalize(F.normalize(per_template[0], dim=1) + F.normalize(per_template[1], dim=1), dim=1)
    assert torch.allclose(features, expected, atol=1e-5)


class CountingEncoder:
    """Wraps ``encode_text`` and counts the calls."""

    def __init__(self, clip) -> None:
        self.calls, self.inner = 0, clip.model.encode_text

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_cache_hits_and_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip) -> None:
    counter = CountingEncoder(clip)
    monkeypatch.setattr(clip.model, "encode_text", counter)
    first = text_classifier(clip, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    assert counter.calls == 1 and len(list(tmp_path.glob("clip_text_*.pt"))) == 1
    again = text_classifier(clip, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    assert counter.calls == 1 and torch.equal(first, again)  # hit: no text encoding
    text_classifier(clip, CLASSES, TEMPLATES[:1], cache_dir=str(tmp_path))
    assert counter.calls == 2 and len(list(tmp_path.glob("clip_text_*.pt"))) == 2  # other templates: miss
    text_classifier(clip, CLASSES[:2], TEMPLATES, cache_dir=str(tmp_path))
    assert counter.calls == 3  # other classes: miss


def test_another_random_init_misses_the_cache(tmp_path: Path, clip) -> None:
    first = text_classifier(clip, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    other = tiny_clip(7)
    second = text_classifier(other, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("clip_text_*.pt"))) == 2
    assert not torch.allclose(first, second)
    assert torch.allclose(second, text_classifier(other, CLASSES, TEMPLATES), atol=1e-6)
