"""Loading open_clip models offline: the tiny test CLIP, local checkpoints, missing weights, depth encoders."""
from pathlib import Path

import open_clip
import pytest
import torch

from plugin.clip import (DEPTH_ENCODER_KEY, TINY_CLIP, depth_encoder_state, load_clip, load_clip_from_cfg,
                         load_depth_encoder, trainable_visual_copy)
from plugin.clip.encoders import _is_torchscript
from plugin.errors import ConfigError, WeightsNotFoundError

from .conftest import tiny_clip


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and message.count(". ") == 0


def test_tiny_clip_builds_offline_frozen_with_its_preprocessing(clip) -> None:
    assert TINY_CLIP in open_clip.list_models()
    assert (clip.embed_dim, clip.image_size, clip.weights) == (32, 32, "none")
    assert clip.image_mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert not clip.model.training and not any(p.requires_grad for p in clip.model.parameters())
    assert clip.visual(torch.zeros(2, 3, 32, 32)).shape == (2, 32)


def test_bundled_tokenizer_works_offline(clip) -> None:
    tokens = clip.tokenizer(["a point cloud of a night stand.", "image of a chair."])
    assert tokens.shape == (2, 77)
    assert (tokens[:, 0] == tokens[0, 0]).all() and (tokens[0] > 0).sum() > 5  # start token + real BPE ids
    assert not torch.equal(tokens[0], tokens[1])


def test_missing_weights_file_names_the_key() -> None:
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip_from_cfg({"name": TINY_CLIP, "pretrained": "weights/missing-tiny.pt"})
    message = str(err.value)
    assert "model.clip.pretrained" in message and "weights/missing-tiny.pt" in message and one_sentence(message)


def test_tag_without_network_is_weights_not_found(monkeypatch) -> None:
    def offline(name, pretrained=None, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model", lambda name: ["openai"])
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: {})
    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(WeightsNotFoundError, match=r"set model\.clip\.pretrained to a local checkpoint") as err:
        load_clip(TINY_CLIP, "openai")
    assert one_sentence(str(err.value))


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"model\.clip\.name"):
        load_clip("no-such-clip", "none")
    with pytest.raises(ConfigError, match=r"model\.clip\.pretrained is not set"):
        load_clip_from_cfg({"name": TINY_CLIP})
    with pytest.raises(ConfigError, match="model.clip is not set"):
        load_clip_from_cfg(None)


def test_local_checkpoint_loads_and_changes_the_fingerprint(tmp_path: Path) -> None:
    source, other = tiny_clip(1), tiny_clip(2)
    assert source.text_fingerprint() != other.text_fingerprint()  # another random init
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = load_clip(TINY_CLIP, str(path))
    assert loaded.weights == str(path) and loaded.text_fingerprint() == source.text_fingerprint()
    assert torch.equal(loaded.model.token_embedding.weight, source.model.token_embedding.weight)


def test_checkpoint_of_another_architecture_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match=r"do not fit open_clip model tiny-clip-test"):
        load_clip(TINY_CLIP, str(path))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_detection(tmp_path: Path) -> None:
    scripted, plain = tmp_path / "scripted.pt", tmp_path / "plain.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    torch.save(torch.nn.Linear(2, 2).state_dict(), plain)
    assert _is_torchscript(str(scripted)) and not _is_torchscript(str(plain))


def test_trainable_visual_copy_is_independent(clip) -> None:
    copy = trainable_visual_copy(clip)
    assert copy.training and all(p.requires_grad for p in copy.parameters())
    assert not any(p.requires_grad for p in clip.visual.parameters())
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert not torch.equal(next(copy.parameters()), next(clip.visual.parameters()))


def test_depth_encoder_checkpoint_round_trip(tmp_path: Path, clip) -> None:
    trained = trainable_visual_copy(tiny_clip(3))
    path = tmp_path / "ckpt.pth"
    torch.save({"mode": "pretrain", "epoch": 1, **depth_encoder_state(trained)}, path)
    target = trainable_visual_copy(clip)
    load_depth_encoder(target, str(path))
    for (name, a), b in zip(target.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, b), name
    torch.save({"encoder": {}}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=f"no '{DEPTH_ENCODER_KEY}' entry"):
        load_depth_encoder(target, str(tmp_path / "other.pth"))
    with pytest.raises(WeightsNotFoundError, match="set pretrained_path"):
        load_depth_encoder(target, str(tmp_path / "missing.pth"))
