"""Issue 9 §5: a corrupt or foreign model.image_backbone.weights file is one sentence naming the key (exit 2)."""
import os
import pickle

import numpy as np
import pytest
import timm
import torch

from plugin.errors import UserError
from plugin.models.backbones.image_backbones import FrozenImageBackbone

from ..conftest import REPO, load_tool

KEY = "model.image_backbone.weights"

BAD_WEIGHTS = {
    "random_bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("conv1.weight: 0.5\n"),
    "truncated": lambda p: (torch.save(timm.create_model("resnet18").state_dict(), p),
                            p.write_bytes(p.read_bytes()[:5000])),
    "a_list": lambda p: torch.save([torch.zeros(3)], p),
    "empty_dict": lambda p: torch.save({}, p),
    "not_tensors": lambda p: torch.save({"conv1.weight": "text"}, p),
    "unsafe_pickle": lambda p: p.write_bytes(pickle.dumps({"conv1.weight": os.getcwd})),
    "other_architecture": lambda p: torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), p),
}


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
def test_bad_weights_name_the_key(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    BAD_WEIGHTS[kind](path)
    with pytest.raises(UserError) as caught:
        FrozenImageBackbone("resnet18", weights=str(path), image_size=64)
    message = str(caught.value)
    assert f"set {KEY} to " in message and "\n" not in message and message.endswith(".")


def test_bad_weights_exit_2_through_main(tmp_path, capsys):
    main = load_tool("main")
    path = tmp_path / "weights.pth"
    BAD_WEIGHTS["truncated"](path)
    tiny = ["model.encoder_args.channels=8", "model.encoder_args.k=8", "model.encoder_args.embed_dim=32",
            "model.encoder_args.n_blocks=3", "model.image_backbone.image_size=64"]
    assert main.main(["--cfg", str(REPO / "cfgs" / "shapenet" / "pic_at_point-resnet18.yaml"), *tiny,
                      f"{KEY}={path}", f"root_dir={tmp_path / 'log'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"set {KEY} to " in err and str(path) in err
