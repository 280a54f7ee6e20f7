"""Pic@Point pre-training end to end on tiny rendered data: tool, dataset, runner, resume, encoder export."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import FIXTURES, REPO, _load_main, tiny_modelnet  # noqa: F401  (fixture)

from ..conftest import load_tool

CFG = str(REPO / "cfgs" / "shapenet" / "pic_at_point-dgcnn.yaml")
TINY = ["model.encoder_args.channels=8", "model.encoder_args.k=8", "model.encoder_args.embed_dim=32",
        "model.encoder_args.n_blocks=3", "model.embed_dim=32", "model.pose_dim=8",
        "model.image_backbone.name=resnet18", "model.image_backbone.weights=none", "model.image_backbone.image_size=64",
        "dataset.common.num_points=128", "batch_size=4", "dataloader.num_workers=0"]


def _render(root: Path, channels: int) -> Path:
    """8 train + 4 test objects of 3 shape classes with ``channels`` columns (3: xyz, 6: + normals), 64 px."""
    tool = load_tool("render_views")
    rng = np.random.default_rng(0)
    opts = {"image_size": 64, "radius_px": 1, "distance": 2.2, "fov": 60.0}
    for split, count in (("train", 8), ("test", 4)):
        lines = []
        for i in range(count):
            label = i % 3
            object_id = f"{split}_{i:03d}"
            cloud = FIXTURES.tiny_shape(label, rng, 256)[:, :channels].astype(np.float32)
            tool.render_object((str(root / object_id), cloud, opts))
            lines.append(f"{object_id} {label}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    (root / "meta.json").write_text(json.dumps({"classes": ["a", "b", "c"]}))
    return root


@pytest.fixture(scope="module")
def tiny_views(tmp_path_factory) -> Path:
    """8 train + 4 test objects with normals (Lambert-shaded views)."""
    return _render(tmp_path_factory.mktemp("views"), 6)


@pytest.fixture(scope="module")
def xyz_views(tmp_path_factory) -> Path:
    """The same objects without normals (depth-shaded views), as ShapeNet-55 renders them."""
    return _render(tmp_path_factory.mktemp("xyz_views"), 3)


@pytest.mark.parametrize("rotation_axis", [1, None])
def test_rendered_views_rotation_is_compensated_in_the_view(tiny_views, rotation_axis):
    from plugin.datasets import RenderedViews
    from plugin.render.cameras import project

    np.random.seed(0)
    sample = RenderedViews(str(tiny_views), "train", num_points=128, rotation_axis=rotation_axis)[0]
    assert sample["img"].shape == (3, 64, 64) and sample["x"].shape == (128, 3)
    original = torch.from_numpy(np.load(tiny_views / "train_000" / "points.npy")[:, :3])
    cameras = np.load(tiny_views / "train_000" / "cameras.npz")
    # sample view = view_v @ [R^T]: for the drawn camera v, R^T p' gives back original points
    matches = []
    for v in range(len(cameras["view"])):
        view = torch.from_numpy(cameras["view"][v]).float()
        rot = (view[:3, :3].t() @ sample["view"][:3, :3]).t()
        nearest = torch.cdist(sample["pos"] @ rot, original).min(dim=1)
        if float(nearest.values.max()) < 1e-2:  # float32 round-off ~1e-4; a wrong camera is off by > 0.2
            matches.append((view, rot, nearest.indices))
    assert len(matches) == 1                                           # exactly one camera explains the sample
    view, rot, indices = matches[0]
    assert torch.allclose(rot @ rot.t(), torch.eye(3), atol=1e-5) and not torch.allclose(rot, torch.eye(3))
    assert (abs(float(rot[1, 1]) - 1) < 1e-5) == (rotation_axis == 1)      # about y, or off the y axis (SO(3))
    uv, depth = project(sample["pos"][None], sample["view"][None], sample["proj"][None])
    uv0, depth0 = project(original[indices][None], view[None], sample["proj"][None])
    assert torch.allclose(uv, uv0, atol=1e-3) and torch.allclose(depth, depth0, atol=1e-3)


def test_pretrain_resume_and_encoder_export(tiny_views, tmp_path):
    main = _load_main()
    args = ["--cfg", CFG, *TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={tmp_path}", "epochs=1"]
    assert main(args) == 0
    run = next((tmp_path / "shapenet").glob("pic_at_point-dgcnn-*"))
    assert main(["--cfg", CFG, f"root_dir={tmp_path}", "mode=resume", "epochs=2"]) == 0  # the run's own config
    state = torch.load(run / "ckpt_latest.pth", weights_only=True)
    assert state["epoch"] == 2 and state["mode"] == "pretrain" and state["exports"] == "encoder"
    assert set(state["encoder"]) == {k[len("encoder."):] for k in state["model"] if k.startswith("encoder.")}
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["best_loss"])


@pytest.mark.parametrize("extra", [[], ["feature_keys=pos,heights", "model.encoder_args.in_channels=4"]])
def test_pretrain_on_xyz_only_views_with_rotation(xyz_views, tmp_path, extra):
    main = _load_main()
    args = ["--cfg", CFG, *TINY, f"dataset.common.data_dir={xyz_views}", f"root_dir={tmp_path}", "epochs=1",
            "dataset.common.rotation_axis=1", *extra]
    assert main(args) == 0                             # crashed on the first sample: no normals to rotate
    run = next((tmp_path / "shapenet").glob("pic_at_point-dgcnn-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["best_loss"]) and metrics["epochs"] == 1
    log = (run / "log.txt").read_text()
    assert "loss" in log


def test_resnet18_config_needs_local_weights_and_runs_with_them(tiny_views, tmp_path, capsys):
    import timm

    main = _load_main()
    cfg = str(REPO / "cfgs" / "shapenet" / "pic_at_point-resnet18.yaml")
    tiny = [a for a in TINY if not a.startswith("model.image_backbone.")] + ["model.image_backbone.image_size=64"]
    args = ["--cfg", cfg, *tiny, f"dataset.common.data_dir={tiny_views}", "epochs=1"]
    assert main(args + [f"root_dir={tmp_path / 'missing'}"]) == 2          # the config's placeholder path
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "set model.image_backbone.weights" in err
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)   # stands in for ImageNet's
    assert main(args + [f"root_dir={tmp_path / 'given'}", f"model.image_backbone.weights={weights}"]) == 0
    run = next((tmp_path / "given" / "shapenet").glob("pic_at_point-resnet18-*"))
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["best_loss"])


def test_staged_workflow_end_to_end(tiny_views, tiny_modelnet, tmp_path):
    main = _load_main()
    tiny_encoder = ("model.encoder_args={'NAME': 'DGCNN', 'in_channels': 4, 'channels': 8, 'embed_dim': 32, "
                    "'n_blocks': 3, 'k': 8}")
    args = ["--cfg", str(REPO / "cfgs" / "scanobjectnn" / "pic_at_point.yaml"), f"root_dir={tmp_path}",
            tiny_encoder, *[a for a in TINY if not a.startswith(("model.encoder_args", "batch_size", "dataset."))],
            "batch_size=4", "val_batch_size=4", "epochs=1", "num_points=128", "svm.folds=2",
            f"stage_cfgs.pretrain.dataset.common.data_dir={tiny_views}",
            "stage_cfgs.pretrain.epochs=1", "stage_cfgs.pretrain.batch_size=4",
            "stage_cfgs.pretrain.dataset.common.num_points=128",
            *[f"+stage_cfgs.{s}.dataset.common.{k}" for s in ("svm", "finetune") for k in (
                "NAME=ModelNet40NormalResampled", f"data_dir={tiny_modelnet}", "num_points=128")],
            "+stage_cfgs.finetune.model.cls_args.num_classes=3", "+stage_cfgs.finetune.model.cls_args.mlps=[16]",
            "+stage_cfgs.finetune.num_classes=3", "dataset.val.num_points=128", "dataset.test.num_points=128",
            "strict_keys=False"]  # the svm stage's ScanObjectNN `variant` stays, which ModelNet40 data does not take
    assert main(args) == 0
    workflow = next(p for p in (tmp_path / "scanobjectnn").glob("pic_at_point-*") if "-pretrain-" not in p.name
                    and "-svm-" not in p.name and "-finetune-" not in p.name)
    stages = json.loads((workflow / "metrics.json").read_text())["stages"]
    assert set(stages) == {"pretrain", "svm", "finetune"}
    pretrain_ckpt = stages["pretrain"]["encoder_checkpoint"]
    svm_run = Path(stages["svm"]["run_dir"])
    finetune_run = Path(stages["finetune"]["run_dir"])
    assert f"load_path: {pretrain_ckpt}" in (svm_run / "cfg.yaml").read_text()
    assert f"pretrained_path: {pretrain_ckpt}" in (finetune_run / "cfg.yaml").read_text()
    encoder = torch.load(pretrain_ckpt, weights_only=True)["encoder"]
    assert 0 <= stages["svm"]["oa"] <= 100 and 0 <= stages["finetune"]["test_oa"] <= 100
    assert len(encoder) > 0
