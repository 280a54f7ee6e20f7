"""Checkpoints written by earlier code still load through every mode that reads them.

``tests/fixtures/checkpoints`` holds small checkpoints written by ``tools/make_checkpoint_fixtures.py``
(its ``README.md`` names the commit): a ``PicAtPoint`` pre-training, a ``BaseCls`` fine-tuned from it, a
CLIP2Point pre-training with the tiny CLIP and a 2-shot GDPA run on it. Each one goes through its real
consumers, only through public entry points (``tools/main.py`` and :func:`plugin.io.read_checkpoint`), on
the data it was written on: ``tiny_modelnet`` is the fixtures' dataset point for point.

The fixture runs used relative paths (``data/modelnet40_normal_resampled``, ``pretrained/<fixture>.pth``,
``root_dir=log``), so a resumed run, which keeps the config stored in its checkpoint, runs in a folder
where those paths hold this session's data and fixtures. Never regenerate the fixtures to make a test here
pass: they stand for the checkpoints users already have.
"""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from plugin.io import read_checkpoint

from .conftest import DGCNN_CFG, REPO, tiny_overrides

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
SVM_CFG = str(REPO / "cfgs" / "modelnet40" / "pic_at_point-svm.yaml")
ZEROSHOT_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-zeroshot.yaml")
FEWSHOT_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-gdpa-fewshot.yaml")
TINY_CLIP = ["model.clip.name=tiny-clip-test", "model.clip.pretrained=none"]


def fixture(name: str) -> Path:
    return FIXTURES / MANIFEST["fixtures"][name]["file"]


def encoder_overrides(name: str):
    """The ``model.encoder_args`` overrides the fixture's run was made with (its encoder's shape)."""
    return [o for o in MANIFEST["fixtures"][name]["overrides"] if o.startswith("model.encoder_args.")]


def only_run(root: Path, task: str, exp: str) -> Path:
    runs = [p for p in (root / task).glob(f"{exp}-*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture
def fixture_home(tmp_path, tiny_modelnet, monkeypatch) -> Path:
    """A working folder laid out as the fixture runs' (``data/modelnet40_normal_resampled``, ``pretrained/``)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "modelnet40_normal_resampled").symlink_to(tiny_modelnet, target_is_directory=True)
    (tmp_path / "pretrained").mkdir()
    for spec in MANIFEST["fixtures"].values():
        shutil.copyfile(FIXTURES / spec["file"], tmp_path / "pretrained" / spec["file"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def resumable_copy(home: Path, name: str) -> Path:
    """The run folder ``log/<task>/<run name>`` of ``home`` that the fixture's one-epoch run left: after its
    only epoch ``ckpt_best.pth`` and ``ckpt_latest.pth`` hold the same state, the fixture."""
    spec = MANIFEST["fixtures"][name]
    assert spec["epoch"] == 1 and not spec["stripped"]
    run = home / "log" / Path(spec["cfg"]).parent.name / spec["run_name"]
    run.mkdir(parents=True)
    for checkpoint in ("ckpt_best.pth", "ckpt_latest.pth"):
        shutil.copyfile(fixture(name), run / checkpoint)
    return run


@pytest.mark.parametrize("name", sorted(MANIFEST["fixtures"]))
def test_fixture_is_the_recorded_file_and_reads_safely(name):
    spec, path = MANIFEST["fixtures"][name], fixture(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec["sha256"], "a fixture changed: restore it"
    assert path.stat().st_size == spec["bytes"] < 150_000
    state = read_checkpoint(path, "load_path")                      # weights_only: plain containers and tensors
    assert sorted(state) == spec["keys"] and state["mode"] == spec["mode"] and state["epoch"] == spec["epoch"]
    assert isinstance(state["cfg"], dict) and state["cfg"]["model"]["NAME"]


def test_pic_at_point_encoder_loads_into_the_svm_probe(tiny_modelnet, tmp_path, main):
    encoder = read_checkpoint(fixture("pic_at_point"), "load_path")["encoder"]
    base = [o for o in tiny_overrides(tiny_modelnet, tmp_path) if not o.startswith("model.cls_args")]
    args = ["--cfg", SVM_CFG, *base, *encoder_overrides("pic_at_point"), "svm.folds=4",
            f"load_path={fixture('pic_at_point')}"]
    assert main(args) == 0
    metrics = metrics_of(only_run(tmp_path, "modelnet40", "pic_at_point-svm"))
    assert metrics["encoder_tensors_loaded"] == len(encoder) > 0 and 0 <= metrics["oa"] <= 100


def test_pic_at_point_encoder_initialises_a_finetune(tiny_modelnet, tmp_path, main):
    encoder = read_checkpoint(fixture("pic_at_point"), "pretrained_path")["encoder"]
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path, epochs=1), *encoder_overrides("pic_at_point"),
            "mode=finetune", f"pretrained_path={fixture('pic_at_point')}"]
    assert main(args) == 0
    metrics = metrics_of(only_run(tmp_path, "modelnet40", "dgcnn"))
    assert metrics["encoder_tensors_loaded"] == len(encoder) > 0


@pytest.mark.parametrize("name", ["pic_at_point", "basecls_finetune"])
def test_encoder_of_either_layout_loads_into_extract(tiny_modelnet, tmp_path, main, name):
    """``encoder`` of a pre-training checkpoint, ``model``'s ``encoder.*`` of a supervised one."""
    state = read_checkpoint(fixture(name), "load_path")
    expected = len(state["encoder"]) if "encoder" in state else sum(k.startswith("encoder.") for k in state["model"])
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), *encoder_overrides(name), "mode=extract",
            f"load_path={fixture(name)}"]
    assert main(args) == 0
    assert metrics_of(only_run(tmp_path, "modelnet40", "dgcnn"))["encoder_tensors_loaded"] == expected > 0


