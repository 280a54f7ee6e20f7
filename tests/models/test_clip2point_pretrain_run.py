"""CLIP2Point pre-training end to end on tiny rendered data: zero-shot checkpoint selection on held-out
train objects under the test-time transforms, resume, depth-encoder export, and refusal to select on the
test objects or on augmented objects."""
import json

import numpy as np
import torch

from plugin.clip import DEPTH_ENCODER_KEY, load_clip, load_depth_encoder
from plugin.datasets import RenderedViews
from plugin.engine import load_config
from plugin.engine.modes.pretrain import PretrainRunner
from tests.engine.conftest import REPO, _load_main
from tests.models.test_pretrain_run import tiny_views  # noqa: F401  (fixture: 8 train + 4 test objects, 3 classes)

CFG = str(REPO / "cfgs" / "shapenet" / "clip2point.yaml")
TINY = ["model.clip.name=tiny-clip-test", "model.clip.pretrained=none", "dataset.common.num_points=128",
        "batch_size=4", "val_batch_size=4", "dataloader.num_workers=0", "pretrain.holdout=0.25"]


def test_pretrain_selects_by_zero_shot_on_held_out_objects_and_resumes(tiny_views, tmp_path):  # noqa: F811
    main = _load_main()
    args = ["--cfg", CFG, *TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={tmp_path}", "epochs=2"]
    assert main(args) == 0
    run = next((tmp_path / "shapenet").glob("clip2point-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_by"] == "zeroshot" and metrics["best_epoch"] in (1, 2)
    # 2 of the 8 train objects are held out, so top-1 is 0, 50 or 100 %
    assert metrics["best_val_top1"] in (0.0, 50.0, 100.0)
    assert metrics["best_val_top1"] >= metrics["last_val_top1"]
    assert "on 2 train objects held out from pre-training (6 left)" in (run / "log.txt").read_text()
    # map to the CPU: on a GPU machine (device: auto) the checkpoint holds CUDA tensors, and the
    # visual tower below is loaded on the CPU
    best = torch.load(run / "ckpt_best.pth", map_location="cpu", weights_only=True)
    assert best["epoch"] == metrics["best_epoch"] and best["loop"]["selection"]["best"] == metrics["best_val_top1"]
    assert "encoder" not in best and best["clip"]["name"] == "tiny-clip-test" and best["exports"] == "depth_encoder"
    assert set(best[DEPTH_ENCODER_KEY]) == {k[len("depth_encoder."):] for k in best["model"]
                                            if k.startswith("depth_encoder.")}
    visual = load_depth_encoder(load_clip("tiny-clip-test", None).visual, str(run / "ckpt_best.pth"))
    assert torch.equal(visual.conv1.weight, best["model"]["depth_encoder.conv1.weight"])

    assert main(["--cfg", CFG, f"root_dir={tmp_path}", "mode=resume", "epochs=3"]) == 0  # the run's own config
    latest = torch.load(run / "ckpt_latest.pth", map_location="cpu", weights_only=True)
    resumed = json.loads((run / "metrics.json").read_text())
    assert latest["epoch"] == 3 and resumed["best_val_top1"] >= metrics["best_val_top1"]
    assert resumed["best_epoch"] == 3 or resumed["best_epoch"] == metrics["best_epoch"]


def test_selection_on_the_test_objects_is_refused(tiny_views, tmp_path, capsys):  # noqa: F811
    main = _load_main()
    args = ["--cfg", CFG, *TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={tmp_path}", "epochs=1",
            "dataset.val.split=val"]                                            # RenderedViews' val reads test.txt
    assert main(args) == 2
    assert "dataset.val reads the test objects" in capsys.readouterr().err


def test_validation_uses_fixed_test_time_transforms(tiny_views, tmp_path):  # noqa: F811
    cfg = load_config(CFG, [*TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={tmp_path}"])
    _, val = PretrainRunner(cfg).loaders()

    def draw(seed: int) -> list:
        np.random.seed(seed)
        torch.manual_seed(seed)
        return list(val)

    first, second = draw(0), draw(1)
    assert sum(len(batch["y"]) for batch in first) == 2                 # the 2 held-out train objects
    for a, b in zip(first, second):                                      # same points, view and image every draw
        assert all(torch.equal(a[key], b[key]) for key in ("pos", "view", "proj", "img"))
    # the test-time sample of each object: view 0, unrotated, its farthest point sample
    held = val.dataset.indices
    reference = RenderedViews(str(tiny_views), "train", num_points=128, augment=False, sampling="fps")
    for i, index in enumerate(held):
        sample = reference[index]
        assert torch.equal(first[0]["pos"][i], sample["pos"]) and torch.equal(first[0]["view"][i], sample["view"])


def test_augmented_validation_is_refused(tiny_views, tmp_path, capsys):  # noqa: F811
    args = ["--cfg", CFG, *TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={tmp_path}", "epochs=1",
            "dataset.val.augment=True"]
    assert _load_main()(args) == 2
    assert "set dataset.val.augment=False" in capsys.readouterr().err
