"""Issue 9 §3-§6: no zero-step training, strict metrics.json, seed-independent extraction, no debris after a
user error, unwritable output in one sentence, the user's umask, the text cache under root_dir, and a
workflow that checks every stage's data before it starts."""
import errno
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.clip.text_features import text_cache_dir
from plugin.datasets import fps_sampling
from plugin.engine import builders, load_config
from plugin.engine.modes import stages as stages_module
from plugin.engine.data import check_training_steps
from plugin.engine.run_folder import RunFolder, discarding_fresh_folders
from plugin.errors import ConfigError, DataNotFoundError, UserError
from plugin.io import OutputNotWritableError, atomic_files
from tests.conftest import one_sentence
from tests.engine.conftest import DGCNN_CFG, REPO, tiny_modelnet, tiny_overrides  # noqa: F401  (fixture)
from tests.models.test_pretrain_run import CFG as PRETRAIN_CFG, TINY as PRETRAIN_TINY
from tests.models.test_pretrain_run import tiny_views  # noqa: F401  (fixture)

from .test_zeroshot import MN40_CFG, zeroshot_args

STAGES_CFG = str(REPO / "cfgs" / "scanobjectnn" / "pic_at_point.yaml")


def _strict_json(path: Path) -> dict:
    def refuse(constant: str):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _entries(root: Path) -> list:
    """Everything under ``root`` (a missing root counts as empty)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ---- §3 never train zero steps; metrics.json is strict JSON ------------------------------------------------

@pytest.mark.parametrize("steps, message", [
    ((0, 4, False), DataNotFoundError), ((3, 4, True), ConfigError), ((3, 4, False), 1), ((9, 4, True), 2)])
def test_training_steps_per_epoch(steps, message):
    if isinstance(message, int):
        assert check_training_steps(*steps) == message
    else:
        with pytest.raises(message, match="no step"):
            check_training_steps(*steps)


def test_zero_step_pretraining_is_refused_before_the_first_epoch(tiny_views, tmp_path, main, capsys):  # noqa: F811
    root = tmp_path / "log"
    args = ["--cfg", PRETRAIN_CFG, *PRETRAIN_TINY, f"dataset.common.data_dir={tiny_views}", f"root_dir={root}",
            "epochs=2", "batch_size=16"]                                   # 8 train objects, incomplete batch dropped
    assert main(args) == 2                                                 # ran 2 epochs of zero steps, exit 0
    err = one_sentence(capsys)
    assert "has 8 samples, fewer than batch_size=16" in err and "set batch_size to at most 8" in err
    assert _entries(root) == []                                            # and no run folder left


def test_zero_step_training_is_refused_and_leaves_no_folder(tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    root = tmp_path / "log"
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root), "batch_size=32"]) == 2
    # train.holdout keeps 2 of the 24 samples for the checkpoint selection
    assert "The train split less the train.holdout samples has 22 samples, fewer than batch_size=32" in one_sentence(
        capsys)
    assert _entries(root) == []


def test_metrics_json_is_strict_json(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_files.save_json({"best_loss": float("inf"), "nan": float("nan"), "nested": [float("-inf"), 1.5]}, str(path))
    assert _strict_json(path) == {"best_loss": None, "nan": None, "nested": [None, 1.5]}


# ---- §4 extract does not augment ---------------------------------------------------------------------------

def test_extract_features_do_not_depend_on_the_seed(tiny_modelnet, tmp_path, main):  # noqa: F811
    cfg = load_config(DGCNN_CFG, tiny_overrides(tiny_modelnet, tmp_path))
    checkpoint = tmp_path / "weights.pth"
    torch.save({"model": builders.build_model(cfg).state_dict()}, checkpoint)
    features = []
    for seed in (0, 1):
        root = tmp_path / f"seed{seed}"
        assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root), "mode=extract", "device=cpu",
                     f"load_path={checkpoint}", f"seed={seed}"]) == 0
        run = next((root / "modelnet40").glob("dgcnn-*"))
        features.append(np.load(run / "features_train.npz")["features"])
    assert features[0].shape == (24, 64)
    # was max |diff| 0.1: the train transforms scaled and shifted the clouds, and the dataset shuffled their points
    assert np.array_equal(features[0], features[1])


# ---- §5 no debris after a user error -------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["dataset.common.data_dir={missing}"], "ModelNet40 data not found"),
    (["mode=extract", "load_path={missing}/weights.pth"], "does not exist: set load_path"),
])
def test_a_user_error_leaves_no_run_folder(extra, message, tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    root = tmp_path / "log"
    extra = [item.format(missing=tmp_path / "missing") for item in extra]
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root), *extra]) == 2
    assert message in one_sentence(capsys)
    assert _entries(root) == []                                            # cfg.yaml and log.txt were left


def test_only_fresh_folders_are_removed(tmp_path):
    resumed = RunFolder(str(tmp_path / "task" / "old-20260101-000000"))   # a resumed run's folder
    with pytest.raises(UserError), discarding_fresh_folders((UserError,)):
        kept = RunFolder.create(str(tmp_path), "task", "exp")
        kept.save_checkpoint({"epoch": 1})
        fresh = RunFolder.create(str(tmp_path), "task", "exp")
        fresh.save_cfg({"mode": "train"})
        raise UserError("the input was wrong")
    assert os.path.isdir(kept.path) and os.path.isdir(resumed.path) and not os.path.exists(fresh.path)
    with pytest.raises(UserError), discarding_fresh_folders((UserError,)):
        RunFolder.create(str(tmp_path / "new"), "task", "exp")
        raise UserError("the input was wrong")
    assert not (tmp_path / "new").exists()                                 # with the parents it made


# ---- §5 unwritable output --------------------------------------------------------------------------------------

def test_root_dir_that_is_a_file_isone_sentence(tiny_modelnet, tmp_path, main, capsys):  # noqa: F811
    root = tmp_path / "log"
    root.write_text("not a folder")
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root)]) == 2
    err = one_sentence(capsys)
    assert "choose a writable root_dir;" in err and "bytes free" in err and str(root) in err


def test_a_full_disk_at_the_first_checkpoint_isone_sentence(tiny_modelnet, tmp_path, main, capsys,  # noqa: F811
                                                            monkeypatch):
    replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith(".pth"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    root = tmp_path / "log"
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, root, epochs=1)]) == 2
    err = one_sentence(capsys)
    assert "No space left on device" in err and "choose a writable root_dir;" in err
    assert _entries(root) == []                                             # no checkpoint: the folder is debris


def test_a_failed_torch_save_isone_sentence(tmp_path, monkeypatch):
    def failing_save(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OutputNotWritableError, match="unexpected pos 64 vs 0.*choose a writable root_dir; \\d+ bytes"):
        atomic_files.save_torch({"w": torch.zeros(4)}, str(tmp_path / "ckpt_latest.pth"))
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_fit_is_refused_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 6, 10 ** 6 - 100, 100))
    with pytest.raises(OutputNotWritableError, match="at least 4000 bytes.*more space; 100 bytes free"):
        atomic_files.save_torch({"w": torch.zeros(1000)}, str(tmp_path / "ckpt_latest.pth"))
    assert list(tmp_path.iterdir()) == []
    atomic_files.save_torch({"w": torch.zeros(10)}, str(tmp_path / "small.pth"))     # 40 bytes fit


# ---- §5 the user's umask; the text-feature cache under root_dir ------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        atomic_files.save_text("x", str(tmp_path / "cfg.yaml"))
        fps_sampling._save_disk_cache(np.zeros((2, 4, 3), np.float32), tmp_path / "clouds_fps4.npy")
    finally:
        os.umask(old)
    for name in ("cfg.yaml", "clouds_fps4.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name   # was 0o600
    assert np.load(tmp_path / "clouds_fps4.npy").shape == (2, 4, 3)


def test_text_cache_defaults_under_root_dir(tiny_modelnet, tmp_path, main):  # noqa: F811
    assert text_cache_dir("/shared/clip_text", str(tmp_path)) == "/shared/clip_text"
    args = [a for a in zeroshot_args(MN40_CFG, tiny_modelnet, tmp_path) if not a.startswith("zeroshot.text_cache")]
    assert main([*args, "zeroshot.text_cache=null"]) == 0
    assert len(list((tmp_path / "cache" / "text_features").glob("clip_text_*.pt"))) == 1


# ---- §6 a workflow checks every stage's data first ---------------------------------------------------------------

def test_a_workflow_missing_a_later_stages_data_runs_nothing(tiny_views, tmp_path, main, capsys):  # noqa: F811
    root, missing = tmp_path / "log", tmp_path / "no_scanobjectnn"
    tiny_encoder = ("model.encoder_args={'NAME': 'DGCNN', 'in_channels': 4, 'channels': 8, 'embed_dim': 32, "
                    "'n_blocks': 3, 'k': 8}")
    args = ["--cfg", STAGES_CFG, f"root_dir={root}", tiny_encoder,
            *[a for a in PRETRAIN_TINY if not a.startswith(("model.encoder_args", "dataset."))],
            "epochs=1", "num_points=128", f"stage_cfgs.pretrain.dataset.common.data_dir={tiny_views}",
            "stage_cfgs.pretrain.epochs=1", "stage_cfgs.pretrain.batch_size=4",
            "stage_cfgs.pretrain.dataset.common.num_points=128", f"stage_cfgs.svm.dataset.common.data_dir={missing}"]
    assert main(args) == 2
    err = one_sentence(capsys)
    assert f"Stage 2 (svm) reads dataset.common.data_dir='{missing}'" in err
    assert _entries(root) == []                                             # stage 1 did not train


def test_a_stage_without_its_checkpoint_stops_the_workflow(tiny_modelnet, tmp_path, main, capsys,  # noqa: F811
                                                          monkeypatch):
    ran = []

    class NoCheckpoint:
        def __init__(self, cfg):
            self.cfg = cfg

        def run(self):
            ran.append(self.cfg.mode)
            return {"encoder_checkpoint": str(tmp_path / "never_written.pth"), "run_dir": str(tmp_path)}

    monkeypatch.setattr(stages_module, "runner_for", lambda mode: NoCheckpoint)
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path / "log"), "mode=stages",
            "stages=['pretrain', 'svm']"]
    assert main(args) == 2
    assert "Stage 1 (pretrain) finished without writing its checkpoint" in one_sentence(capsys)
    assert ran == ["pretrain"]                                              # svm never saw a missing load_path
