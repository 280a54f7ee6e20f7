"""Issue 9 §5: tools/visualize.py answers a corrupt or foreign --load_path and an unwritable --out with one
sentence (exit status 2)."""
import errno
import os
import pickle
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch

from ..conftest import REPO, load_tool

CFG = str(REPO / "cfgs" / "shapenet" / "pic_at_point-dgcnn.yaml")
TINY = ["model.encoder_args.channels=8", "model.encoder_args.k=8", "model.encoder_args.embed_dim=32",
        "model.encoder_args.n_blocks=3", "model.embed_dim=32", "model.pose_dim=8",
        "model.image_backbone.name=resnet18", "model.image_backbone.weights=none",
        "model.image_backbone.image_size=64", "dataset.common.num_points=128"]


@pytest.fixture(scope="module")
def visualize():
    return load_tool("visualize").main


@pytest.fixture(scope="module")
def rendered_object(tmp_path_factory) -> Path:
    """One sphere rendered at 64 px by tools/render_views.py."""
    folder = tmp_path_factory.mktemp("visualize") / "object"
    points = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    opts = {"image_size": 64, "radius_px": 1, "distance": 2.2, "fov": 60.0}
    load_tool("render_views").render_object((str(folder), points, opts))
    return folder


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def _other_architecture(path: Path) -> None:
    """A Pic@Point checkpoint of a wider encoder than TINY's."""
    from plugin.engine import builders, load_config

    wider = [o if not o.startswith("model.encoder_args.channels") else "model.encoder_args.channels=16" for o in TINY]
    torch.save({"model": builders.build_model(load_config(CFG, wider)).state_dict()}, path)


CORRUPT = {
    "random_bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("model: not a checkpoint\n"),
    "truncated": lambda p: (torch.save({"model": {"w": torch.zeros(1000)}}, p),
                            p.write_bytes(p.read_bytes()[:300])),
    "a_list": lambda p: torch.save([torch.zeros(3)], p),
    "no_model": lambda p: torch.save({"encoder": {"w": torch.zeros(3)}}, p),
    "model_not_a_dict": lambda p: torch.save({"model": torch.zeros(3)}, p),
    "not_tensors": lambda p: torch.save({"model": {"encoder.w": "text"}}, p),
    "unsafe_pickle": lambda p: p.write_bytes(pickle.dumps({"model": os.getcwd})),
    "other_architecture": _other_architecture,
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_bad_load_path_is_one_sentence(visualize, rendered_object, tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.pth"
    CORRUPT[kind](path)
    out = tmp_path / "heat.png"
    assert visualize(["correspondence", "--cfg", CFG, "--load_path", str(path), "--object", str(rendered_object),
                      "--out", str(out), *TINY]) == 2
    err = _one_sentence(capsys)
    assert str(path) in err and not out.exists()


def _features(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "features_train.npz"
    np.savez(path, features=rng.normal(size=(9, 4)).astype(np.float32), labels=np.repeat(np.arange(3), 3))
    return path


@pytest.mark.parametrize("case", ["inside_a_regular_file", "read_only", "full_disk"])
def test_an_unwritable_out_is_one_sentence(visualize, tmp_path, capsys, monkeypatch, case):
    features = _features(tmp_path)
    if case == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "locked").mkdir(mode=0o555)
    out = {"inside_a_regular_file": tmp_path / "afile" / "emb.png", "read_only": tmp_path / "locked" / "emb.png",
           "full_disk": tmp_path / "emb.png"}[case]
    if case == "full_disk":
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    assert visualize(["features", "--features", str(features), "--method", "pca", "--out", str(out)]) == 2
    err = _one_sentence(capsys)
    assert f"Cannot write '{out}'" in err and "choose a writable --out" in err and "bytes free there" in err
