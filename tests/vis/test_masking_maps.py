"""I2P-MAE masking figure: ``I2PMAE.explain``, :mod:`plugin.vis.masking_maps` and ``tools/visualize.py i2p-mask``."""
import numpy as np
import pytest
import torch

from plugin.engine import load_config
from plugin.engine.builders import build_model
from plugin.vis import masking_maps as maps
from tests.engine.conftest import REPO
from tests.models.test_i2p_mae import clouds, tiny_model

from ..conftest import load_tool

CFG = str(REPO / "cfgs" / "shapenet" / "i2p_mae.yaml")
TINY = ["model.teacher.name=tiny-clip-test", "model.teacher.pretrained=none",
        "model.encoder_args.num_tokens=[64,32,16]", "model.encoder_args.k_neighbors=[8,4,4]",
        "model.encoder_args.dims=[16,32,64]", "model.encoder_args.depths=[1,1,1]", "model.encoder_args.num_heads=4",
        "model.decoder_args.dims=[64,32]", "model.decoder_args.num_heads=4", "dataset.common.num_points=256"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def visualize():
    return load_tool("visualize").main


def test_explain_shapes_visible_counts_and_reconstruction():
    model, pos = tiny_model().eval(), clouds()
    torch.manual_seed(0)
    out = model.explain(pos)
    assert out["centers"].shape == (2, 16, 3) and out["saliency"].shape == (2, 16)
    for key in ("random_mask", "guided_mask"):
        assert out[key].dtype == torch.bool and ((~out[key]).sum(1) == 16 - round(0.8 * 16)).all()
    assert not torch.equal(out["saliency"], torch.zeros(2, 16))
    visible, patches = out["target_visible"], out["patches"]
    assert visible.shape == (2, 32) and patches.shape == (2, 32, 8, 3) and out["patch_centers"].shape == (2, 32, 3)
    for b in range(2):
        masked = int((~visible[b]).sum())
        assert 0 < masked < 32 and patches[b][~visible[b]].reshape(-1, 3).shape == (masked * 8, 3)
        # visible tokens keep their true patch: members are first-scale centres
        fine = model.encoder.tokenize(pos)[0].centers[b]
        member = patches[b][visible[b]].reshape(-1, 3)
        assert ((member[:, None] - fine[None]) ** 2).sum(-1).min(dim=1).values.max() < 1e-10


def test_draw_masking_writes_a_png(tmp_path):
    model, rng = tiny_model().eval(), np.random.default_rng(0)
    objects = [maps.prepare_cloud(rng.normal(size=(n, 3)).astype(np.float32), 256, rng) for n in (400, 100)]
    assert all(c.shape == (256, 3) and np.linalg.norm(c, axis=1).max() <= 1 + 1e-5 for c in objects)
    rows = maps.masking_rows(model, objects, torch.device("cpu"))
    out = tmp_path / "mask.png"
    maps.draw_masking(rows, str(out), dpi=30)
    assert out.read_bytes()[:8] == PNG


def test_i2p_mask_command_from_checkpoint_and_cfg(visualize, tmp_path, capsys):
    cfg = load_config(CFG, TINY)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict(), "cfg": cfg.dict()}, tmp_path / "ckpt.pth")
    cloud = tmp_path / "cube.npy"
    np.save(cloud, np.random.default_rng(1).uniform(-1, 1, (500, 6)))
    out = tmp_path / "figs" / "mask.png"
    assert visualize(["i2p-mask", "--load-path", str(tmp_path / "ckpt.pth"), "--clouds", str(cloud), str(cloud),
                      "--out", str(out), "--dpi", "30"]) == 0
    assert out.read_bytes()[:8] == PNG and "2 object(s) of 256 points" in capsys.readouterr().out
    assert visualize(["i2p-mask", "--cfg", CFG, "--clouds", str(cloud), "--out", str(out), "--dpi", "30", *TINY]) == 0
    assert "randomly initialised" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing cloud", "no model", "bad cloud"])
def test_i2p_mask_errors_are_one_sentence(visualize, tmp_path, capsys, case):
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros((10, 2)))
    clouds_arg = {"missing cloud": str(tmp_path / "nope.npy"), "no model": str(bad), "bad cloud": str(bad)}[case]
    model_args = [] if case == "no model" else ["--cfg", CFG]
    assert visualize(["i2p-mask", *model_args, "--clouds", clouds_arg, "--out", str(tmp_path / "m.png"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0
    assert {"missing cloud": "does not exist", "no model": "needs a model", "bad cloud": "(N, 3+)"}[case] in err
