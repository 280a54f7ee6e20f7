"""``cfgs/modelnet40/clip2point.yaml``: pretrain -> zeroshot -> fewshot in one run, each later stage on the
pre-trained depth encoder (tiny random CLIP, tiny rendered views and a tiny ModelNet layout)."""
import json
import shutil

import pytest
import torch

from plugin.clip import DEPTH_ENCODER_KEY
from tests.engine.conftest import REPO, _load_main, tiny_modelnet  # noqa: F401  (fixture)
from tests.models.test_pretrain_run import tiny_views  # noqa: F401  (fixture)

CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point.yaml")


@pytest.mark.parametrize("source,protocol", [(None, "inductive"), ("modelnet40_normal_resampled", "transductive")])
def test_stages_chain_the_depth_encoder(tiny_views, tiny_modelnet, tmp_path, source, protocol):  # noqa: F811
    views = tmp_path / "views"
    shutil.copytree(tiny_views, views)
    if source:  # views rendered from ModelNet40: the zero-shot ModelNet40 stage is then transductive
        meta = json.loads((views / "meta.json").read_text())
        (views / "meta.json").write_text(json.dumps({**meta, "source": source}))
    args = ["--cfg", CFG, "model.clip.name=tiny-clip-test", "model.clip.pretrained=none", f"root_dir={tmp_path}",
            "num_points=128", "dataset.common.num_points=128", "pretrain.holdout=0.25",
            f"stage_cfgs.pretrain.dataset.common.data_dir={views}", "stage_cfgs.pretrain.epochs=1",
            "stage_cfgs.pretrain.batch_size=4", "stage_cfgs.pretrain.val_batch_size=4",
            f"+stage_cfgs.zeroshot.dataset.common.data_dir={tiny_modelnet}",
            f"+stage_cfgs.fewshot.dataset.common.data_dir={tiny_modelnet}", "stage_cfgs.fewshot.fewshot.shots=2",
            "stage_cfgs.fewshot.epochs=2", "stage_cfgs.fewshot.batch_size=6"]
    assert _load_main()(args) == 0
    folders = {p.name.split("-")[1]: p for p in (tmp_path / "modelnet40").glob("clip2point-*")}
    workflow = next(p for stage, p in folders.items() if stage.isdigit())           # clip2point-<time>
    runs = {stage: p for stage, p in folders.items() if not stage.isdigit()}
    assert set(runs) == {"pretrain", "zeroshot", "fewshot"}
    checkpoint = str(runs["pretrain"] / "ckpt_best.pth")
    assert DEPTH_ENCODER_KEY in torch.load(checkpoint, weights_only=True)
    for stage in ("zeroshot", "fewshot"):
        cfg_text = (runs[stage] / "cfg.yaml").read_text()
        assert f"pretrained_path: {checkpoint}" in cfg_text, stage
        metrics = json.loads((runs[stage] / "metrics.json").read_text())
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    split = json.loads((runs["fewshot"] / "fewshot_split.json").read_text())
    assert list(split["per_class"].values()) == [2, 2, 2]                      # K = 2 of each class
    stages = json.loads((workflow / "metrics.json").read_text())["stages"]
    assert set(stages) == {"pretrain", "zeroshot", "fewshot"}
    assert stages["zeroshot"]["zero_shot_protocol"] == protocol
    assert f"zero-shot protocol: {protocol}" in (runs["zeroshot"] / "log.txt").read_text()
    assert stages["fewshot"]["selected_by"] == "last"