def test_basecls_checkpoint_is_tested_with_its_recorded_accuracy(tiny_modelnet, tmp_path, main):
    """``mode=test`` on the split the run validated on, with the same fixed points: the same OA."""
    state = read_checkpoint(fixture("basecls_finetune"), "load_path")
    args = ["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path), *encoder_overrides("basecls_finetune"),
            "model.cls_args.mlps=[8]", "mode=test", f"load_path={fixture('basecls_finetune')}"]
    assert main(args) == 0
    metrics = metrics_of(only_run(tmp_path, "modelnet40", "dgcnn"))
    assert metrics["checkpoint"] == str(fixture("basecls_finetune"))
    assert metrics["test_oa"] == pytest.approx(state["best_oa"])


def test_basecls_finetune_run_resumes_from_the_fixture(fixture_home, main):
    run = resumable_copy(fixture_home, "basecls_finetune")
    assert main(["--cfg", DGCNN_CFG, "mode=resume", f"run_dir={run}", "epochs=2"]) == 0
    latest = read_checkpoint(run / "ckpt_latest.pth", "run_dir")
    assert latest["epoch"] == 2 and latest["mode"] == "finetune"
    metrics = metrics_of(run)
    assert metrics["epochs"] == 2 and metrics["encoder_tensors_loaded"] == "restored from ckpt_latest.pth"
    assert "resumed after epoch 1" in (run / "log.txt").read_text()


def test_clip2point_depth_encoder_replaces_clips_in_zeroshot(tiny_modelnet, tmp_path, main):
    depth_encoder = read_checkpoint(fixture("clip2point"), "pretrained_path")["depth_encoder"]
    args = ["--cfg", ZEROSHOT_CFG, f"dataset.common.data_dir={tiny_modelnet}", f"root_dir={tmp_path}", *TINY_CLIP,
            "dataset.common.num_points=128", "num_points=64", "val_batch_size=12",
            f"zeroshot.text_cache={tmp_path / 'text_cache'}", f"pretrained_path={fixture('clip2point')}"]
    assert main(args) == 0
    run = only_run(tmp_path, "modelnet40", "clip2point-zeroshot")
    metrics = metrics_of(run)
    assert metrics["depth_encoder"] == str(fixture("clip2point")) and metrics["samples"] == 12
    assert metrics["zero_shot_protocol"] in ("inductive", "transductive")        # the stored run config was read
    assert f"depth encoder: {len(depth_encoder)} tensors from" in (run / "log.txt").read_text()


def test_gdpa_fewshot_run_resumes_from_the_fixture(fixture_home, main):
    """The adapter weights, optimizer and K-shot split come back from the fixture; the depth path reads the
    CLIP2Point fixture the run was started with."""
    state = read_checkpoint(fixture("gdpa_fewshot"), "run_dir")
    run = resumable_copy(fixture_home, "gdpa_fewshot")
    assert main(["--cfg", FEWSHOT_CFG, "mode=resume", f"run_dir={run}", "epochs=2"]) == 0
    latest = read_checkpoint(run / "ckpt_latest.pth", "run_dir")
    assert latest["epoch"] == 2 and latest["mode"] == "fewshot"
    assert set(latest["model"]) == set(state["model"])                   # loaded strictly into a fresh GDPA
    assert latest["train_indices"] == state["train_indices"]
    metrics = metrics_of(run)
    assert metrics["epochs"] == 2 and metrics["shots"] == 2 and metrics["train_samples"] == 6
    assert metrics["depth_encoder"] == "pretrained/clip2point.pth"
    log = (run / "log.txt").read_text()
    assert "resumed after epoch 1" in log and "few-shot split restored from the checkpoint" in log
